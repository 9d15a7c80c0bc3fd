"""A full disk while a checkpoint, the model folder, an export or an evaluation is written: one error line
("no space left on MOUNT while writing FILE"), exit status 2, the previous file or folder intact, and no partial file
left under a final name (nor a temp folder holding the space).

Two ways to fill a disk: a real tmpfs with a size limit, which the test mounts itself when it runs as root (as CI
does; skipped elsewhere), filled up to a few kilobytes; and an injected ENOSPC from the writing library, which runs
everywhere.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
import torch

from hf_fmnist import atomic
from hf_fmnist.errors import HfFmnistError
from hf_fmnist.training import checkpoint

from conftest import Synthetic, one_error_line


@pytest.fixture
def small_disk(tmp_path):
    """A fresh 8 MiB tmpfs at ``tmp_path/disk``, unmounted afterwards; skipped where the test cannot mount."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs the suite as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until ``leave`` bytes are free (give or take a page), with one filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while os.write(fd, b"\0" * (64 << 10)):
            pass
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))
    return filler


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes: what must not change."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class OneProcess:
    """What checkpoint.save/load use of an Accelerator, for one CPU process."""

    num_processes, process_index, is_main_process, gradient_accumulation_steps = 1, 0, True, 1
    device, scaler = torch.device("cpu"), None

    @staticmethod
    def unwrap_model(model, keep_torch_compile=False):
        return model


def _model_and_optimizer(width: int = 256):
    model = torch.nn.Linear(width, width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(2, width)).sum().backward()
    optimizer.step()  # Adam's moments exist: a checkpoint of about 3 × 256 KiB
    return model, optimizer


def test_no_space_names_the_mount_point_and_the_final_file(tmp_path):
    from safetensors import SafetensorError

    target = tmp_path / "out" / "model.safetensors"
    for raised in (
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
        OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)),
        SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
        OSError(28, "Error writing bytes to file. Detail: [errno 28] No space left on device"),  # pyarrow's
    ):
        with pytest.raises(atomic.NoSpaceError) as caught, atomic.writing(target):
            raise raised
        message = str(caught.value)
        assert message.startswith(f"no space left on {atomic.mount_point(tmp_path)} while writing {target};")
        assert "\n" not in message
    staged = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".tmp-x" / "sub" / "a.json"))
    with (
        pytest.raises(atomic.NoSpaceError, match=r"while writing .*/out/sub/a\.json;"),
        atomic.writing(tmp_path / "out", staging=tmp_path / ".tmp-x"),
    ):
        raise staged
    with pytest.raises(atomic.CannotWriteError, match=rf"^cannot write {target} \(Permission denied\)"):
        with atomic.writing(target):
            raise OSError(errno.EACCES, "Permission denied")
    with pytest.raises(OSError, match="Input/output error"), atomic.writing(target):  # other errors stay themselves
        raise OSError(errno.EIO, "Input/output error")


def test_atomic_write_on_a_full_tmpfs_keeps_the_previous_file(small_disk):
    path = atomic.write_bytes(small_disk / "results.json", b"previous")
    fill(small_disk, leave=16 << 10)
    with pytest.raises(atomic.NoSpaceError) as caught:
        atomic.write_bytes(path, b"x" * (256 << 10))
    assert str(caught.value).startswith(f"no space left on {small_disk} while writing {path};")
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "results.json"]  # no temp file left


def test_checkpoint_on_a_full_tmpfs_keeps_the_previous_checkpoint(small_disk):
    accelerator, (model, optimizer) = OneProcess(), _model_and_optimizer()
    state = checkpoint.TrainState(step=4, images_seen=128)
    first = checkpoint.save(accelerator, model, optimizer, state, small_disk, "step_4")
    before = listing(small_disk)
    fill(small_disk, leave=400 << 10)  # less than one more checkpoint
    state.step = 8
    for name in ("step_8", "step_4"):  # a new checkpoint, and one replacing the previous of that name
        with pytest.raises(HfFmnistError, match=rf"^no space left on {small_disk} while writing {small_disk}/{name}/"):
            checkpoint.save(accelerator, model, optimizer, state, small_disk, name)
        assert listing(small_disk) == {**before, "filler": (small_disk / "filler").read_bytes()}
        assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "step_4"]  # no .partial, no .old
    assert checkpoint.find_checkpoints(small_disk) == [first]
    restored = checkpoint.load(first, accelerator, *_model_and_optimizer(), _NoScheduler())
    assert restored.step == 4 and restored.written_by_processes == 1


