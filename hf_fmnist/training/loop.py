"""The training loop, in the shape of accelerate's ``complete_cv_example.py`` and nanoGPT's ``train.py``.

:func:`train` reads top to bottom: set up a :class:`Run` (settings resolved once, data on the device, model,
optimizer, schedule, resumed state), then per epoch train, evaluate, checkpoint, and finally write the model folder.
The data never leaves the device (:mod:`hf_fmnist.core.loader`); checkpoints are pickle-free folders
(:mod:`hf_fmnist.training.checkpoint`) written under a temp name and renamed, so ``--resume_from_checkpoint latest``
after a crash continues from the newest complete one with the same data order and random state.

Run it as ``accelerate launch train.py ...``, ``python train.py ...``, ``hf-fmnist train ...`` or, for several
processes on a machine without GPUs, ``torchrun --nproc_per_node N train.py ...``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from .. import atomic, ownership
from ..core import metrics
from ..core.config import TrainConfig
from ..core.loader import DeviceLoader, Preprocess
from ..core.models import check_output_apart, load_model
from ..errors import HfFmnistError, error_line, printable
from ..image_limits import check_batches
from ..inference.evaluate import evaluate_logits
from . import checkpoint
from .accelerator import agree, local_main_first, make_accelerator
from .batchnorm import synchronise
from .checkpoint import TrainState, find_checkpoints
from .optim import make_optimizer, make_scheduler
from .preemption import EXIT_PREEMPTED, Preempted, StopSignals
from .settings import Settings, choose_recipe, compile_for, mixed_precision_for, resolve

if TYPE_CHECKING:  # accelerate is imported lazily (start-up time): its types are for the checker only
    from accelerate import Accelerator

PCA_IMAGES = 10_000  # training images whose patches set the PCA stem: the first ones, so every process agrees
LOSS_EVERY = 10  # optimizer steps between reads of the loss (each read waits for the device)


@dataclass(frozen=True)
class Data:
    names: list[str]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    eval_images: torch.Tensor  # the test split (or the dataset's validation split): the final results
    eval_labels: torch.Tensor
    eval_split: str
    held_out: HeldOut | None = None  # --validation_split_percentage: what the epochs are evaluated on instead


@dataclass(frozen=True)
class HeldOut:
    """The share of the training split held out for the epochs' evaluations, and whether the training split it was
    cut from is Fashion-MNIST's own (after the cut, the training images alone are not)."""

    images: torch.Tensor
    labels: torch.Tensor
    percentage: int
    train_split_verified: bool


@dataclass(frozen=True)
class Evaluation:
    """Logits and labels of every evaluation image, in dataset order, and the metrics computed from them."""

    logits: np.ndarray
    labels: np.ndarray
    report: dict


class Trial(Protocol):
    """What a search (``hf-fmnist tune``, :mod:`hf_fmnist.training.tune`) adds to a run of :func:`train`: the data,
    decoded and on the device once per process (the training split and its held-out share only: the test split is
    never read), and a report after each evaluated epoch, which may stop the run (pruning) by raising."""

    def data(self, config: TrainConfig, accelerator) -> Data: ...

    def report(self, run: Run, epoch: int, loss: float, evaluation: Evaluation | None) -> None: ...


@dataclass
class Run:
    """Everything one training run holds, prepared once by :func:`prepare_run`; the loop reads it and updates
    ``state``."""

    config: TrainConfig
    settings: Settings
    accelerator: Accelerator
    data: Data
    model: torch.nn.Module
    processor: object
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_loader: DeviceLoader
    eval_loader: DeviceLoader
    state: TrainState
    start_time: float
    first_step_at: float | None = None  # perf_counter when this process started training
    held_out_loader: DeviceLoader | None = None  # --validation_split_percentage: what the epochs evaluate
    checkpointed: tuple[int, Path] | None = None  # the last checkpoint written: its step and folder


# --- setup -------------------------------------------------------------------------------------------------------


