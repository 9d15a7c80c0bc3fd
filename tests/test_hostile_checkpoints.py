"""Hostile checkpoints, datasets and model folders that passed every earlier check (review 1).

Each case failed late on the earlier code: a hang, a traceback after the training epoch (the run's work lost), or a
file written into a folder of the user's. Each must now be one clear line before anything is trained or written.
"""

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hf_fmnist import cli
from hf_fmnist.data import idx
from hf_fmnist.data import tensors as data
from hf_fmnist.errors import HfFmnistError
from hf_fmnist.training import checkpoint
from hf_fmnist.training.loop import find_checkpoints
from hf_fmnist.training.loop import main as train_main

from conftest import Synthetic, idx_images, idx_labels, one_error_line, real_data, synthetic_export, tiny_train_args


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> str:
    return str(synthetic_export(tmp_path_factory.mktemp("hostile"), sizes=(128, 40)))


@pytest.fixture(scope="module")
def run_with_checkpoint(tmp_path_factory, tiny_dataset) -> Path:
    """A finished run of 4 steps of 32 images, with checkpoint step_2."""
    out = tmp_path_factory.mktemp("run") / "out"
    assert train_main(tiny_train_args(out, tiny_dataset, "--checkpointing_steps", "2")) == 0
    assert "step_2" in [p.name for p in find_checkpoints(out)]
    return out


def _downloaded(run: Path, tmp_path: Path) -> Path:
    """A copy of the run's step_2, as if downloaded from a stranger."""
    folder = tmp_path / "downloaded"
    shutil.copytree(run / "step_2", folder)
    return folder


def _edit_state(folder: Path, **changes) -> None:
    path = folder / checkpoint.STATE_FILE
    saved = json.loads(path.read_text())
    saved.update(changes)
    path.write_text(json.dumps(saved))


def _resign(folder: Path) -> None:
    """Recompute every listed file's sha256: what anyone editing a checkpoint can do."""
    path = folder / checkpoint.STATE_FILE
    saved = json.loads(path.read_text())
    saved["files"] = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in saved["files"]}
    path.write_text(json.dumps(saved))


def _resume_fails(run, tiny_dataset, folder, tmp_path, capsys) -> str:
    out = tmp_path / "out"
    assert train_main(tiny_train_args(out, tiny_dataset, "--resume_from_checkpoint", str(folder))) == 2
    assert not (out / "model.safetensors").exists()
    return one_error_line(capsys)


# 1. A step beyond the run ---------------------------------------------------------------------------------------------


def test_a_step_beyond_the_run_is_refused_before_the_schedule_is_replayed():
    """Before: step 10**15 passed, and load called scheduler.step() 10**15 times (a hang)."""
    saved = {"step": 10**15, "images_seen": 64, "train_seconds": 1.0, "history": []}
    with pytest.raises(HfFmnistError, match="at step 1,000,000,000,000,000, beyond this run's 4 training steps"):
        checkpoint.TrainState.from_json(saved, "ckpt", max_steps=4)
    for key, value in (("images_seen", 2**60), ("train_seconds", 1e300)):
        with pytest.raises(checkpoint.CheckpointError, match=key):
            checkpoint.TrainState.from_json({**saved, "step": 2, key: value}, "ckpt", max_steps=4)


def test_resuming_past_the_end_is_one_line(run_with_checkpoint, tiny_dataset, tmp_path, capsys):
    """Before: a checkpoint at step 5 of a 4-step run "resumed" and wrote a model trained for no step."""
    folder = _downloaded(run_with_checkpoint, tmp_path)
    _edit_state(folder, step=5)
    line = _resume_fails(run_with_checkpoint, tiny_dataset, folder, tmp_path, capsys)
    assert "at step 5, beyond this run's 4 training steps" in line


# 2. A history the plots cannot read -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "history",
    [
        [{"note": "hello"}],
        [{"epoch": "1", "step": 2, "train_loss": 1.0, "eval_accuracy": 0.5}],
        [{"epoch": 1, "step": 2, "train_loss": 1.0, "eval_accuracy": 7}],
        [{"epoch": 1, "step": 99, "train_loss": 1.0, "eval_accuracy": 0.5}],
        ["x"],
    ],
)
def test_a_forged_history_is_refused_at_load(run_with_checkpoint, tiny_dataset, tmp_path, capsys, history):
    """Before: [{"note": "hello"}] passed; training ran, then finish() died with KeyError: 'epoch' (no model)."""
    folder = _downloaded(run_with_checkpoint, tmp_path)
    _edit_state(folder, history=history)
    line = _resume_fails(run_with_checkpoint, tiny_dataset, folder, tmp_path, capsys)
    assert "is damaged or was not written by hf_fmnist" in line and "history entry 0" in line


