"""Strangers' files, round 3: every count read from a stranger is bounded where it is read, every line is bounded,
numbers that cannot be trained are refused. Each test replays a row of issue 27's table at a small scale and says
what happened before."""

import errno
import json
import os
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from hf_fmnist import cli
from hf_fmnist.data import png
from hf_fmnist.errors import HfFmnistError

from conftest import one_error_line

# The package's own bounds are imported inside each test (MAX_CLASSES is 1,000, MAX_LINE 480): run against the code
# before them, each test fails on its own, not the whole module at import.


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


# 1. Classes ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["card", "parquet"])
def test_a_dataset_of_120000_classes_is_one_quick_line(tmp_path, where, capsys):
    """Before: a card of 120,000 names trained a 120k-class head and asked for a 107 GB confusion matrix; names in
    the Parquet schema printed a 120,000-row summary and exit 0, and evaluate printed them all on one line."""
    from hf_fmnist.image_limits import MAX_CLASSES

    folder = _names_folder(tmp_path / "ds", 120_000, where)
    start = time.monotonic()
    assert cli.main(["summary", "--dataset", str(folder)]) == 2
    line = _bounded(one_error_line(capsys))
    assert "120,000 classes" in line and f"{MAX_CLASSES:,}" in line, line
    # from the YAML or the Parquet footer already read, before datasets builds a ClassLabel of them
    assert ("README.md: dataset_info" if where == "card" else "Parquet schema metadata") in line, line
    assert time.monotonic() - start < 60  # seconds, on a shared 2-core machine


def test_a_dataset_of_many_classes_is_refused_before_training(tmp_path, capsys):
    from hf_fmnist.image_limits import MAX_CLASSES
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
    from hf_fmnist.errors import listing

    assert listing([f"g{i}" for i in range(120_000)]) == "g0, g1, g2, g3, g4 … and 119,995 more"
    assert listing(["a", "b"]) == "a, b"
    assert listing(["x" * 1000]) == "x" * 39 + "…"
    assert listing(["a\nb"]) == "a\\nb"


def test_any_error_line_is_cut_below_500_characters(monkeypatch, capsys):
    """The one place messages are printed bounds them, whatever a message quotes (before: a 58.9 MB line)."""
    import hf_fmnist.data.tensors as tensors
    from hf_fmnist.errors import MAX_LINE, error_line

    def huge(*args, **kwargs):
        raise HfFmnistError("keys: " + ", ".join(f"k{i}" for i in range(100_000)) + "\x1b[2J")

    monkeypatch.setattr(tensors, "open_dataset", huge)
    assert cli.main(["summary"]) == 2
    line = _bounded(one_error_line(capsys))
    assert len(line) <= MAX_LINE and "more characters)" in line and line.startswith("error: keys: k0, k1")
    assert error_line("short") == "error: short"


# 1. Tensors and metadata entries in a safetensors header ------------------------------------------------------------


def _empty_tensors_header(count: int, metadata: dict | None = None) -> bytes:
    """A safetensors file of ``count`` empty tensors (the issue's header had 1,649,996), written by hand: quick."""
    entries = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(count)}
    if metadata is not None:
        entries["__metadata__"] = metadata
    header = json.dumps(entries).encode()
    return struct.pack("<Q", len(header)) + header