def prepare_run(
    config: TrainConfig, start_time: float, cleanup: contextlib.ExitStack, trial: Trial | None = None
) -> Run:
    """Accelerator, settings, data on the device (a ``trial``'s, when a search runs it), model, loaders, optimizer
    and schedule; resumed if asked. ``cleanup`` releases what the run holds (the output folder's lock, the trackers)
    when training ends, however it ends."""
    from accelerate.utils import DynamoBackend, set_seed

    check_output_dir(config)  # before anything is loaded or written, on every process
    check_output_apart(config.output_dir, "--output_dir", model=config.model_name_or_path, dataset=config.dataset)
    if config.push_to_hub:  # a token or repo id that cannot work is refused now, not after hours of training
        from ..hub.push import check_repo_id, resolve_token

        resolve_token(config.hub_token)
        if config.hub_model_id is not None:
            check_repo_id(config.hub_model_id)
    recipe = choose_recipe(config)
    accelerator = make_accelerator(
        config, mixed_precision=mixed_precision_for(config, recipe), torch_compile=compile_for(config, recipe)
    )
    checkpoint.check_shared_storage(accelerator, config.output_dir)  # several machines: one folder all of them see
    set_seed(config.seed)
    data = trial.data(config, accelerator) if trial is not None else load_data(config, accelerator)
    settings = resolve(
        config,
        recipe,
        accelerator.num_processes,
        num_train_images=len(data.train_images),
        mixed_precision=accelerator.mixed_precision,
        torch_compile=accelerator.state.dynamo_plugin.backend != DynamoBackend.NO,
    )
    with local_main_first(accelerator):  # one download of a Hub checkpoint per machine, not per process
        model, processor = load_model(
            settings.model_name_or_path,
            names=data.names,
            shape=settings.model_config,
            ignore_mismatched_sizes=config.ignore_mismatched_sizes,
            token=config.hub_token,
        )
    preprocess = Preprocess.from_processor(processor, model.config.num_channels)
    check_batches(
        preprocess.channels,
        preprocess.size,
        per_device_train_batch_size=settings.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
    )
    initialise(model, settings, preprocess, data)
    if accelerator.num_processes > 1:  # BatchNorm over the global batch, as one process would see it
        synchronise(model)
    model = model.to(accelerator.device, memory_format=torch.channels_last)
    shard = {"rank": accelerator.process_index, "world": accelerator.num_processes}
    train_loader = DeviceLoader(
        data.train_images,
        data.train_labels,
        batch_size=settings.per_device_train_batch_size,
        preprocess=preprocess,
        seed=config.seed,
        train=True,
        pad_crop=settings.pad_crop,
        hflip=settings.hflip,
        random_erasing=settings.random_erasing,
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
    held_out_loader = None
    if data.held_out is not None:
        held_out_loader = DeviceLoader(
            data.held_out.images,
            data.held_out.labels,
            batch_size=config.per_device_eval_batch_size,
            preprocess=preprocess,
            train=False,
            **shard,
        )
    optimizer = make_optimizer(model, settings.learning_rate, settings.weight_decay)
    # Not prepared: the schedule counts optimizer steps, and a prepared scheduler steps once per process per call.
    scheduler = make_scheduler(
        settings.lr_scheduler_type, optimizer, settings.num_warmup_steps, settings.max_train_steps
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    state = TrainState()
    resume_from = resolve_checkpoint(config)
    checkpoint.check_same_everywhere(accelerator, resume_from)  # every machine resolved it on its own disk
    if resume_from is not None:  # before the output folder is written: a refused checkpoint leaves nothing behind
        check_complete(resume_from)
        state = checkpoint.load(resume_from, accelerator, model, optimizer, scheduler, settings.max_train_steps)
        accelerator.print(checkpoint.resumed_line(resume_from, state, accelerator.num_processes))
        state.resumed(accelerator.num_processes)
    problem = None
    if accelerator.is_main_process:
        try:
            with atomic.writing(config.output_dir):  # a read-only place or a full disk: one line
                Path(config.output_dir).mkdir(parents=True, exist_ok=True)
                # held until train() ends (cleanup): one run at a time writes into the folder
                cleanup.callback(ownership.unlock, ownership.lock(config.output_dir, "--output_dir"))
                ownership.mark(config.output_dir, ownership.TRAINING_OUTPUT)
                if config.with_tracking:  # before any tracker writes: none of its files go through a link
                    atomic.check_no_links_below(config.output_dir, tracker_root(config), "Tracker folder")
                config.save(
                    config.output_dir,
                    **settings.to_dict(),
                    num_processes=accelerator.num_processes,
                    device=str(accelerator.device),
                )
        except HfFmnistError as e:
            problem = str(e)
    agree(accelerator, problem)  # every process stops with the main process's line
    if config.with_tracking:
        # public_dict: TensorBoard's hparams are published with the model, so no path of this machine goes in
        hparams = {**config.public_dict(), **config.public_resolved(settings.to_dict())}
        from .trackers import init_kwargs

        accelerator.init_trackers(
            "hf_fmnist",
            config={k: v for k, v in hparams.items() if isinstance(v, (int, float, str, bool))},
            init_kwargs=init_kwargs(config),
        )
        cleanup.callback(accelerator.end_training)  # a run stopped early (pruned, preempted) closes its runs too
    return Run(
        config, settings, accelerator, data, model, processor, optimizer, scheduler, train_loader, eval_loader,
        state, start_time, held_out_loader=held_out_loader,
    )  # fmt: skip


def tracker_root(config: TrainConfig) -> Path:
    """The one folder every tracker writes its local files under (TensorBoard's ``runs/hf_fmnist/``, and any other
    tracker's below it): checked as a whole by :func:`hf_fmnist.atomic.check_no_links_below` before they start."""
    from .accelerator import TRACKER_DIR

    return Path(config.output_dir) / TRACKER_DIR


def load_data(config: TrainConfig, accelerator, *, test: bool = True) -> Data:
    """Both splits as uint8/int64 tensors on ``accelerator.device``; built or downloaded once per machine, by its
    first process, into caches that only that machine reads.

    ``test=False`` (a search): only the training split is read, and its held-out share
    (``--validation_split_percentage``, required) is all that is evaluated; the dataset needs no test split."""
    from ..data.tensors import eval_split_of, find_columns, load_arrays, local_root, open_dataset

    if not test and not config.validation_split_percentage:
        raise HfFmnistError("A search evaluates a held-out share only: pass --validation_split_percentage.")
    with local_main_first(accelerator):
        dataset = open_dataset(config.dataset, data_dir=config.data_dir)
        eval_split = eval_split_of(dataset) if test else "train"
        if "train" not in dataset or eval_split is None:
            raise HfFmnistError(
                f"Dataset {config.dataset!r} has splits {', '.join(dataset)}; training needs 'train' and 'test' "
                f"(or 'validation')."
            )
        root = local_root(config.dataset)
        arrays = {split: load_arrays(split, dataset, root=root) for split in {"train", eval_split}}
    features = dataset["train"].features
    names = list(features[find_columns(features)[1]].names)
    (tx, ty), (ex, ey) = arrays["train"], arrays[eval_split]
    tx, ty = tx[: config.max_train_samples], ty[: config.max_train_samples]
    ex, ey = ex[: config.max_eval_samples], ey[: config.max_eval_samples]
    device = accelerator.device
    held_out = None
    if config.validation_split_percentage:
        from .outputs import is_original_split

        train, kept = stratified_split(ty, config.validation_split_percentage, config.seed)
        held_out = HeldOut(
            images=torch.tensor(tx[kept], device=device),
            labels=torch.tensor(ty[kept], device=device),
            percentage=config.validation_split_percentage,
            train_split_verified=accelerator.is_main_process and is_original_split("train", tx, ty),
        )
        tx, ty = tx[train], ty[train]
    if not test:  # the held-out share stands in for the evaluation split: nothing else is on the device
        assert held_out is not None
        return Data(names, torch.tensor(tx, device=device), torch.tensor(ty, device=device), held_out.images,
                    held_out.labels, "validation", held_out)  # fmt: skip
    return Data(
        names=names,
        train_images=torch.tensor(tx, device=device),
        train_labels=torch.tensor(ty, device=device),
        eval_images=torch.tensor(ex, device=device),
        eval_labels=torch.tensor(ey, device=device),
        eval_split=eval_split,
        held_out=held_out,
    )


def stratified_split(labels: np.ndarray, percentage: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices that stay for training and indices held out: ``percentage`` % of each class (rounded), drawn with
    ``seed``, each list in dataset order. Every process draws the same.

    >>> train, held_out = stratified_split(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1]), 50, seed=0)
    >>> len(held_out), sorted(np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])[held_out].tolist())
    (5, [0, 0, 1, 1, 1])
    """
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        held_out.append(members[: round(len(members) * percentage / 100)])
    held = np.sort(np.concatenate(held_out)) if held_out else np.array([], dtype=np.int64)
    return np.setdiff1d(np.arange(len(labels)), held), held


def initialise(model, settings: Settings, preprocess: Preprocess, data: Data) -> None:
    """The resolved initialisation tricks; :func:`resolve` turns them off for a checkpoint being fine-tuned."""
    from ..core.models import pca_init_stem, zero_init_residual

    if settings.zero_init_residual:
        zero_init_residual(model)
    if settings.pca_stem:
        pca_init_stem(model, preprocess(data.train_images[:PCA_IMAGES].cpu()))


# --- the loop ----------------------------------------------------------------------------------------------------


def train(config: TrainConfig, trial: Trial | None = None) -> dict | None:
    """Train, evaluate, and write the model folder; returns the final results (also in ``all_results.json``) on the
    main process, None on the others. Raises :class:`Preempted` after a stop signal, once a checkpoint is written.

    Run by a search (``trial``): the trial's data, a report after every evaluated epoch, and at the end the
    held-out share's results only (:func:`trial_results`): no test split, no model folder."""
    with StopSignals() as signals, contextlib.ExitStack() as cleanup:
        run = prepare_run(config, time.perf_counter(), cleanup, trial)
        settings, state = run.settings, run.state
        run.accelerator.print(describe(run))
        progress = Progress(run.accelerator, settings.max_train_steps, state.step)
        run.first_step_at = time.perf_counter()
        evaluation = None
        cleanup.callback(progress.close)  # also when a refusal (a diverged loss) ends the loop: no bar after it
        while state.step < settings.max_train_steps:
            epoch = state.step // settings.steps_per_epoch
            loss, due, stop = train_epoch(run, epoch, progress, signals)
            if stop is None:  # the epoch ended: evaluate, record, checkpoint, and only then heed a signal
                evaluation = (
                    evaluate(run, run.held_out_loader or run.eval_loader) if settings.evaluates_after(epoch) else None
                )
                progress.bar.clear()
                end_epoch(run, epoch, loss, evaluation)
                if trial is not None:
                    trial.report(run, epoch, loss, evaluation)
                for name in due + ([f"epoch_{epoch + 1}"] if config.checkpoint_each_epoch else []):
                    save_checkpoint(run, name)
                if state.step < settings.max_train_steps:  # at the very end, finishing beats a checkpoint
                    stop = signals.agreed(run.accelerator)
            if stop is not None:
                progress.close()
                raise Preempted(stop, state.step, stop_checkpoint(run, stop))
        progress.close()
        results = finish(run, evaluation) if trial is None else trial_results(run, evaluation)
    return results


