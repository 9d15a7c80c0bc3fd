"""Output modes follow the umask (issue 24, item 5): every file and folder a command leaves is what an ordinary new
file or folder gets, 0644/0755 under umask 022. Before, safetensors' own atomic write and our mkstemp temp files
left model.safetensors, training_config.json, the plots and the markers at 0600: a teammate on a shared disk could
not read the weights. Under 027 the same walk expects 0640/0750, so the modes follow the umask rather than a
hard-coded 0644."""

from __future__ import annotations

import contextlib
import io
import os
import stat
from pathlib import Path

import pytest

from conftest import real_data, synthetic_export, tiny_train_args

UMASKS = [0o022, 0o027]


@contextlib.contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def wrong_modes(folder: Path, mask: int) -> list[str]:
    """Every entry under ``folder`` (itself included) whose mode is not the umask's for a new file or folder."""
    wrong = []
    for path in [folder, *sorted(folder.rglob("*"))]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            wrong.append(f"{path} (a link)")
            continue
        want = (0o777 if stat.S_ISDIR(info.st_mode) else 0o666) & ~mask
        if stat.S_IMODE(info.st_mode) != want:
            wrong.append(f"{path.relative_to(folder)} {stat.S_IMODE(info.st_mode):o} (want {want:o})")
    return wrong


@pytest.mark.parametrize("mask", UMASKS, ids=lambda m: f"umask{m:03o}")
def test_a_trained_folder_its_evaluation_and_a_dataset_export_follow_the_umask(tmp_path, mask):
    """A whole training output (model, config, plots, examples, markers, a checkpoint), the evaluation folder
    evaluate writes into it, and a whole dataset export."""
    from hf_fmnist.inference.evaluate import evaluate_model
    from hf_fmnist.training.loop import main as train_main

    with umask(mask):
        dataset = synthetic_export(tmp_path / "data", sizes=(64, 20))
        out = tmp_path / "out"
        with contextlib.redirect_stdout(io.StringIO()):
            assert train_main(tiny_train_args(out, str(dataset), "--checkpointing_steps", "epoch")) == 0
            evaluate_model(str(out), str(dataset))
    names = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    for expected in ("model.safetensors", "training_config.json", "epoch_1/optimizer.safetensors", "evaluation"):
        assert expected in names  # the walk below covers the files that used to be private
    assert wrong_modes(out, mask) == []
    assert wrong_modes(dataset, mask) == []


def test_publish_sets_modes_of_a_whole_tree_and_leaves_links_alone(tmp_path):
    """The rule itself: mkdtemp/mkstemp's private modes become the umask's, recursively; a link (which could point
    at a user's file) is neither followed nor changed."""
    import tempfile

    from hf_fmnist import atomic

    victim = tmp_path / "victim"
    victim.write_text("theirs")
    victim.chmod(0o600)
    with umask(0o022):
        tree = Path(tempfile.mkdtemp(dir=tmp_path))
        (tree / "sub").mkdir(mode=0o700)
        fd, name = tempfile.mkstemp(dir=tree / "sub")
        os.close(fd)
        (tree / "link").symlink_to(victim)
        atomic.publish(tree)
    assert stat.S_IMODE(tree.stat().st_mode) == 0o755
    assert stat.S_IMODE((tree / "sub").stat().st_mode) == 0o755
    assert stat.S_IMODE(Path(name).stat().st_mode) == 0o644
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600


@real_data
@pytest.mark.parametrize("mask", UMASKS, ids=lambda m: f"umask{m:03o}")
def test_an_onnx_export_follows_the_umask(tmp_path, mask):
    """A whole `hf-fmnist export --output DIR`: onnx/ with fp32, int8 and fp16 files, the record, the configs."""
    from test_demo import tiny_model

    from hf_fmnist.inference.onnx import export_onnx

    model = tiny_model(tmp_path / "cnn")
    with umask(mask):
        export_onnx(model, tmp_path / "export", max_samples=200, log=lambda line: None)
    names = sorted(p.relative_to(tmp_path / "export").as_posix() for p in (tmp_path / "export").rglob("*"))
    assert "onnx/model.onnx" in names and "onnx/model_quantized.onnx" in names and "onnx/model_fp16.onnx" in names
    assert wrong_modes(tmp_path / "export", mask) == []