def _add_to_safetensors(path: Path, tensors: int = 0, metadata_entries: int = 0, prefix: str = "extra") -> None:
    """``path`` with extra empty tensors (letters only in their names: transformers folds numbered keys into one
    report row) and extra metadata entries, written by safetensors itself."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(path, "pt") as f:
        metadata = dict(f.metadata() or {})
    weights = load_file(path)
    for i in range(tensors):
        weights[f"{prefix}.{_letters(i)}"] = torch.zeros(0)
    metadata.update({f"k{i}": "v" for i in range(metadata_entries)})
    save_file(weights, path, metadata=metadata)


def _letters(i: int) -> str:
    return "".join(chr(97 + int(d)) for d in str(i))


def test_a_header_of_more_tensors_than_the_bound_is_refused_quickly(tmp_path):
    from hf_fmnist.image_limits import MAX_TENSORS, check_safetensors_header

    path = tmp_path / "w.safetensors"
    path.write_bytes(_empty_tensors_header(MAX_TENSORS + 1))
    start = time.monotonic()
    with pytest.raises(HfFmnistError, match=f"{MAX_TENSORS + 1:,} tensors"):
        check_safetensors_header(path)
    assert time.monotonic() - start < 5
    path.write_bytes(_empty_tensors_header(3, {f"k{i}": "v" for i in range(5_000)}))
    with pytest.raises(HfFmnistError, match="5,000 entries"):
        check_safetensors_header(path)
    with path.open("wb") as f:  # a header length of 10⁹ bytes: refused from the first 8 bytes, nothing else read
        f.write(struct.pack("<Q", 10**9))
    with pytest.raises(HfFmnistError, match="1,000,000,000 bytes"):
        check_safetensors_header(path)
    path.write_bytes(_empty_tensors_header(100, {"format": "pt"}))
    check_safetensors_header(path)  # a small header passes


def test_model_weights_with_many_extra_tensors_are_refused_before_transformers(model_folder, tmp_path, capsys):
    """Before: 1,640,000 extra empty tensors in model.safetensors: exit 0 after 46 MB of UNEXPECTED lines."""
    from hf_fmnist.image_limits import MAX_TENSORS

    folder = Path(shutil.copytree(model_folder, tmp_path / "m"))
    _add_to_safetensors(folder / "model.safetensors", tensors=MAX_TENSORS + 1)
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("L", (28, 28)).save(image)
    assert cli.main(["predict", "--model", str(folder), str(image)]) == 2
    line = _bounded(one_error_line(capsys))
    assert "model.safetensors" in line and "tensors, more than" in line, line


def test_transformers_load_report_is_one_bounded_line(model_folder, tmp_path, capsys, caplog):
    """Below the bound, transformers' report of unexpected keys (one row each, as the file names them) is cut to
    one line of counts and the first few names."""
    import logging

    from hf_fmnist.inference.evaluate import load_for_inference

    folder = Path(shutil.copytree(model_folder, tmp_path / "m"))
    _add_to_safetensors(folder / "model.safetensors", tensors=2_000, prefix="x\x1b[2J")
    with caplog.at_level(logging.WARNING):
        load_for_inference(str(folder))
    err = capsys.readouterr().err + caplog.text
    reports = [line for line in err.splitlines() if "weights from" in line or "UNEXPECTED" in line]
    assert len(reports) <= 2 and all(len(line) < 500 for line in reports), [r[:200] for r in reports[:5]]
    assert any("2,000 unexpected" in line for line in reports) and "\x1b[2J" not in err


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> str:
    from conftest import synthetic_export

    return str(synthetic_export(tmp_path_factory.mktemp("bounds"), sizes=(128, 40)))


@pytest.fixture(scope="module")
def run_with_checkpoint(tmp_path_factory, tiny_dataset) -> Path:
    """A finished run of 4 steps of 32 images, with checkpoint step_2."""
    from hf_fmnist.training.loop import main as train_main

    from conftest import tiny_train_args

    out = tmp_path_factory.mktemp("run") / "out"
    assert train_main(tiny_train_args(out, tiny_dataset, "--checkpointing_steps", "2")) == 0
    return out


def _resigned(run: Path, tmp_path: Path, **edit) -> Path:
    """A copy of the run's step_2 with its optimizer file edited and every digest recomputed, as anyone can."""
    import hashlib

    from hf_fmnist.training import checkpoint

    folder = Path(shutil.copytree(run / "step_2", tmp_path / "downloaded"))
    _add_to_safetensors(folder / checkpoint.OPTIMIZER_FILE, **edit)
    path = folder / checkpoint.STATE_FILE
    saved = json.loads(path.read_text())
    saved["files"] = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in saved["files"]}
    path.write_text(json.dumps(saved))
    return folder


@pytest.mark.parametrize(
    "edit, says", [({"tensors": 20_001}, "tensors, more than 20,000"), ({"metadata_entries": 5_000}, "5,002 entries")]
)
def test_a_checkpoint_header_of_many_entries_is_refused_quickly(
    run_with_checkpoint, tiny_dataset, tmp_path, capsys, edit, says
):
    """Before: 1.6 million empty tensors in optimizer.safetensors, digest updated, were refused only after 54 s and
    2.9 GB; 5 million metadata entries became a 58.9 MB error line listing every key."""
    from hf_fmnist.training.loop import main as train_main

    from conftest import tiny_train_args

    folder = _resigned(run_with_checkpoint, tmp_path, **edit)
    out = tmp_path / "out"
    assert train_main(tiny_train_args(out, tiny_dataset, "--resume_from_checkpoint", str(folder))) == 2
    line = _bounded(one_error_line(capsys))
    assert "optimizer.safetensors" in line and says in line, line