def train_epoch(run: Run, epoch: int, progress: Progress, signals: StopSignals) -> tuple[float, list[str], str | None]:
    """Optimizer steps until the epoch (or training) ends, or a stop signal is agreed, from wherever ``run.state``
    stands.

    Returns the mean training loss of the steps run (after a resume: of the rest of the epoch), the step
    checkpoints due at the epoch's end (written after its evaluation so that their history includes this epoch),
    and the signal training stopped on mid-epoch, if any. The loss stays on the device and is read only every
    :data:`LOSS_EVERY` steps and at the end: each read waits for the device to finish its queued work.
    """
    config, settings, accelerator, state = run.config, run.settings, run.accelerator, run.state
    accum = config.gradient_accumulation_steps
    run.model.train()
    start, due, steps, stop = time.perf_counter(), [], 0, None
    loss_sum = torch.zeros((), device=accelerator.device)
    for x, y in run.train_loader.epoch(epoch, start=(state.step % settings.steps_per_epoch) * accum):
        with accelerator.accumulate(run.model):
            logits = run.model(pixel_values=x).logits
            loss = F.cross_entropy(logits.float(), y, label_smoothing=settings.label_smoothing)
            accelerator.backward(loss)
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
        if not accelerator.sync_gradients:
            continue
        run.scheduler.step()
        state.step += 1
        state.images_seen += settings.train_batch_size
        loss_sum += loss.detach()
        steps += 1
        progress.update(settings.train_batch_size)
        if state.step % LOSS_EVERY == 0:
            check_loss(run, loss)
            lr = float(run.scheduler.get_last_lr()[0])  # a tensor only with a tensor lr
            progress.show(loss.item(), lr)
            if config.with_tracking:
                accelerator.log({"train/loss": loss.item(), "train/lr": lr}, step=state.step)
        epoch_ends = state.step % settings.steps_per_epoch == 0 or state.step >= settings.max_train_steps
        if config.checkpoint_every and state.step % config.checkpoint_every == 0:
            if epoch_ends:
                due.append(f"step_{state.step}")
            else:
                state.train_seconds += time.perf_counter() - start
                start = time.perf_counter()
                check_loss(run, loss_sum)
                save_checkpoint(run, f"step_{state.step}")
        if epoch_ends:
            break
        stop = signals.agreed(accelerator, state.step)
        if stop is not None:
            break
    state.train_seconds += time.perf_counter() - start
    check_loss(run, loss_sum)  # before the epoch is evaluated, recorded or checkpointed
    return (loss_sum.item() / steps if steps else float("nan")), due, stop


