"""Training with Accelerate, in the shape of accelerate's ``cv_example.py``.

``prepare`` → ``accumulate`` → ``sync_gradients`` → ``gather_for_metrics``; data prepared on the main process first;
``unwrap_model`` before saving. The data never leaves the device (:mod:`hf_fmnist.core.loader`); checkpoints are
pickle-free folders (:mod:`hf_fmnist.training.checkpoint`) written under a temp name and renamed, so
``--resume_from_checkpoint latest`` after a crash continues from the newest complete one with the same data order
and random state.

Run it as ``accelerate launch train.py ...``, ``python train.py ...``, ``hf-fmnist train ...`` or, for several
processes on a machine without GPUs, ``torchrun --nproc_per_node N train.py ...``.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .. import ownership
from ..core import metrics, recipes
from ..core.config import TrainConfig
from ..core.loader import DeviceLoader, Preprocess
from ..core.models import PRESETS, load_model
from ..errors import HfFmnistError, printable
from ..inference.evaluate import evaluate_logits
from . import checkpoint
from .batchnorm import synchronise
from .checkpoint import TrainState, find_checkpoints

if TYPE_CHECKING:  # accelerate is imported lazily (start-up time): its types are for the checker only
    from accelerate import Accelerator

MODULES_LOADED_AT = time.perf_counter()  # torch, numpy and this package imported (transformers comes lazily)


def process_started_at() -> float | None:
    """When this process started, on the ``time.perf_counter`` clock (Linux ``/proc``; None elsewhere)."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return time.perf_counter() - (uptime - started)


def startup_timing(first_step_at: float) -> dict:
    """Seconds from process start to the first training step, and to the end of the top-level imports."""
    started = process_started_at()
    if started is None:
        return {"startup_s": None, "imports_s": None}
    return {"startup_s": round(first_step_at - started, 2), "imports_s": round(MODULES_LOADED_AT - started, 2)}


def _seconds(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f} s"


def gpu_available() -> bool:
    return torch.cuda.is_available() or _other_accelerator_available()


def choose_recipe(config: TrainConfig) -> recipes.Recipe:
    """``--recipe``, or the default for this device and ``--model_name_or_path``."""
    if config.recipe is not None:
        return recipes.get(config.recipe)
    return recipes.get(recipes.default_recipe(config.model_name_or_path, gpu=gpu_available()))


def mixed_precision_for(config: TrainConfig, recipe: recipes.Recipe) -> str:
    """The flag, else what ``accelerate launch --mixed_precision`` asked for, else the recipe's.

    The launcher exports "no" when it was given nothing, so only fp16/bf16 from it count as a request.
    """
    if config.mixed_precision is not None:
        return config.mixed_precision
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    return launcher if launcher in ("fp16", "bf16") else recipe.mixed_precision