# 3. Numbers that cannot be trained ----------------------------------------------------------------------------------


def _float_flags() -> list[str]:
    import dataclasses
    import typing

    from hf_fmnist.core.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    return [
        f.name for f in dataclasses.fields(TrainConfig) if float in typing.get_args(hints[f.name]) + (hints[f.name],)
    ]


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
@pytest.mark.parametrize("flag", _float_flags())
def test_every_float_flag_refuses_non_finite_values(flag, value):
    """Before: --learning_rate nan was refused but inf was not (it trained to loss nan and wrote a NaN model with a
    card claiming its accuracy); --weight_decay inf passed too."""
    from hf_fmnist.core.config import TrainConfig

    with pytest.raises(HfFmnistError, match=f"--{flag}"):
        TrainConfig.from_args(["--output_dir", "out", f"--{flag}={value}"])


def test_the_float_flags_are_found():
    assert {"learning_rate", "weight_decay", "label_smoothing", "random_erasing"} <= set(_float_flags())


@pytest.mark.parametrize(
    "flag, value, says",
    [
        ("--max_train_steps", str(10**21), "more than 1,000,000"),
        ("--num_train_epochs", str(10**9), "more than 10,000"),
        ("--seed", str(10**30), "more than 2,147,483,647"),
        ("--checkpointing_steps", "1", None),  # within bounds: accepted
    ],
)
def test_step_and_epoch_counts_are_bounded(flag, value, says):
    """Before: --max_train_steps 10**21 was accepted: "8547008547008546816 epochs of 117"."""
    from hf_fmnist.core.config import TrainConfig

    if says is None:
        TrainConfig.from_args(["--output_dir", "out", flag, value])
        return
    with pytest.raises(HfFmnistError, match=says):
        TrainConfig.from_args(["--output_dir", "out", flag, value])


def test_epochs_times_steps_beyond_the_bound_is_refused_before_training(tiny_dataset, tmp_path, capsys):
    from hf_fmnist.training.loop import main as train_main

    from conftest import tiny_train_args

    args = tiny_train_args(tmp_path / "out", tiny_dataset, "--num_train_epochs", "9000")  # 4 steps an epoch: fine
    args[args.index("--per_device_train_batch_size") + 1] = "1"  # 128 steps an epoch: 1,152,000 steps
    assert train_main(args) == 2
    assert "1,152,000 optimizer steps, more than the 1,000,000" in _bounded(one_error_line(capsys))
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_a_diverging_run_stops_with_one_line_writes_no_model_and_pushes_nothing(tiny_dataset, tmp_path, hub, capsys):
    """Before: --learning_rate inf trained to "loss nan", then wrote a NaN model, a card claiming its accuracy, and
    pushed it. A huge finite rate now diverges the same way, and is stopped at the first read of the loss."""
    from hf_fmnist.training.loop import main as train_main

    from conftest import tiny_train_args, unique_repo

    out, repo_id = tmp_path / "out", unique_repo("diverged")
    extra = ("--learning_rate", "1e30", "--push_to_hub", "--hub_model_id", repo_id)
    assert train_main(tiny_train_args(out, tiny_dataset, *extra)) == 2
    line = _bounded(one_error_line(capsys))
    assert line.startswith("error: Training diverged:") and "--learning_rate" in line, line
    assert not any((out / name).exists() for name in ("model.safetensors", "README.md", "all_results.json"))
    assert ("model", repo_id) not in hub.state.repos