def check_loss(run: Run, loss: torch.Tensor) -> None:
    """Stop a run whose training loss is no longer finite (``--learning_rate`` far too high: every later step is
    NaN), with one line, before anything is checkpointed or written: every process calls this at the same steps, and
    the processes' losses are summed (one collective), so that all of them stop together."""
    total = loss.detach().float().reshape(1)
    if run.accelerator.num_processes > 1:
        total = run.accelerator.reduce(total, "sum")
    if not bool(torch.isfinite(total).all()):
        raise diverged(run, f"the training loss is {float(total[0])} at step {run.state.step}")


class Diverged(HfFmnistError):
    """A run whose loss or weights are no longer finite: one line for train.py (exit 2), a failed trial for tune."""


def diverged(run: Run, what: str) -> Diverged:
    """The one line of a run that diverged: no model folder is written, the last good checkpoint is kept."""
    kept = (
        f"the last good checkpoint, {printable(str(run.checkpointed[1]))}, is kept"
        if run.checkpointed is not None
        else "checkpoints from before this run are kept as they were"
    )
    return Diverged(
        f"Training diverged: {what}; stopped without writing the model ({kept}). Train again with a lower "
        f"--learning_rate."
    )


def evaluate(run: Run, loader: DeviceLoader) -> Evaluation:
    """Every image of ``loader`` once, whatever the process count; the metrics every epoch line and the final results
    report (on every process: each holds all the gathered logits)."""
    logits, labels = evaluate_logits(run.model, loader, run.accelerator)
    return Evaluation(logits, labels, metrics.classification_report(logits, labels, run.data.names))