def make_accelerator(config: TrainConfig, *, mixed_precision: str = "no", torch_compile: bool = False):
    """An ``Accelerator`` that also works as N real processes on a machine without GPUs.

    Without ``cpu=True`` on such a machine, each process started by torchrun believes it is alone. With it, Accelerate
    reads torchrun's environment and joins a gloo process group. ``torch_compile`` compiles the model in ``prepare``
    (inductor), after the DDP wrapper; left False, `accelerate launch --dynamo_backend` still applies.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import ProjectConfiguration

    # Accelerate keeps precision and compile settings process-wide from the first Accelerator: a second training in
    # the same process (notebooks, tests) would silently inherit them. The process group (PartialState) stays.
    AcceleratorState._reset_state()
    use_cpu = not gpu_available()
    if mixed_precision == "fp16" and use_cpu:
        raise HfFmnistError(
            "--mixed_precision fp16 needs a GPU (its gradient scaler is for CUDA and XPU devices); "
            "use bf16 on a CPU, or no."
        )
    tracking = {}
    if config.with_tracking:
        tracking = {
            "log_with": config.report_to,
            "project_config": ProjectConfiguration(
                project_dir=config.output_dir, logging_dir=os.path.join(config.output_dir, "runs")
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


def _other_accelerator_available() -> bool:
    return bool(getattr(torch, "xpu", None) and torch.xpu.is_available()) or bool(
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    )


@dataclass(frozen=True)
class Data:
    names: list[str]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    eval_images: torch.Tensor
    eval_labels: torch.Tensor
    eval_split: str


def load_data(config: TrainConfig, accelerator) -> Data:
    """Both splits as uint8/int64 tensors on ``accelerator.device``; built/downloaded once, by the main process."""
    from ..data.tensors import eval_split_of, find_columns, load_arrays, local_root, open_dataset

    with accelerator.main_process_first():
        dataset = open_dataset(config.dataset, data_dir=config.data_dir)
        eval_split = eval_split_of(dataset)
        if "train" not in dataset or eval_split is None:
            raise HfFmnistError(
                f"Dataset {config.dataset!r} has splits {', '.join(dataset)}; training needs 'train' and 'test' "
                f"(or 'validation')."
            )
        root = local_root(config.dataset)
        arrays = {split: load_arrays(split, dataset, root=root) for split in ("train", eval_split)}
    features = dataset["train"].features
    names = list(features[find_columns(features)[1]].names)
    (tx, ty), (ex, ey) = arrays["train"], arrays[eval_split]
    tx, ty = tx[: config.max_train_samples], ty[: config.max_train_samples]
    ex, ey = ex[: config.max_eval_samples], ey[: config.max_eval_samples]
    device = accelerator.device
    return Data(
        names=names,
        train_images=torch.tensor(tx, device=device),
        train_labels=torch.tensor(ty, device=device),
        eval_images=torch.tensor(ex, device=device),
        eval_labels=torch.tensor(ey, device=device),
        eval_split=eval_split,
    )


INITIALISATION = ("zero_init_residual", "pca_stem")  # recipe settings that only a freshly created preset can take


def resolve(config: TrainConfig, recipe: recipes.Recipe, num_processes: int = 1) -> dict:
    """The settings actually used: every flag given, and the recipe's value for every flag left unset.

    The recipe's batch is global: it is divided among processes and accumulation micro-steps, so the same recipe
    trains the same model on any number of processes. An explicit ``--per_device_train_batch_size`` keeps its
    per-process meaning (global batch = it × processes × accumulation steps).
    """

    def pick(name: str):
        value = getattr(config, name)
        return getattr(recipe, name) if value is None else value

    accumulation = config.gradient_accumulation_steps
    per_device = config.per_device_train_batch_size
    if per_device is None:
        parts = num_processes * accumulation
        if recipe.train_batch_size % parts:
            raise HfFmnistError(
                f"Recipe {recipe.name}'s global batch of {recipe.train_batch_size} images does not divide into "
                f"{num_processes} process(es) × {accumulation} accumulation step(s); pass "
                f"--per_device_train_batch_size, or choose a process count that divides it."
            )
        per_device = recipe.train_batch_size // parts
    model = config.model_name_or_path or recipe.model
    initialisation = {name: pick(name) for name in INITIALISATION}
    if model not in PRESETS:  # a checkpoint keeps its weights: the recipe's initialisation applies to presets only
        explicit = [name for name in INITIALISATION if getattr(config, name)]
        if explicit:
            raise HfFmnistError(
                f"--{explicit[0]} initialises a new model, but {model!r} is a checkpoint being fine-tuned; drop the "
                f"flag, or train a preset ({', '.join(PRESETS)})."
            )
        initialisation = dict.fromkeys(INITIALISATION, False)
    return {
        "recipe": recipe.name,
        "model_name_or_path": model,
        "model_config": recipe.model_config if model == recipe.model else {},  # the shape belongs to its preset
        "per_device_train_batch_size": per_device,
        "train_batch_size": per_device * num_processes * accumulation,
        "num_train_epochs": pick("num_train_epochs"),
        **{
            name: pick(name)
            for name in (
                "learning_rate",
                "weight_decay",
                "lr_scheduler_type",
                "label_smoothing",
                "pad_crop",
                "hflip",
                "random_erasing",
                "eval_last_epochs",
                "torch_compile",
            )
        },
        **initialisation,
        "mixed_precision": mixed_precision_for(config, recipe),
    }


PCA_IMAGES = 10_000  # training images whose patches set the PCA stem: the first ones, so every process agrees


def initialise(model, resolved: dict, preprocess: Preprocess, data: Data) -> None:
    """The resolved initialisation tricks; :func:`resolve` turns them off for a checkpoint being fine-tuned."""
    from ..core.models import pca_init_stem, zero_init_residual

    if resolved["zero_init_residual"]:
        zero_init_residual(model)
    if resolved["pca_stem"]:
        pca_init_stem(model, preprocess(data.train_images[:PCA_IMAGES].cpu()))


def schedule(config: TrainConfig, epochs: int, steps_per_epoch: int, scheduler: str = "onecycle") -> dict:
    """Step counts: total optimizer steps, epochs they span, warm-up steps."""
    max_steps = config.max_train_steps or epochs * steps_per_epoch
    warmup = config.num_warmup_steps
    if warmup is None:
        warmup = int(0.25 * max_steps) if scheduler == "onecycle" else 0
    return {
        "max_train_steps": max_steps,
        "num_train_epochs": math.ceil(max_steps / steps_per_epoch),
        "steps_per_epoch": steps_per_epoch,
        "num_warmup_steps": warmup,
    }


def make_optimizer(model, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; no decay on biases and normalisation weights (1-d parameters), as is standard."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99))


def make_scheduler(kind: str, optimizer, warmup: int, total: int):
    """``onecycle``: linear warm-up to the peak, then cosine annealing to ~0; the rest from transformers."""
    if kind == "onecycle":

        def factor(step: int) -> float:
            if step < warmup:
                return 0.04 + 0.96 * step / max(1, warmup)
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    from transformers import get_scheduler

    return get_scheduler(kind, optimizer=optimizer, num_warmup_steps=warmup, num_training_steps=total)


def resolve_checkpoint(config: TrainConfig) -> Path | None:
    if config.resume_from_checkpoint is None:
        return None
    if config.resume_from_checkpoint == "latest":
        found = find_checkpoints(config.output_dir)
        return found[-1] if found else None  # nothing saved yet: start from scratch, as after an early crash
    path = Path(config.resume_from_checkpoint)
    if not path.is_dir() or not (path / checkpoint.STATE_FILE).exists():
        raise HfFmnistError(
            f"--resume_from_checkpoint {path} is not a complete checkpoint (no {checkpoint.STATE_FILE}); pass a "
            f"step_N or epoch_N folder, or 'latest'."
        )
    return path


def check_output_dir(config: TrainConfig) -> None:
    """Write only into a new or empty folder, an earlier run of ours, or (``--overwrite_output_dir``) where told to.

    Even then, a ``step_N``/``epoch_N`` folder that is not a checkpoint of ours is refused up front: saving a
    checkpoint of that name would have to replace it.
    """
    folder = Path(config.output_dir)
    ownership.check_is_folder(folder, "--output_dir")
    if not folder.exists() or not ownership.entries(folder):
        return
    if not (ownership.is_marked(folder, ownership.TRAINING_OUTPUT) or config.overwrite_output_dir):
        raise HfFmnistError(
            f"--output_dir {folder} already holds files that hf_fmnist did not write "
            f"({ownership.describe(ownership.entries(folder))}); choose a new or empty folder, or pass "
            f"--overwrite_output_dir to write into it (its other files are kept, never deleted)."
        )
    for path in sorted(folder.iterdir()):
        if not checkpoint.is_checkpoint_name(path.name):
            continue
        foreign = checkpoint.foreign_files(path)  # a damaged trainer_state.json raises CheckpointError here
        if foreign:
            raise HfFmnistError(
                f"--output_dir {folder} holds {path.name}/, named like a checkpoint but holding files hf_fmnist did "
                f"not write ({ownership.describe(foreign)}); move it away (training writes its checkpoints as "
                f"step_N/ and epoch_N/, and replaces only its own)."
            )


def save_checkpoint(run: Run, name: str) -> Path:
    return checkpoint.save(run.accelerator, run.model, run.optimizer, run.state, run.config.output_dir, name)


class Progress:
    """A tqdm bar with loss, learning rate and images/s on the main process; silent elsewhere."""

    def __init__(self, accelerator, total: int, initial: int):
        from tqdm.auto import tqdm

        interactive = sys.stderr.isatty()  # in a log file, an update every 30 s instead of every second
        self.bar = tqdm(
            total=total,
            initial=initial,
            unit="step",
            dynamic_ncols=True,
            mininterval=1.0 if interactive else 30.0,
            disable=not accelerator.is_local_main_process,
            file=sys.stderr,
        )
        self.last_time, self.images = time.perf_counter(), 0

    def update(self, loss: float, lr: float, images: int) -> None:
        self.images += images
        now = time.perf_counter()
        if now - self.last_time >= 1.0:
            rate = self.images / (now - self.last_time)
            self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", img_s=f"{rate:,.0f}", refresh=False)
            self.last_time, self.images = now, 0
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


@dataclass
class Run:
    """Everything one training run holds, prepared once; the loop functions below read and update it."""

    config: TrainConfig
    accelerator: Accelerator
    data: Data
    model: torch.nn.Module
    processor: object
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_loader: DeviceLoader
    eval_loader: DeviceLoader
    state: TrainState
    resolved: dict
    start_time: float
    first_step_at: float | None = None  # perf_counter when this process started training

    @property
    def images_per_step(self) -> int:
        return (
            self.resolved["per_device_train_batch_size"]
            * self.config.gradient_accumulation_steps
            * self.accelerator.num_processes
        )


def prepare_run(config: TrainConfig, start_time: float) -> Run:
    """Accelerator, data on the device, model, loaders, optimizer and schedule; resumed if asked."""
    from accelerate.utils import DynamoBackend, set_seed

    check_output_dir(config)  # before anything is loaded or written, on every process
    recipe = choose_recipe(config)
    accelerator = make_accelerator(
        config,
        mixed_precision=mixed_precision_for(config, recipe),
        torch_compile=bool(recipe.torch_compile if config.torch_compile is None else config.torch_compile),
    )
    resolved = resolve(config, recipe, accelerator.num_processes)
    resolved.update(
        mixed_precision=accelerator.mixed_precision,
        torch_compile=accelerator.state.dynamo_plugin.backend != DynamoBackend.NO,
    )
    set_seed(config.seed)
    data = load_data(config, accelerator)
    with accelerator.main_process_first():  # one download of a Hub checkpoint, not one per process
        model, processor = load_model(
            resolved["model_name_or_path"],
            names=data.names,
            shape=resolved["model_config"],
            ignore_mismatched_sizes=config.ignore_mismatched_sizes,
            token=config.hub_token,
        )
    preprocess = Preprocess.from_processor(processor, model.config.num_channels)
    initialise(model, resolved, preprocess, data)
    if accelerator.num_processes > 1:  # BatchNorm over the global batch, as one process would see it
        synchronise(model)
    model = model.to(accelerator.device, memory_format=torch.channels_last)
    shard = {"rank": accelerator.process_index, "world": accelerator.num_processes}
    train_loader = DeviceLoader(
        data.train_images,
        data.train_labels,
        batch_size=resolved["per_device_train_batch_size"],
        preprocess=preprocess,
        seed=config.seed,
        train=True,
        pad_crop=resolved["pad_crop"],
        hflip=resolved["hflip"],
        random_erasing=resolved["random_erasing"],
        accumulation=config.gradient_accumulation_steps,
        **shard,
    )
    eval_loader = DeviceLoader(
        data.eval_images,
        data.eval_labels,
        batch_size=config.per_device_eval_batch_size,
        preprocess=preprocess,
        train=False,
        **shard,
    )
    resolved.update(
        schedule(
            config,
            resolved["num_train_epochs"],
            len(train_loader) // config.gradient_accumulation_steps,
            resolved["lr_scheduler_type"],
        )
    )
    optimizer = make_optimizer(model, resolved["learning_rate"], resolved["weight_decay"])
    scheduler = make_scheduler(
        resolved["lr_scheduler_type"], optimizer, resolved["num_warmup_steps"], resolved["max_train_steps"]
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    # The schedule counts optimizer steps; prepared schedulers would step once per process per call.
    state = TrainState()
    resume_from = resolve_checkpoint(config)
    if resume_from is not None:  # before the output folder is written: a refused checkpoint leaves nothing behind
        state = checkpoint.load(resume_from, accelerator, model, optimizer, scheduler, resolved["max_train_steps"])
        accelerator.print(f"Resumed from {resume_from} at step {state.step}")
    if accelerator.is_main_process:
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        ownership.mark(config.output_dir, ownership.TRAINING_OUTPUT)
        config.save(
            config.output_dir, **resolved, num_processes=accelerator.num_processes, device=str(accelerator.device)
        )
    if config.with_tracking:
        # public_dict: TensorBoard's hparams are published with the model, so no path of this machine goes in
        accelerator.init_trackers(
            "hf_fmnist",
            config={
                k: v
                for k, v in {**config.public_dict(), **config.public_resolved(resolved)}.items()
                if isinstance(v, (int, float, str, bool))
            },
        )
    return Run(
        config,
        accelerator,
        data,
        model,
        processor,
        optimizer,
        scheduler,
        train_loader,
        eval_loader,
        state,
        resolved,
        start_time,
    )


def train_epoch(run: Run, epoch: int, progress: Progress) -> tuple[float, str | None]:
    """Optimizer steps until the epoch (or training) ends, from wherever ``run.state`` stands.

    Returns the mean training loss of the steps run (after a resume: of the rest of the epoch) and the name of a
    step checkpoint due at the epoch's end, which is written after the evaluation so that its history includes
    this epoch.
    """
    config, accelerator, state = run.config, run.accelerator, run.state
    steps_per_epoch, max_steps = run.resolved["steps_per_epoch"], run.resolved["max_train_steps"]
    accum = config.gradient_accumulation_steps
    run.model.train()
    start, pending, losses = time.perf_counter(), None, []
    for x, y in run.train_loader.epoch(epoch, start=(state.step % steps_per_epoch) * accum):
        with accelerator.accumulate(run.model):
            logits = run.model(pixel_values=x).logits
            loss = F.cross_entropy(logits.float(), y, label_smoothing=run.resolved["label_smoothing"])
            accelerator.backward(loss)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
        if not accelerator.sync_gradients:
            continue
        run.scheduler.step()
        state.step += 1
        state.images_seen += run.images_per_step
        loss_value, lr = loss.item(), float(run.scheduler.get_last_lr()[0])  # a tensor only with a tensor lr
        losses.append(loss_value)
        progress.update(loss_value, lr, run.images_per_step)
        if config.with_tracking and state.step % 10 == 0:
            accelerator.log({"train/loss": loss_value, "train/lr": lr}, step=state.step)
        epoch_ends = state.step % steps_per_epoch == 0 or state.step >= max_steps
        if config.checkpoint_every and state.step % config.checkpoint_every == 0:
            if epoch_ends:
                pending = f"step_{state.step}"
            else:
                state.train_seconds += time.perf_counter() - start
                start = time.perf_counter()
                save_checkpoint(run, f"step_{state.step}")
        if epoch_ends:
            break
    state.train_seconds += time.perf_counter() - start
    return (sum(losses) / len(losses) if losses else float("nan")), pending


def evaluates_after(epoch: int, resolved: dict) -> bool:
    """Whether epoch ``epoch`` (0-based) ends with a test-split evaluation: every epoch, or only the last N.

    >>> [evaluates_after(e, {"eval_last_epochs": 2, "num_train_epochs": 5}) for e in range(5)]
    [False, False, False, True, True]
    >>> evaluates_after(0, {"eval_last_epochs": 0, "num_train_epochs": 5})
    True
    """
    last = resolved["eval_last_epochs"]
    return not last or epoch >= resolved["num_train_epochs"] - last


def end_epoch(run: Run, epoch: int, loss_value: float, progress: Progress) -> None:
    """Evaluate on the whole test split, print the epoch's line, log it, and record it in the history."""
    logits, labels = evaluate_logits(run.model, run.eval_loader, run.accelerator)
    report = metrics.classification_report(logits, labels, run.data.names)
    now = time.perf_counter()
    elapsed, since_first_step = now - run.start_time, now - (run.first_step_at or run.start_time)
    run.state.history.append(
        {
            "epoch": epoch + 1,
            "step": run.state.step,
            "train_loss": loss_value,
            "eval_accuracy": report["accuracy"],
            "eval_top5_accuracy": report["top5_accuracy"],
            "elapsed_s": round(elapsed, 2),
            "since_first_step_s": round(since_first_step, 3),
        }
    )
    progress.bar.clear()
    run.accelerator.print(
        f"epoch {epoch + 1}/{run.resolved['num_train_epochs']}  step {run.state.step}  loss {loss_value:.4f}  "
        f"test accuracy {report['accuracy']:.2%} ({report['samples']:,} images)  [{elapsed:.0f} s; "
        f"{since_first_step:.2f} s from the first step]"
    )
    if run.config.with_tracking:
        run.accelerator.log(
            {"eval/accuracy": report["accuracy"], "eval/top5_accuracy": report["top5_accuracy"]}, step=run.state.step
        )