@pytest.mark.parametrize(
    "edit",
    [
        lambda path: path.write_text(path.read_text()[:-2] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        lambda path: _edit_state(path.parent, resumes=[{"step": 1}]),
        lambda path: _edit_state(path.parent, stopped_by="SIGKILL"),
    ],
)
def test_a_forged_state_file_is_one_line(run_with_checkpoint, tiny_dataset, tmp_path, capsys, edit):
    """Before: a trainer_state.json nested 100,000 deep (200 KB) was a RecursionError traceback; the resume records
    and the signal are checked like the rest of the state."""
    folder = _downloaded(run_with_checkpoint, tmp_path)
    edit(folder / checkpoint.STATE_FILE)
    line = _resume_fails(run_with_checkpoint, tiny_dataset, folder, tmp_path, capsys)
    assert "is damaged or was not written by hf_fmnist" in line and len(line) < 600, line


def test_a_genuine_history_loads():
    """Every epoch records its loss; accuracy only where the epoch was evaluated (--eval_last_epochs)."""
    unevaluated = {"epoch": 1, "step": 2, "train_loss": 2.1}
    entry = {"epoch": 2, "step": 4, "train_loss": float("nan"), "eval_accuracy": 0.5, "eval_top5_accuracy": 1.0}
    saved = {"step": 4, "images_seen": 64, "train_seconds": 1.0, "history": [unevaluated, entry]}
    assert checkpoint.TrainState.from_json(saved, "ckpt", max_steps=4).history == [unevaluated, entry]


# 3. An optimizer state the optimizer cannot use -----------------------------------------------------------------------


def _edit_optimizer(folder: Path, variant: str) -> None:
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = folder / checkpoint.OPTIMIZER_FILE
    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    if variant == "shape":
        tensors[next(k for k in tensors if k.endswith("exp_avg"))] = torch.zeros(3)
    elif variant == "missing":
        del tensors[next(k for k in tensors if k.endswith("exp_avg_sq"))]
    elif variant == "nan":
        key = next(k for k in tensors if k.endswith("exp_avg_sq"))
        tensors[key] = torch.full_like(tensors[key], float("nan"))
    else:
        groups = json.loads(metadata["param_groups"])
        groups[0]["eps" if variant == "eps" else "betas"] = "tiny" if variant == "eps" else [0.9]
        metadata["param_groups"] = json.dumps(groups)
    save_file(tensors, path, metadata=metadata)
    _resign(folder)


@pytest.mark.parametrize(
    "variant, says",
    [
        ("shape", "has shape (3,), its parameter needs"),
        ("missing", "not Adam's"),
        ("nan", "not finite"),
        ("eps", "hyper-parameter 'eps' is 'tiny'"),
        ("betas", "hyper-parameter 'betas' is [0.9]"),
    ],
)
def test_a_forged_optimizer_state_is_one_line(run_with_checkpoint, tiny_dataset, tmp_path, capsys, variant, says):
    """Before: a wrong-shape exp_avg / "eps": "tiny" loaded, then the first step raised RuntimeError / TypeError."""
    folder = _downloaded(run_with_checkpoint, tmp_path)
    _edit_optimizer(folder, variant)
    line = _resume_fails(run_with_checkpoint, tiny_dataset, folder, tmp_path, capsys)
    assert "optimizer.safetensors" in line and says in line


# 4. Labels outside the classes ----------------------------------------------------------------------------------------


def _with_label(dataset: str, tmp_path: Path, split: str, value: int) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / f"{split}_{value}"
    shutil.copytree(dataset, folder)
    (path,) = (folder / "data").glob(f"{split}-*.parquet")
    table = pq.read_table(path)
    labels = table.column("label").to_pylist()
    labels[3] = labels[5] = value
    index = table.schema.get_field_index("label")
    pq.write_table(table.set_column(index, table.schema.field("label"), pa.array(labels, pa.int64())), path)
    return str(folder)


@pytest.mark.parametrize("split, value", [("train", -1), ("test", 50)])
def test_labels_outside_the_classes_are_refused_before_training(tiny_dataset, tmp_path, capsys, split, value):
    """Before: train label -1 was an IndexError traceback at the first step; test label 50 a reshape error after
    the training epoch (and in `hf-fmnist evaluate`)."""
    dataset = _with_label(tiny_dataset, tmp_path, split, value)
    out = tmp_path / "out"
    assert train_main(tiny_train_args(out, dataset)) == 2
    line = one_error_line(capsys)
    assert f"Split '{split}': 2 label(s)" in line and "outside 0-9" in line and f": {value};" in line
    assert not (out / "model.safetensors").exists()


def test_evaluate_refuses_labels_outside_the_classes(tiny_dataset, tmp_path):
    dataset = data.open_dataset(_with_label(tiny_dataset, tmp_path, "test", 50))
    with pytest.raises(HfFmnistError, match="Split 'test': 2 label"):
        data.load_arrays("test", dataset)


# 5. An IDX file of 0 images -------------------------------------------------------------------------------------------


def test_an_idx_split_of_no_images_is_one_line(tmp_path, capsys):
    """Before: `build --no-verify` died in datasets with ValueError: Instruction "train" corresponds to no data!"""
    raw = Synthetic(tmp_path / "raw").folder
    (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_images(np.zeros((0, 28, 28), np.uint8))))
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_labels(np.zeros(0, np.uint8))))
    with pytest.raises(idx.IdxError, match="holds 0 images"):
        idx.read_split(raw, "train", verify=False)
    assert cli.main(["build", "--no-verify", "--data-dir", str(raw), "--output-dir", str(tmp_path / "out")]) == 2
    assert "holds 0 images: a split needs at least one" in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