def test_a_resumed_run_that_diverges_keeps_the_last_good_checkpoint_and_model(
    run_with_checkpoint, tiny_dataset, tmp_path, capsys
):
    import hashlib

    from hf_fmnist.training.loop import main as train_main

    from conftest import tiny_train_args

    out = Path(shutil.copytree(run_with_checkpoint, tmp_path / "out"))

    def digests() -> dict:
        return {p.relative_to(out): hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}

    before = digests()
    extra = ("--resume_from_checkpoint", "latest", "--learning_rate", "1e30", "--checkpointing_steps", "1")
    assert train_main(tiny_train_args(out, tiny_dataset, "--max_train_steps", "12", *extra)) == 2
    assert one_error_line(capsys).startswith("error: Training diverged:")
    after = digests()
    kept = {k: v for k, v in before.items() if k.name != "training_config.json"}  # each run records its flags first
    assert {k: v for k, v in after.items() if k in kept} == kept  # the finished model and step_2 untouched
    for path in set(after) - set(before):  # checkpoints written before it diverged hold finite weights
        if path.name == "model.safetensors":
            from hf_fmnist.core.finite import check_finite_weights

            check_finite_weights(out / path, str(path))


def _with_nan_weights(folder: Path) -> None:
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    weights = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in load_file(path).items()}
    save_file(weights, path, metadata=metadata)


def test_push_model_and_the_card_writer_refuse_nan_weights(run_with_checkpoint, tmp_path, hub, capsys):
    from hf_fmnist.core.card import render_model_card

    from conftest import unique_repo

    folder = Path(shutil.copytree(run_with_checkpoint, tmp_path / "m"))
    render_model_card(folder)  # finite: fine
    _with_nan_weights(folder)
    with pytest.raises(HfFmnistError, match="NaN or infinite"):
        render_model_card(folder)
    repo_id = unique_repo("nanweights")
    assert cli.main(["push-model", "--repo-id", repo_id, "--model-dir", str(folder)]) == 2
    assert "NaN or infinite" in _bounded(one_error_line(capsys))
    assert ("model", repo_id) not in hub.state.repos


def test_check_finite_weights_takes_a_model_a_state_dict_or_a_file(tmp_path):
    import torch
    from safetensors.torch import save_file

    from hf_fmnist.core.finite import check_finite_weights

    model = torch.nn.Linear(2, 2)
    check_finite_weights(model, "m")
    with torch.no_grad():
        model.bias[1] = float("inf")
    with pytest.raises(HfFmnistError, match=r"m: 1 weight tensor\(s\) hold NaN or infinite values \(bias\)"):
        check_finite_weights(model, "m")
    state = {f"w{i}": torch.full((2,), float("nan")) for i in range(10)} | {"n": torch.tensor([1, 2])}
    with pytest.raises(HfFmnistError, match=r"10 weight tensor\(s\).*w0, w1, w2 … and 7 more"):
        check_finite_weights(state, "sd")
    save_file(state, tmp_path / "w.safetensors")
    with pytest.raises(HfFmnistError, match="10 weight"):
        check_finite_weights(tmp_path / "w.safetensors", "file")


# 4. No writing through links, by any writer -------------------------------------------------------------------------

# Every folder and fixed-name file a run with tracking and checkpoints writes below --output_dir, as a link to a
# folder (or file) of the user's: the TensorBoard writer's runs/ and runs/hf_fmnist/ and its hparams.yml, the example
# images, the checkpoints.
LINKED = ["runs", "runs/hf_fmnist", "runs/hf_fmnist/hparams.yml", "examples", "step_2", "epoch_1"]


@pytest.mark.parametrize("linked", LINKED)
def test_no_folder_a_run_writes_is_written_through_a_link(tiny_dataset, tmp_path, linked, capsys):
    """Before: a runs/ that was a link to a user folder got TensorBoard's event files and hparams.yml, exit 0."""
    import hashlib

    from hf_fmnist.training.loop import main as train_main

    from conftest import tiny_train_args

    user = tmp_path / "user"
    (user / "folder").mkdir(parents=True)
    (user / "folder" / "notes.txt").write_text("mine")
    (user / "file.yml").write_text("mine: 1\n")
    out = tmp_path / "out"
    (out / Path(linked).parent).mkdir(parents=True, exist_ok=True)
    (out / linked).symlink_to(user / ("file.yml" if linked.endswith(".yml") else "folder"))

    def snapshot() -> dict:
        return {str(p.relative_to(user)): hashlib.sha256(p.read_bytes()).hexdigest() for p in user.rglob("*")
                if p.is_file()}  # fmt: skip

    before = snapshot()
    extra = ("--with_tracking", "--checkpointing_steps", "2", "--overwrite_output_dir")
    status = train_main(tiny_train_args(out, tiny_dataset, *extra))
    assert snapshot() == before, linked
    err = capsys.readouterr().err
    if status != 0:
        assert status == 2 and "link" in [line for line in err.splitlines() if line.startswith("error: ")][0], err


