"""The datasets builder, the cached DatasetDict and the Hub-ready export, on synthetic raw files."""

import os
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from huggingface_hub import DatasetCard

from hf_fmnist import CLASS_NAMES
from hf_fmnist.data import builder
from hf_fmnist.data import export as dataset_export
from hf_fmnist.data.idx import IdxError
from hf_fmnist.data.tensors import decode
from hf_fmnist.dataset_script.hf_fmnist import FashionMnist


def test_builder_class_works_programmatically(synthetic, tmp_path):
    b = FashionMnist(cache_dir=str(tmp_path / "cache"), data_dir=str(synthetic.folder), verify=False)
    b.download_and_prepare()
    ds = b.as_dataset()
    assert set(ds) == {"train", "test"}
    assert ds["train"].features["image"] == datasets.Image()
    assert ds["train"].features["label"].names == list(CLASS_NAMES)
    assert b.info.license == "MIT" and "1708.07747" in b.info.citation and b.info.homepage
    images, labels = synthetic.arrays["test"]
    assert ds["test"]["label"] == labels.tolist()
    np.testing.assert_array_equal(np.asarray(ds["test"][3]["image"]), images[3])


def test_verification_is_on_by_default(synthetic):
    with pytest.raises(IdxError, match="sha256"):
        builder.load_dataset(synthetic.folder)


def test_load_dataset_is_cached(synthetic):
    first = builder.load_dataset(synthetic.folder, verify=False)
    second = builder.load_dataset(synthetic.folder, verify=False)
    assert first["train"].cache_files == second["train"].cache_files


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_layout_card_and_round_trip(synthetic, tmp_path):
    out = dataset_export.export(tmp_path / "export", data_dir=synthetic.folder, verify=False)
    files = _files(out)
    assert sorted(files) == [  # and the hidden marker that says hf_fmnist wrote it (never pushed)
        ".hf_fmnist",
        "README.md",
        "data/test-00000-of-00001.parquet",
        "data/train-00000-of-00001.parquet",
    ]
    assert not any(name.endswith(".py") for name in files)
    meta = yaml.safe_load(files["README.md"].decode().split("---")[1])
    assert meta["license"] == "mit" and meta["task_categories"] == ["image-classification"]
    assert meta["size_categories"] == ["n<1K"] and meta["pretty_name"] == "Fashion-MNIST"
    assert meta["configs"] == [
        {
            "config_name": "default",
            "data_files": [{"split": "train", "path": "data/train-*"}, {"split": "test", "path": "data/test-*"}],
        }
    ]
    info = meta["dataset_info"]
    assert {s["name"]: s["num_examples"] for s in info["splits"]} == {"train": 40, "test": 20}
    assert info["download_size"] == sum(len(v) for k, v in files.items() if k.endswith(".parquet"))
    assert info["features"][1]["dtype"]["class_label"]["names"]["9"] == "Ankle boot"
    body = files["README.md"].decode()
    assert "not checked against the original release" in body  # built with verify=False: no false claim
    # what a user gets with plain datasets, no remote code
    loaded = datasets.load_dataset(str(out))
    for split, (images, labels) in synthetic.arrays.items():
        assert loaded[split].features == datasets.Features(
            {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASS_NAMES))}
        )
        pixels, got_labels = decode(loaded[split])
        np.testing.assert_array_equal(pixels, images)
        np.testing.assert_array_equal(got_labels, labels)


def test_card_survives_round_trip(synthetic, tmp_path):
    out = dataset_export.export(tmp_path / "export", data_dir=synthetic.folder, verify=False)
    card = DatasetCard.load(out / "README.md")
    again = DatasetCard(str(card))
    assert again.data.to_dict() == card.data.to_dict()
    assert again.text == card.text
    assert "## Citation" in card.text and "Xiao" in card.text


def test_export_is_idempotent(synthetic, tmp_path):
    out = tmp_path / "export"
    dataset_export.export(out, data_dir=synthetic.folder, verify=False)
    first = _files(out)
    dataset_export.export(out, data_dir=synthetic.folder, verify=False)
    assert _files(out) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "raw"]  # no temp or backup folders left


def test_failed_export_leaves_nothing(synthetic, tmp_path):
    synthetic.path("t10k-labels-idx1-ubyte").write_bytes(b"\x1f\x8b\x08\x00broken")
    with pytest.raises(IdxError, match="t10k-labels-idx1-ubyte.gz"):
        dataset_export.export(tmp_path / "export", data_dir=synthetic.folder, verify=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_failed_export_keeps_the_previous_one(synthetic, tmp_path, monkeypatch):
    out = dataset_export.export(tmp_path / "export", data_dir=synthetic.folder, verify=False)
    before = _files(out)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(dataset_export, "write_export", fail)
    with pytest.raises(OSError, match="disk full"):
        dataset_export.export(out, data_dir=synthetic.folder, verify=False)
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "raw"]


def test_export_refuses_to_replace_foreign_folders(synthetic, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    with pytest.raises(dataset_export.HfFmnistError, match=r"did not write \(thesis.tex\)"):
        dataset_export.export(home, data_dir=synthetic.folder, verify=False)
    assert (home / "thesis.tex").read_text() == "precious"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(dataset_export.HfFmnistError, match="is a file"):
        dataset_export.export(a_file, data_dir=synthetic.folder, verify=False)


def test_export_into_empty_folder(synthetic, tmp_path):
    (tmp_path / "empty").mkdir()
    out = dataset_export.export(tmp_path / "empty", data_dir=synthetic.folder, verify=False)
    assert (out / "README.md").is_file()
    assert oct(os.stat(out).st_mode & 0o777) != oct(0o700)  # not left private like a temp dir