def train(config: TrainConfig) -> dict | None:
    """Train, evaluate, and write the model folder; returns the final results (also in ``all_results.json``) on the
    main process, None on the others."""
    run = prepare_run(config, time.perf_counter())
    accelerator, state = run.accelerator, run.state
    max_steps = run.resolved["max_train_steps"]
    accelerator.print(
        f"Training {run.resolved['model_name_or_path']} ({sum(p.numel() for p in run.model.parameters()):,} "
        f"parameters, recipe {run.resolved['recipe']}, {run.resolved['mixed_precision']} mixed precision) on "
        f"{len(run.data.train_images):,} images for {max_steps} steps ({run.resolved['num_train_epochs']} epochs "
        f"of {run.resolved['steps_per_epoch']}), {accelerator.num_processes} process(es) on {accelerator.device}"
    )
    progress = Progress(accelerator, max_steps, state.step)
    run.first_step_at = time.perf_counter()
    timing = startup_timing(run.first_step_at)
    accelerator.print(
        f"Start-up: {_seconds(timing['startup_s'])} from process start to the first step (interpreter and imports "
        f"{_seconds(timing['imports_s'])}); accuracy lines give seconds since the first step"
    )
    while state.step < max_steps:
        epoch = state.step // run.resolved["steps_per_epoch"]
        loss_value, pending_checkpoint = train_epoch(run, epoch, progress)
        if evaluates_after(epoch, run.resolved):
            end_epoch(run, epoch, loss_value, progress)
        else:
            progress.bar.clear()
            accelerator.print(
                f"epoch {epoch + 1}/{run.resolved['num_train_epochs']}  step {state.step}  loss {loss_value:.4f}  "
                f"(test split evaluated after the last {run.resolved['eval_last_epochs']} epochs only)  "
                f"[{time.perf_counter() - run.start_time:.0f} s]"
            )
        if pending_checkpoint:
            save_checkpoint(run, pending_checkpoint)
        if config.checkpoint_each_epoch:
            save_checkpoint(run, f"epoch_{epoch + 1}")
    progress.close()
    results = finish(
        config, accelerator, run.model, run.processor, run.eval_loader, run.data, state, run.resolved, timing=timing
    )
    if config.with_tracking:
        accelerator.end_training()
    return results