# 6. A cache that cannot be written ----------------------------------------------------------------------------------


def _unwritable(tmp_path: Path) -> Path:
    """A folder no process can create, even as root: below /sys (sysfs refuses mkdir) or below a plain file."""
    sys_dir = Path("/sys/hf_fmnist_test_cache")
    try:
        sys_dir.mkdir()
    except OSError as e:
        if e.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
            return sys_dir
    pytest.skip("no read-only place to play a read-only HF_HOME")


@pytest.mark.parametrize("command", ["summary", "evaluate", "train"])
def test_a_dataset_cache_that_cannot_be_written_is_one_line(command, model_folder, tmp_path):
    """Before: HF_HOME on a read-only filesystem gave the built-in dataset a traceback through data/builder.py
    make_builder (OSError: Read-only file system); a local dataset folder already got one line."""
    import os
    import subprocess
    import sys

    from conftest import Synthetic

    raw = Synthetic(tmp_path / "raw").folder
    home = _unwritable(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_DATASETS_CACHE",)}
    env["HF_HOME"] = str(home)
    args = {
        "summary": ["-m", "hf_fmnist.cli", "summary", "--data-dir", str(raw)],
        "evaluate": ["-m", "hf_fmnist.cli", "evaluate", "--model", str(model_folder), "--data-dir", str(raw)],
        "train": ["train.py", "--output_dir", str(tmp_path / "out"), "--data_dir", str(raw)],
    }[command]
    result = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    line = _bounded(result.stderr.strip().splitlines()[-1])
    assert line.startswith(f"error: Cannot write the dataset cache {home}") and "HF_DATASETS_CACHE" in line, line
    assert "HF_HOME" in line and "HF_FMNIST_CACHE" in line


@pytest.mark.parametrize("variable", ["HF_DATASETS_CACHE", "HF_HOME", "HF_FMNIST_CACHE"])
def test_a_cache_variable_set_but_empty_is_one_line_and_writes_nothing_here(variable, tmp_path, monkeypatch):
    """Review of issue 27: `HF_DATASETS_CACHE=` (set, empty) made datasets write a 36 MB cache and a lock file into
    the current folder (one was committed at the repository root). Now one line, and the folder stays empty."""
    import subprocess
    import sys

    from conftest import Synthetic

    raw = Synthetic(tmp_path / "raw").folder
    here = tmp_path / "here"
    here.mkdir()
    env = {**os.environ, variable: ""}
    result = subprocess.run(
        [sys.executable, "-m", "hf_fmnist.cli", "summary", "--data-dir", str(raw)],
        env=env, cwd=here, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"error: {variable} is set but empty" in result.stderr.strip().splitlines()[-1]
    assert os.listdir(here) == []


# 5. SIGTERM during each command's long part -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_raw(tmp_path_factory) -> Path:
    """Raw files of 60,000 + 10,000 images: building them (PNG encoding, Arrow, Parquet) takes long enough to be
    interrupted in the middle."""
    from conftest import Synthetic

    return Synthetic(tmp_path_factory.mktemp("big") / "raw", sizes=(60_000, 10_000)).folder


def _terminated(args: list[str], tmp_path: Path, started) -> tuple[int, float, str]:
    """Run ``hf-fmnist ARGS``, send SIGTERM once ``started()`` holds (its long part is running), and return its exit
    status, the seconds it took to end after the signal, and its stderr."""
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "cache"), "HF_FMNIST_CACHE": str(tmp_path / "fm")}
    err = tmp_path / "stderr.txt"
    with err.open("w") as stderr, (tmp_path / "stdout.txt").open("w") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "hf_fmnist.cli", *args], env=env, stdout=stdout, stderr=stderr
        )
        deadline = time.monotonic() + 240
        while not started() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, f"ended before its long part: {err.read_text()[-2000:]}"
        time.sleep(1)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    return status, time.monotonic() - sent, err.read_text()


def _has_files(folder: Path):
    return lambda: folder.exists() and any(p.is_file() for p in folder.rglob("*"))