def test_injected_enospc_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    """The same without root: safetensors reports a full disk on the optimizer file of the second checkpoint."""
    import safetensors.torch
    from safetensors import SafetensorError

    accelerator, (model, optimizer) = OneProcess(), _model_and_optimizer(16)
    state = checkpoint.TrainState(step=4)
    checkpoint.save(accelerator, model, optimizer, state, tmp_path, "step_4")
    before = listing(tmp_path)
    save_file = safetensors.torch.save_file

    def full(tensors, filename, metadata=None):
        if Path(filename).name == checkpoint.OPTIMIZER_FILE:
            Path(filename).write_bytes(b"half")  # as a real full disk leaves it
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    for name in ("step_8", "step_4"):
        with pytest.raises(
            HfFmnistError, match=rf"^no space left on .* while writing {tmp_path}/{name}/optimizer\.safetensors;"
        ):
            checkpoint.save(accelerator, model, optimizer, state, tmp_path, name)
        assert listing(tmp_path) == before
        assert [p.name for p in tmp_path.iterdir()] == ["step_4"]


class _NoScheduler:
    def step(self):
        pass


def test_export_on_a_full_tmpfs_keeps_the_previous_export(small_disk, tmp_path):
    from hf_fmnist.data.export import export

    raw = Synthetic(tmp_path / "raw", sizes=(200, 100)).folder
    out = export(small_disk / "export", data_dir=raw, verify=False)
    before = listing(out)
    fill(small_disk, leave=8 << 10)
    with pytest.raises(HfFmnistError, match=rf"^no space left on {small_disk} while writing {out}"):
        export(out, data_dir=raw, verify=False)
    assert listing(out) == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["export", "filler"]


def test_training_and_evaluating_on_a_full_tmpfs(small_disk, tmp_path, capsys):
    """train.py's model folder and `hf-fmnist evaluate`'s folder, on a disk that filled since the first run:
    one error line, exit status 2, the previous files byte for byte, no temp folder left."""
    from hf_fmnist import cli
    from hf_fmnist.training.loop import main

    from conftest import synthetic_export, tiny_train_args

    dataset = str(synthetic_export(tmp_path / "data", sizes=(64, 40)))
    out = small_disk / "out"
    assert main(tiny_train_args(out, dataset)) == 0
    assert cli.main(["evaluate", "--model", str(out), "--dataset", dataset]) == 0
    capsys.readouterr()
    before = listing(out)
    fill(small_disk, leave=64 << 10)  # room for training_config.json, not for the model
    assert main(tiny_train_args(out, dataset, "--overwrite_output_dir")) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: no space left on {small_disk} while writing {out}/"), line
    assert cli.main(["evaluate", "--model", str(out), "--dataset", dataset]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: no space left on {small_disk} while writing {out}/evaluation"), line
    after = listing(out)
    assert {k: v for k, v in after.items() if k != "training_config.json"} == {
        k: v for k, v in before.items() if k != "training_config.json"
    }  # training_config.json is the new run's, written at its start: the one file that fitted
    assert not [p for p in out.rglob(".*") if p.name != ".hf_fmnist"]  # no temp folder or file left behind


@pytest.fixture
def read_only_disk(small_disk):
    """``small_disk`` remounted read-only once the test has written what it needs (call the returned function)."""

    def freeze() -> None:
        done = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {done.stderr.decode().strip()}")

    return freeze


def test_training_and_exporting_onto_a_read_only_filesystem_is_one_line(small_disk, read_only_disk, tmp_path, capsys):
    """Before: OSError [Errno 30] tracebacks from the output folder's mkdir (train.py) and the export's temp folder
    (hf-fmnist build)."""
    from hf_fmnist import cli
    from hf_fmnist.training.loop import main

    from conftest import synthetic_export, tiny_train_args

    dataset = str(synthetic_export(tmp_path / "data", sizes=(64, 40)))
    raw = Synthetic(tmp_path / "raw", sizes=(20, 10)).folder
    read_only_disk()
    assert main(tiny_train_args(small_disk / "out", dataset)) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: cannot write {small_disk / 'out'} (Read-only file system)"), line
    assert cli.main(["build", "--output-dir", str(small_disk / "export"), "--data-dir", str(raw), "--no-verify"]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: cannot write {small_disk / 'export'} (Read-only file system)"), line
    assert list(small_disk.iterdir()) == []


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_a_read_only_or_full_tensor_cache_only_costs_speed(tmp_path, monkeypatch, code):
    """The decoded-tensor cache is an optimisation: a cache it cannot write is skipped, not a refusal. (Turning
    EROFS/EACCES into a CannotWriteError line for real outputs had made this cache raise it.)"""
    import numpy as np

    from hf_fmnist.data import tensors

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    path = tmp_path / "cache.npz"
    tensors._save_atomic(path, images=np.zeros((2, 28, 28), np.uint8), labels=np.zeros(2, np.int64))
    assert not path.exists()