def end_epoch(run: Run, epoch: int, loss: float, evaluation: Evaluation | None) -> None:
    """Record the epoch in the history, print its line, and log it."""
    report = evaluation.report if evaluation else None
    entry = {"epoch": epoch + 1, "step": run.state.step, "train_loss": loss}
    if report:
        prefix = "validation" if run.held_out_loader else "eval"
        entry.update({f"{prefix}_accuracy": report["accuracy"], f"{prefix}_top5_accuracy": report["top5_accuracy"]})
    run.state.history.append(entry)
    run.accelerator.print(epoch_line(run, epoch, loss, report))
    if run.config.with_tracking and report:
        run.accelerator.log(
            {"eval/accuracy": report["accuracy"], "eval/top5_accuracy": report["top5_accuracy"]}, step=run.state.step
        )


def epoch_line(run: Run, epoch: int, loss: float, report: dict | None) -> str:
    """The one line each epoch prints (benchmarks/time_to_accuracy.py reads the evaluated ones)."""
    now = time.perf_counter()
    head = f"epoch {epoch + 1}/{run.settings.num_train_epochs}  step {run.state.step}  loss {loss:.4f}  "
    split = "validation" if run.held_out_loader else "test"
    if report is None:
        return (
            f"{head}({split} split evaluated after the last {run.settings.eval_last_epochs} epochs only)  "
            f"[{now - run.start_time:.0f} s]"
        )
    return (
        f"{head}{split} accuracy {report['accuracy']:.2%} ({report['samples']:,} images)  "
        f"[{now - run.start_time:.0f} s; {now - (run.first_step_at or run.start_time):.2f} s from the first step]"
    )