@pytest.mark.slow
@pytest.mark.parametrize("command", ["build", "summary", "evaluate", "predict"])
def test_long_commands_end_within_10_s_of_sigterm(command, big_raw, model_folder, tmp_path):
    from PIL import Image

    cache = tmp_path / "cache"
    if command == "predict":
        images = tmp_path / "images"
        images.mkdir()
        # 256×256 (each resized to 28×28): 3,000 of 28×28 were all classified within the second this test waits
        # before its signal on an idle machine, which then found the default handler back (exit -15, not 143)
        for i in range(3000):
            Image.new("L", (256, 256), i % 256).save(images / f"{i}.png")
        args = ["predict", "--model", str(model_folder), str(images)]
        started = lambda: (tmp_path / "stdout.txt").stat().st_size > 0  # noqa: E731 (results are streamed)
    elif command == "evaluate":
        from conftest import synthetic_export

        exported = str(synthetic_export(tmp_path / "ds", sizes=(40, 10_000)))
        args = ["evaluate", "--model", str(model_folder), "--dataset", exported, "--output-dir", str(tmp_path / "e")]
        started = _has_files(cache)
    elif command == "build":
        args = ["build", "--data-dir", str(big_raw), "--no-verify", "--output-dir", str(tmp_path / "out")]
        started = _has_files(cache)
    else:
        args = ["summary", "--data-dir", str(big_raw), "--no-verify"]
        started = _has_files(cache)
    status, seconds, err = _terminated(args, tmp_path, started)
    assert status == 143 and "Traceback" not in err, err[-3000:]
    assert seconds < 10, seconds
    assert err.strip().splitlines()[-1].startswith("terminated (SIGTERM)")


# 8. Printed paths are escaped ---------------------------------------------------------------------------------------


def test_the_final_line_of_training_prints_the_output_dir_escaped(tiny_dataset, tmp_path, capsys):
    """Before: the last line printed --output_dir raw: a newline in it forged a line, an ESC sequence reached the
    terminal (docs/safety.md promises escaped output)."""
    from hf_fmnist.training.loop import main as train_main

    from conftest import tiny_train_args

    out = tmp_path / "o\nerror: forged\x1b[2J"
    assert train_main(tiny_train_args(out, tiny_dataset)) == 0
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\nerror: forged" not in printed
    assert printed.strip().splitlines()[-1].endswith("o\\nerror: forged\\x1b[2J"), printed[-300:]


def test_a_prediction_line_is_bounded_whatever_the_class_names(tmp_path):
    """A model's id2label may name a class in a megabyte (its config.json may be 16 MB): each printed result stays one
    line under 500 characters (``--json`` keeps the names whole)."""
    from hf_fmnist.inference.predict import format_result

    result = {"path": "a\nb.png", "predictions": [{"label": "x" * 1_000_000, "score": 0.5}] * 3}
    line = _bounded(format_result(result))
    assert line.startswith("a\\nb.png: xxx") and "more characters)" in line
    assert _bounded(format_result({"path": "c.png", "error": "y" * 10_000})).startswith("c.png: error: yyy")


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["evaluate", "--model", "cnn", "--max-eval-samples", "-5"], "--max-eval-samples"),
        (["evaluate", "--model", "cnn", "--batch-size", "0"], "--batch-size"),
        (["embed", "--model", "cnn", "--output-dir", "o", "--max-samples", "0"], "--max-samples"),
        (["embed", "--model", "cnn", "--output-dir", "o", "--thumbnails", "-3"], "--thumbnails"),
        (["audit", "--output-dir", "o", "--threshold", "nan"], "--threshold"),
        (["audit", "--output-dir", "o", "--threshold", "inf"], "--threshold"),
        (["audit", "--output-dir", "o", "--threshold", "-1"], "--threshold"),
    ],
)
def test_counts_and_thresholds_out_of_range_are_refused_by_the_parser(argv, flag, capsys, tmp_path, monkeypatch):
    """Review of issue 27: these gave a numpy/torch traceback (exit 1), or, for the audit's threshold, exit 0 with
    every test image a "near duplicate" (inf). Now argparse refuses them, naming the flag, before any work."""
    from hf_fmnist import cli

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and "Traceback" not in err and not (tmp_path / "o").exists()
