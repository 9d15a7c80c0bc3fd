"""The ``Accelerator`` of a run: one process or N, on GPUs or on a machine without any.

Accelerate keeps precision and compile settings process-wide from the first ``Accelerator``; a second training in
the same process (notebooks, tests) resets them first, so it never inherits the previous run's.
"""

from __future__ import annotations

import contextlib
import os

import torch

from ..core.config import TrainConfig
from ..errors import HfFmnistError

# Where every tracker writes its local files, below --output_dir (TensorBoard: runs/hf_fmnist/); the whole folder is
# checked for links before any tracker starts (loop.tracker_root, atomic.check_no_links_below).
TRACKER_DIR = "runs"


def gpu_available() -> bool:
    """A CUDA, XPU or MPS device, so the run uses it and the recipes for GPUs apply."""
    xpu = getattr(torch, "xpu", None)
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(xpu and xpu.is_available()) or bool(mps and mps.is_available())


def make_accelerator(config: TrainConfig, *, mixed_precision: str = "no", torch_compile: bool = False):
    """An ``Accelerator`` that also works as N real processes on a machine without GPUs.

    Without ``cpu=True`` on such a machine, each process started by torchrun believes it is alone. With it, Accelerate
    reads torchrun's environment and joins a gloo process group. ``torch_compile`` compiles the model in ``prepare``
    (inductor), after the DDP wrapper; left False, `accelerate launch --dynamo_backend` still applies.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import ProjectConfiguration

    # No public API resets the process-wide state (tests/test_precision.py pins that a second run does not inherit
    # the first one's precision); the process group (PartialState) stays.
    AcceleratorState._reset_state()
    use_cpu = not gpu_available()
    if mixed_precision == "fp16" and use_cpu:
        raise HfFmnistError(
            "--mixed_precision fp16 needs a GPU (its gradient scaler is for CUDA and XPU devices); "
            "use bf16 on a CPU, or no."
        )
    tracking = {}
    if config.with_tracking:
        from .trackers import prepare

        tracking = {
            "log_with": prepare(config),
            "project_config": ProjectConfiguration(
                project_dir=config.output_dir, logging_dir=os.path.join(config.output_dir, TRACKER_DIR)
            ),
        }
    expected = int(os.environ.get("WORLD_SIZE", "1"))
    launch_hint = (
        f"On CPU-only machines launch with `torchrun --standalone --nproc_per_node {expected} train.py ...` or "
        f"`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes {expected} train.py ...`."
    )
    try:
        accelerator = Accelerator(
            cpu=use_cpu,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            mixed_precision=mixed_precision,
            **({"dynamo_backend": "inductor"} if torch_compile else {}),
            **tracking,
        )
    except (ValueError, RuntimeError) as e:
        if expected > 1:  # half-set distributed environment (e.g. WORLD_SIZE without MASTER_ADDR)
            raise HfFmnistError(
                f"WORLD_SIZE is {expected} but the processes could not join ({e}). {launch_hint}"
            ) from None
        raise
    if expected > 1 and accelerator.num_processes != expected:
        raise HfFmnistError(
            f"WORLD_SIZE is {expected} but Accelerate runs {accelerator.num_processes} process(es): each process "
            f"would train alone on the whole data. {launch_hint}"
        )
    if accelerator.device.type == "cpu":
        set_cpu_threads(config.cpu_threads)
    return accelerator


def set_cpu_threads(threads: int | None) -> int:
    """Use the cores: ``accelerate launch`` without an accelerate config exports OMP_NUM_THREADS=1."""
    if threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    torch.set_num_threads(threads)
    return threads


@contextlib.contextmanager
def local_main_first(accelerator):
    """``accelerator.local_main_process_first()`` that a refusal cannot turn into a hang.

    Accelerate's version makes the other processes wait at a barrier that the first process reaches only after its
    turn: a first process that refuses (a bad dataset card, a model folder that fails a check) would leave them
    waiting until the launcher kills them. Here it still reaches the barrier; the others then take their turn, meet
    the same input and refuse too, and every process ends with its own one line.
    """
    refused: list[HfFmnistError] = []
    with accelerator.local_main_process_first():
        try:
            yield
        except HfFmnistError as e:
            refused.append(e)
    if refused:
        raise refused[0]


def agree(accelerator, problem: str | None) -> None:
    """Raise the main process's ``problem`` on every process (one collective), so that none waits for the others
    after the main process alone failed to write (a checkpoint, the output folder)."""
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        problem = broadcast_object_list([problem], from_process=0)[0]
    if problem is not None:
        raise HfFmnistError(problem)