def weights_fingerprint(model) -> str:
    """sha256 of every parameter and buffer, by name: equal exactly when the weights are bit-identical."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def assert_same_weights(accelerator, model) -> None:
    """Every process must hold the same model: the final evaluation gathers predictions from all of them."""
    if accelerator.num_processes == 1:
        return
    from accelerate.utils import gather_object

    prints = gather_object([weights_fingerprint(accelerator.unwrap_model(model, keep_torch_compile=False))])
    if len(set(prints)) != 1:
        raise RuntimeError(
            f"the {len(prints)} processes ended with different weights (fingerprints {prints}); "
            "data-parallel training went out of step"
        )


def finish(
    config,
    accelerator,
    model,
    processor,
    eval_loader,
    data: Data,
    state: TrainState,
    resolved,
    timing: dict | None = None,
) -> dict | None:
    """Final metrics through ``evaluate``; model, processor, results, plots and card written by the main process.
    Returns the results on the main process, None on the others."""
    from . import outputs

    assert_same_weights(accelerator, model)
    logits, labels = evaluate_logits(model, eval_loader, accelerator)
    results = None
    if accelerator.is_main_process:
        report = metrics.compute(logits, labels, data.names)
        results = {
            **{f"eval_{k}": v for k, v in report.items()},
            "eval_split": data.eval_split,
            "num_processes": accelerator.num_processes,
            "train_runtime": round(state.train_seconds, 3),
            "train_samples": len(data.train_images),
            "train_samples_per_second": round(state.images_seen / max(state.train_seconds, 1e-9), 1),
            "train_steps": state.step,
            "num_parameters": sum(p.numel() for p in accelerator.unwrap_model(model).parameters()),
            "steps_per_epoch": resolved["steps_per_epoch"],
            "epochs": round(state.step / resolved["steps_per_epoch"], 2),  # what ran: 0.5 after 4 of 8 steps
            "history": state.history,
            # whether the data is Fashion-MNIST's, byte for byte, whatever its source: the card claims results on
            # the Fashion-MNIST test split only when all 10,000 verified test images were evaluated
            "train_dataset_verified": outputs.is_original_split(
                "train", data.train_images.cpu().numpy(), data.train_labels.cpu().numpy()
            ),
            "eval_dataset_verified": outputs.is_original_split("test", data.eval_images.cpu().numpy(), labels),
            **(timing or {}),
        }
        outputs.write_model_folder(
            config.output_dir,
            accelerator.unwrap_model(model, keep_torch_compile=False),
            processor,
            results,
            config,
            resolved,
            images=data.eval_images.cpu().numpy(),
            logits=logits,
            labels=labels,
            names=data.names,
        )
        accelerator.print(
            f"Test accuracy {results['eval_accuracy']:.2%}, top-5 {results['eval_top5_accuracy']:.2%}, "
            f"macro-F1 {results['eval_macro_f1']:.4f} on {results['eval_samples']:,} images. "
            f"Model, card and plots in {config.output_dir}"
        )
    accelerator.wait_for_everyone()
    if config.push_to_hub and accelerator.is_main_process:
        from ..hub.push import push_model

        url = push_model(config.hub_model_id, config.output_dir, token=config.hub_token, private=config.hub_private)
        accelerator.print(f"Pushed to {url}")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``train.py`` and ``hf-fmnist train``: user errors are one line on stderr, exit status 2."""
    try:
        config = TrainConfig.from_args(argv)
        train(config)
    except HfFmnistError as e:
        print(f"error: {printable(str(e))}", file=sys.stderr)
        return 2
    return 0
