"""Preemption: SIGTERM or SIGUSR1 mid-epoch or at an epoch's end leaves a checkpoint and exit status 75, and
``--resume_from_checkpoint latest`` ends bit-identical to a run that was never stopped (CPU, one process)."""

from __future__ import annotations

import json
import signal

import pytest

from hf_fmnist.core.loader import DeviceLoader
from hf_fmnist.training import preemption
from hf_fmnist.training.loop import find_checkpoints
from hf_fmnist.training.loop import main as train_main

from conftest import synthetic_export, tiny_train_args

EPOCHS = ("--num_train_epochs", "2", "--eval_last_epochs", "0", "--seed", "5")  # 2 epochs of 4 steps


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> str:
    return str(synthetic_export(tmp_path_factory.mktemp("preempt"), sizes=(128, 40)))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_dataset):
    out = tmp_path_factory.mktemp("whole") / "out"
    assert train_main(tiny_train_args(out, tiny_dataset, *EPOCHS)) == 0
    return out


def _signal_during_batch(monkeypatch, k: int, signum) -> None:
    """Deliver ``signum`` to this process while training takes its ``k``-th batch (1-based, over all epochs)."""
    original, seen = DeviceLoader.epoch, [0]

    def epoch(self, epoch, start=0):
        for batch in original(self, epoch, start):
            if self.train:
                seen[0] += 1
                if seen[0] == k:
                    signal.raise_signal(signum)
            yield batch

    monkeypatch.setattr(DeviceLoader, "epoch", epoch)


@pytest.mark.parametrize(
    "signum, batch, stops_at",
    [(signal.SIGTERM, 2, 2), (signal.SIGUSR1, 3, 3), (signal.SIGTERM, 4, 4)],  # the last: at the epoch's end
)
def test_a_stop_signal_checkpoints_and_the_resumed_run_is_bit_identical(
    tmp_path, tiny_dataset, uninterrupted, monkeypatch, capsys, signum, batch, stops_at
):
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        _signal_during_batch(patch, batch, signum)
        assert train_main(tiny_train_args(out, tiny_dataset, *EPOCHS)) == preemption.EXIT_PREEMPTED
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"Stopped by {signal.Signals(signum).name} at step {stops_at}: checkpoint ")
    assert "Traceback" not in "\n".join(err)
    assert [p.name for p in find_checkpoints(out)] == [f"step_{stops_at}"]
    assert not (out / "model.safetensors").exists()  # stopped: no final model yet

    assert train_main(tiny_train_args(out, tiny_dataset, *EPOCHS, "--resume_from_checkpoint", "latest")) == 0
    assert f"at step {stops_at} (written by 1 process, now 1)" in capsys.readouterr().out
    assert (out / "model.safetensors").read_bytes() == (uninterrupted / "model.safetensors").read_bytes()
    resumed, whole = (json.loads((d / "all_results.json").read_text()) for d in (out, uninterrupted))
    name = signal.Signals(signum).name
    assert (
        resumed["resumes"] == [{"step": stops_at, "written_by_processes": 1, "num_processes": 1, "stopped_by": name}]
        and whole["resumes"] == []
    )
    card = (out / "README.md").read_text()
    assert f"resumed from a checkpoint: at step {stops_at} (stopped by {name}), written by 1 process(es)" in card
    assert "resumed from a checkpoint" not in (uninterrupted / "README.md").read_text()
    assert resumed["eval_accuracy"] == whole["eval_accuracy"]
    assert [h["eval_accuracy"] for h in resumed["history"]] == [h["eval_accuracy"] for h in whole["history"]]


def test_the_first_signal_is_recorded_a_second_one_ends_the_process_and_the_handlers_are_put_back():
    def mine(signum, frame):
        pass

    before = {s: signal.signal(s, mine) for s in preemption.SIGNALS}
    try:
        with preemption.StopSignals() as signals:
            assert signals.received is None
            signal.raise_signal(signal.SIGUSR1)
            assert signals.received == "SIGUSR1"
            assert all(signal.getsignal(s) is signal.SIG_DFL for s in preemption.SIGNALS)  # next: default action
        assert all(signal.getsignal(s) is mine for s in preemption.SIGNALS)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