def describe(run: Run) -> str:
    """The line that opens training: what is trained, how, on what, for how long."""
    s, accelerator = run.settings, run.accelerator
    return (
        f"Training {printable(str(s.model_name_or_path))} ({sum(p.numel() for p in run.model.parameters()):,} "
        f"parameters, recipe {s.recipe}, {s.mixed_precision} mixed precision) on {len(run.data.train_images):,} "
        f"images for {s.max_train_steps} steps ({s.num_train_epochs} epochs of {s.steps_per_epoch}), "
        f"{accelerator.num_processes} process(es) on {accelerator.device}"
    )


# --- checkpoints -------------------------------------------------------------------------------------------------


def resolve_checkpoint(config: TrainConfig) -> Path | None:
    if config.resume_from_checkpoint is None:
        return None
    if config.resume_from_checkpoint == "latest":
        found = find_checkpoints(config.output_dir)
        return found[-1] if found else None  # nothing saved yet: start from scratch, as after an early crash
    return Path(config.resume_from_checkpoint)


def check_complete(path: Path) -> None:
    """Refuse a ``--resume_from_checkpoint`` folder that holds no checkpoint (after the processes agreed on it, so
    that all of them refuse it together)."""
    if not path.is_dir() or not (path / checkpoint.STATE_FILE).exists():
        raise HfFmnistError(
            f"--resume_from_checkpoint {path} is not a complete checkpoint (no {checkpoint.STATE_FILE}); pass a "
            f"step_N or epoch_N folder, or 'latest'."
        )


def save_checkpoint(run: Run, name: str) -> Path:
    check_weights(run)  # a checkpoint of NaN weights would become the "latest" one to resume from
    path = checkpoint.save(run.accelerator, run.model, run.optimizer, run.state, run.config.output_dir, name)
    run.checkpointed = (run.state.step, path)
    return path


def check_weights(run: Run) -> None:
    """Refuse to keep weights that are no longer finite (the loss of the step that broke them was still finite);
    every process holds the same weights, so all of them stop together."""
    from ..core.finite import check_finite_weights

    try:
        check_finite_weights(run.accelerator.unwrap_model(run.model, keep_torch_compile=False), "the model")
    except HfFmnistError:
        raise diverged(run, f"the weights hold NaN or infinite values after step {run.state.step}") from None


def stop_checkpoint(run: Run, signal_name: str) -> Path:
    """The checkpoint a stopped run resumes from, saying which signal stopped it: ``step_N``, or the checkpoint just
    written at this step (rewritten with the signal)."""
    run.state.stopped_by = signal_name
    name = f"step_{run.state.step}"
    if run.checkpointed is not None and run.checkpointed[0] == run.state.step:
        name = run.checkpointed[1].name
    return save_checkpoint(run, name)


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


# --- finish ------------------------------------------------------------------------------------------------------


