"""Preemption: SIGTERM or SIGUSR1 asks a run to stop at the next optimizer step and leave a checkpoint.

Schedulers stop jobs with SIGTERM and a grace period (SLURM can send SIGUSR1 ahead of time with ``--signal``). The
handler only records the signal; the loop then finishes the optimizer step it is in (and, at an epoch's end, the
epoch's evaluation), writes a checkpoint, says so in one line and exits with :data:`EXIT_PREEMPTED`, which means
"requeue me": ``--resume_from_checkpoint latest`` continues with the same data order and random state. A second
signal exits at once (the signals' default action), as an impatient user expects.

Processes of a multi-process run may get the signal at different steps (or only one of them may get it), so they
agree: every :data:`AGREE_EVERY` steps, and at every epoch's end, one all-reduce of a single number.
"""

from __future__ import annotations

import signal
import threading

import torch

from ..core.card import STOP_SIGNALS

SIGNALS = tuple(signal.Signals[name] for name in STOP_SIGNALS)  # SIGTERM, SIGUSR1
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by a signal after writing a checkpoint; run the same command again
AGREE_EVERY = 5  # optimizer steps between the processes' agreements (one small all-reduce each)


class Preempted(Exception):
    """Training stopped on a signal after writing ``checkpoint`` at ``step``."""

    def __init__(self, signal_name: str, step: int, checkpoint):
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        super().__init__(
            f"Stopped by {signal_name} at step {step}: checkpoint {checkpoint} written. Resume with "
            f"--resume_from_checkpoint latest (exit status {EXIT_PREEMPTED}: requeue)."
        )


class StopSignals:
    """A context that records SIGTERM/SIGUSR1 while training runs, and restores the previous handlers after."""

    def __init__(self):
        self.received: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python delivers signals to the main thread only
            self._previous = {s: signal.signal(s, self._record) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _record(self, signum, frame) -> None:
        self.received = signal.Signals(signum).name
        for s in SIGNALS:  # a second signal ends the process at once
            signal.signal(s, signal.SIG_DFL)

    def agreed(self, accelerator, step: int | None = None) -> str | None:
        """The signal every process stops on now, or None. With one process: whether it got one. With several: at
        every :data:`AGREE_EVERY`-th ``step`` (and whenever ``step`` is None: an epoch's end), whether any got one;
        all processes must call this at the same points."""
        if accelerator.num_processes == 1:
            return self.received
        if step is not None and step % AGREE_EVERY:
            return None
        mine = 0 if self.received is None else SIGNALS.index(signal.Signals[self.received]) + 1
        flag = torch.tensor([mine], device=accelerator.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        agreed = int(flag.item())
        return signal.Signals(SIGNALS[agreed - 1]).name if agreed else None
