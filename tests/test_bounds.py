"""Strangers' files, round 3: every count read from a stranger is bounded where it is read, every line is bounded,
numbers that cannot be trained are refused. Each test replays a row of issue 27's table at a small scale and says
what happened before."""

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from hf_fmnist import cli
from hf_fmnist.data import png
from hf_fmnist.errors import MAX_LINE, HfFmnistError, error_line, listing
from hf_fmnist.image_limits import MAX_CLASSES

from conftest import one_error_line


def _bounded(line: str) -> str:
    assert len(line) < 500 and "\n" not in line, line[:600]
    return line


def _names_folder(root: Path, count: int, where: str) -> Path:
    """A dataset folder whose label column has ``count`` classes, named in the card's ``dataset_info`` (a YAML list,
    as in the issue) or only in the Parquet files' own ``huggingface`` schema metadata (no card)."""
    from datasets import ClassLabel, Dataset, Features, Image

    names = [f"g{i}" for i in range(count)]
    (root / "data").mkdir(parents=True)
    features = Features({"image": Image(), "label": ClassLabel(names=names if where == "parquet" else ["a", "b"])})
    blobs = png.encode_gray(np.zeros((4, 28, 28), np.uint8))
    for split in ("train", "test"):
        rows = {"image": [{"bytes": b, "path": None} for b in blobs], "label": [0, 1, 0, 1]}
        Dataset.from_dict(rows, features=features).to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    if where == "card":
        label = {"name": "label", "dtype": {"class_label": {"names": names}}}
        meta = {"dataset_info": {"features": [{"name": "image", "dtype": "image"}, label]}}
        (root / "README.md").write_text("---\n" + yaml.safe_dump(meta, default_flow_style=None, width=10**9) + "---\n")
        assert (root / "README.md").stat().st_size < 1 << 20  # under the card cap, as in the issue
    return root


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    from hf_fmnist.core.models import create_model, preset_image_processor

    folder = tmp_path_factory.mktemp("model") / "model"
    create_model("cnn").save_pretrained(folder)
    preset_image_processor().save_pretrained(folder)
    return folder


# 1. Classes ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["card", "parquet"])
def test_a_dataset_of_120000_classes_is_one_quick_line(tmp_path, where, capsys):
    """Before: a card of 120,000 names trained a 120k-class head and asked for a 107 GB confusion matrix; names in
    the Parquet schema printed a 120,000-row summary and exit 0, and evaluate printed them all on one line."""
    folder = _names_folder(tmp_path / "ds", 120_000, where)
    start = time.monotonic()
    assert cli.main(["summary", "--dataset", str(folder)]) == 2
    line = _bounded(one_error_line(capsys))
    assert "120,000 classes" in line and f"{MAX_CLASSES:,}" in line, line
    assert time.monotonic() - start < 60  # seconds, on a shared 2-core machine


def test_a_dataset_of_many_classes_is_refused_before_training(tmp_path, capsys):
    from hf_fmnist.training.loop import main as train_main

    from conftest import tiny_train_args

    folder = _names_folder(tmp_path / "ds", MAX_CLASSES + 1, "parquet")
    assert train_main(tiny_train_args(tmp_path / "out", str(folder))) == 2
    assert f"{MAX_CLASSES + 1:,} classes" in _bounded(one_error_line(capsys))
    assert not (tmp_path / "out").exists()  # refused before a model was built or a folder written


def test_a_model_of_100000_classes_is_refused_from_its_config(model_folder, tmp_path, capsys):
    """Before: 100,000 classes passed the 100,000 cap; evaluate printed a 4.5 MB line and export ran for minutes."""
    folder = Path(shutil.copytree(model_folder, tmp_path / "m"))
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): f"c{i}" for i in range(100_000)}
    config["label2id"] = {f"c{i}": i for i in range(100_000)}
    (folder / "config.json").write_text(json.dumps(config))
    assert cli.main(["evaluate", "--model", str(folder), "--dataset", str(tmp_path / "nowhere")]) == 2
    assert "100,000 classes" in _bounded(one_error_line(capsys))


def test_a_class_mismatch_lists_a_few_names_and_counts_the_rest(model_folder, tmp_path, capsys):
    """Before: "The model's classes (…) differ from the dataset's (g0, g1, …" listed every name on one line."""
    folder = _names_folder(tmp_path / "ds", 900, "parquet")
    assert cli.main(["evaluate", "--model", str(model_folder), "--dataset", str(folder)]) == 2
    line = _bounded(one_error_line(capsys))
    assert "900 (g0, g1, g2, g3, g4 … and 895 more)" in line, line


# 2. Every line is bounded -------------------------------------------------------------------------------------------


def test_listing_shows_the_first_few_and_counts_the_rest():
    assert listing([f"g{i}" for i in range(120_000)]) == "g0, g1, g2, g3, g4 … and 119,995 more"
    assert listing(["a", "b"]) == "a, b"
    assert listing(["x" * 1000]) == "x" * 39 + "…"
    assert listing(["a\nb"]) == "a\\nb"


def test_any_error_line_is_cut_below_500_characters(monkeypatch, capsys):
    """The one place messages are printed bounds them, whatever a message quotes (before: a 58.9 MB line)."""
    import hf_fmnist.data.tensors as tensors

    def huge(*args, **kwargs):
        raise HfFmnistError("keys: " + ", ".join(f"k{i}" for i in range(100_000)) + "\x1b[2J")

    monkeypatch.setattr(tensors, "open_dataset", huge)
    assert cli.main(["summary"]) == 2
    line = _bounded(one_error_line(capsys))
    assert len(line) <= MAX_LINE and "more characters)" in line and line.startswith("error: keys: k0, k1")
    assert error_line("short") == "error: short"