def finish(run: Run, evaluation: Evaluation | None = None) -> dict | None:
    """Final results on the test split: the last epoch's evaluation, or one made now (after a held-out validation
    split, or when training ended without one, e.g. resumed at its end); model, processor, results, plots and card
    written by the main process. Returns the results on the main process, None on the others."""
    from . import outputs

    config, accelerator, data, state = run.config, run.accelerator, run.data, run.state
    check_weights(run)  # no model folder, card or push for a run that diverged
    assert_same_weights(accelerator, run.model)
    validation = evaluation if run.held_out_loader else None
    if evaluation is None or validation is not None:
        evaluation = evaluate(run, run.eval_loader)
    results = None
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(run.model, keep_torch_compile=False)
        results = {
            **{f"eval_{k}": v for k, v in evaluation.report.items()},
            **{
                f"eval_{k}": v
                for k, v in metrics.calibration_and_mistakes(evaluation.logits, evaluation.labels, data.names).items()
            },
            "eval_split": data.eval_split,
            "num_processes": accelerator.num_processes,
            "train_runtime": round(state.train_seconds, 3),
            "train_samples": len(data.train_images),
            "train_samples_per_second": round(state.images_seen / max(state.train_seconds, 1e-9), 1),
            "train_steps": state.step,
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "steps_per_epoch": run.settings.steps_per_epoch,
            "epochs": round(state.step / run.settings.steps_per_epoch, 2),  # what ran: 0.5 after 4 of 8 steps
            "history": state.history,
            "resumes": state.resumes,  # where the run was stopped and resumed, if it was
            # whether the data is Fashion-MNIST's, byte for byte, whatever its source: the card claims results on
            # the Fashion-MNIST test split only when all 10,000 verified test images were evaluated
            "train_dataset_verified": outputs.is_original_split(
                "train", data.train_images.cpu().numpy(), data.train_labels.cpu().numpy()
            ),
            "eval_dataset_verified": outputs.is_original_split(
                "test", data.eval_images.cpu().numpy(), evaluation.labels
            ),
            **held_out_results(data.held_out, validation),
        }
        outputs.write_model_folder(
            config.output_dir,
            model,
            run.processor,
            results,
            config,
            run.settings.to_dict(),
            images=data.eval_images.cpu().numpy(),
            logits=evaluation.logits,
            labels=evaluation.labels,
            names=data.names,
        )
        accelerator.print(
            f"Test accuracy {results['eval_accuracy']:.2%}, top-5 {results['eval_top5_accuracy']:.2%}, "
            f"macro-F1 {results['eval_macro_f1']:.4f} on {results['eval_samples']:,} images. "
            f"Model, card and plots in {printable(str(config.output_dir))}"
        )
    accelerator.wait_for_everyone()
    if config.push_to_hub and accelerator.is_main_process:
        from ..hub.push import push_model

        url = push_model(config.hub_model_id, config.output_dir, token=config.hub_token, private=config.hub_private)
        accelerator.print(f"Pushed to {printable(str(url))}")
    return results


def trial_results(run: Run, evaluation: Evaluation | None) -> dict:
    """A search's trial ends here: the last epoch's held-out results and the history, nothing written."""
    state = run.state
    return {
        "train_samples": len(run.data.train_images),
        "train_steps": state.step,
        "train_runtime": round(state.train_seconds, 3),
        "history": state.history,
        **held_out_results(run.data.held_out, evaluation),
    }


def held_out_results(held_out: HeldOut | None, validation: Evaluation | None) -> dict:
    """What ``all_results.json`` says of a held-out validation split: its share and size, and the last epoch's
    accuracy on it (the eval_* fields stay the test split's, which the model-index reports)."""
    if held_out is None:
        return {}
    out = {
        "validation_split_percentage": held_out.percentage,
        "validation_samples": len(held_out.labels),
        "train_dataset_verified": held_out.train_split_verified,  # of the split before the hold-out
    }
    if validation is not None:
        out.update(
            validation_accuracy=validation.report["accuracy"],
            validation_top5_accuracy=validation.report["top5_accuracy"],
        )
    return out


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
        self.since, self.images = time.perf_counter(), 0

    def update(self, images: int) -> None:
        self.images += images
        self.bar.update(1)

    def show(self, loss: float, lr: float) -> None:
        now = time.perf_counter()
        rate = self.images / max(now - self.since, 1e-9)
        self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", img_s=f"{rate:,.0f}", refresh=False)
        self.since, self.images = now, 0

    def close(self) -> None:
        self.bar.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``train.py`` and ``hf-fmnist train``: user errors are one line on stderr, exit status 2; a run
    stopped by SIGTERM/SIGUSR1 says where its checkpoint is, exit status 75 (requeue)."""
    try:
        config = TrainConfig.from_args(argv)
        train(config)
    except HfFmnistError as e:
        if os.environ.get("LOCAL_RANK", "0") == "0":  # every process refuses; one line per machine says why
            print(error_line(e), file=sys.stderr)
        return 2
    except Preempted as e:
        if int(os.environ.get("RANK", "0")) == 0:  # one line for the run, not one per process
            print(error_line(e, prefix=""), file=sys.stderr)
        return EXIT_PREEMPTED
    return 0