# 6. ONNX export through a link ----------------------------------------------------------------------------------------


@pytest.fixture
def model_dir(tmp_path) -> Path:
    from hf_fmnist.core import models

    folder = tmp_path / "stranger_model"
    models.create_model("cnn").save_pretrained(folder)
    models.preset_image_processor().save_pretrained(folder)
    return folder


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


# The export verifies on the real test split, in its child process (where no monkeypatch reaches): the links below are
# refused before that, and the plain export verifies its fp32 file on 10 images.
@real_data
@pytest.mark.parametrize("link", ["onnx", "onnx/model.onnx"])
def test_export_never_writes_through_a_link_in_the_model_folder(model_dir, tmp_path, link):
    """Before: `onnx -> users_folder` got model.onnx (and a temp folder) written into the user's folder."""
    from hf_fmnist.inference import onnx as onnx_export

    users = tmp_path / "users_folder"
    users.mkdir()
    (users / "keep.txt").write_text("user data")
    target = users if link == "onnx" else users / "keep.txt"
    (model_dir / link).parent.mkdir(exist_ok=True)
    (model_dir / link).symlink_to(target)
    before = _listing(users)
    with pytest.raises(HfFmnistError, match="is a link"):
        onnx_export.export_onnx(model_dir, max_samples=10, dtypes=("fp32",), log=lambda message: None)
    assert _listing(users) == before and (model_dir / link).is_symlink()


@real_data
def test_export_never_writes_through_a_dangling_sidecar_link(model_dir, tmp_path):
    """Before: --output DIR holding `config.json -> (missing file)` had config.json written where the link pointed."""
    from hf_fmnist.inference import onnx as onnx_export

    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").symlink_to(tmp_path / "users_new_file")
    with pytest.raises(HfFmnistError, match="is a link"):
        onnx_export.export_onnx(model_dir, out, max_samples=10, dtypes=("fp32",), log=lambda message: None)
    assert not (tmp_path / "users_new_file").exists() and not (out / "onnx").exists()


@real_data
def test_export_into_a_plain_folder_still_works(model_dir):
    from hf_fmnist.inference import onnx as onnx_export

    report = onnx_export.export_onnx(model_dir, max_samples=10, dtypes=("fp32",), log=lambda message: None)
    assert Path(report["path"]) == model_dir / "onnx" / "model.onnx" and not (model_dir / "onnx").is_symlink()
