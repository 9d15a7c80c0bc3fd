"""Likely label errors: out-of-sample probabilities from k-fold cross-validation, ranked by cleanlab.

Every image of the audited split is predicted by a model that never trained on it: the split is cut into ``k``
stratified folds (seeded), and for each fold the training script's own :func:`hf_fmnist.training.loop.train` trains
a named recipe on the other folds (no second training loop). Each fold's out-of-fold probabilities are written
atomically as soon as the fold ends, so a stopped search resumes at the first missing fold (and a fold stopped
mid-way resumes from its last epoch checkpoint, as any training run does). ``cleanlab.filter.find_label_issues``
then ranks the suspects by self-confidence.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import atomic, ownership
from ..errors import HfFmnistError

STATE_FILE = "search.json"  # what the stored folds were computed for: a resume must ask for the same


@dataclass(frozen=True)
class SearchPlan:
    """What a k-fold label search is: the folds, the recipe and what else shapes the models."""

    k: int
    recipe: str
    seed: int
    num_train_epochs: int | None = None  # None: the recipe's
    per_device_train_batch_size: int | None = None
    model_name_or_path: str | None = None  # None: the recipe's preset

    def describe(self) -> str:
        parts = [f"{self.k}-fold cross-validation, recipe {self.recipe}"]
        if self.model_name_or_path:
            parts.append(f"model {self.model_name_or_path}")
        if self.num_train_epochs:
            parts.append(f"{self.num_train_epochs} epoch(s)")
        if self.per_device_train_batch_size:
            parts.append(f"batch {self.per_device_train_batch_size}")
        return ", ".join(parts) + f", seed {self.seed}"


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of each image: each class's images, in a seeded random order, dealt to the folds in turn.

    >>> stratified_folds(np.array([0, 0, 0, 1, 1, 1]), 3, seed=0).tolist().count(2)
    2
    """
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        folds[members] = np.arange(len(members)) % k
    return folds


def out_of_fold_probabilities(
    rows,
    labels: np.ndarray,
    plan: SearchPlan,
    work: Path,
    *,
    data_dir: str | None = None,
) -> tuple[np.ndarray, float]:
    """``(probabilities, seconds)``: each row's softmax probabilities from the fold model that did not see it, and the
    training and prediction time summed over the folds (including folds stored by an earlier, stopped run).

    ``rows``: the audited split as a ``datasets.Dataset``; ``labels`` its labels; ``work``: the search's folder.
    """
    from tqdm.auto import tqdm

    if plan.k < 2 or plan.k > len(labels):
        raise HfFmnistError(f"--folds {plan.k}: needs at least 2 folds and no more than the {len(labels):,} images.")
    folds = stratified_folds(labels, plan.k, plan.seed)
    check_state(work, plan, labels)
    probabilities = np.full((len(labels), _num_classes(rows)), np.nan)
    seconds = 0.0
    with tqdm(total=plan.k, unit="fold", desc="label search (k-fold)") as bar:
        for fold in range(plan.k):
            stored = work / f"fold_{fold}.npz"
            if not stored.exists():
                _run_fold(rows, folds, fold, plan, work, stored)
            held = np.flatnonzero(folds == fold)
            with np.load(stored) as npz:
                if not np.array_equal(npz["indices"], held):
                    raise HfFmnistError(f"{stored}: holds another fold's images; remove {work} to search afresh.")
                probabilities[held] = npz["probabilities"]
                seconds += float(npz["seconds"])
            bar.update(1)
    return probabilities, seconds


def _run_fold(rows, folds: np.ndarray, fold: int, plan: SearchPlan, work: Path, stored: Path) -> None:
    """Train on the other folds through ``train()``, predict this fold, store the probabilities atomically."""
    from ..core.config import TrainConfig
    from ..core.metrics import softmax
    from .loop import train

    start = time.perf_counter()
    held = np.flatnonzero(folds == fold)
    data = work / f".fold_{fold}_data"
    out = work / f".fold_{fold}_model"
    if not (data / "data").is_dir():
        _write_fold_dataset(rows, np.flatnonzero(folds != fold), held, data)
    config = TrainConfig(
        output_dir=str(out),
        dataset=str(data),
        recipe=plan.recipe,
        model_name_or_path=plan.model_name_or_path,
        num_train_epochs=plan.num_train_epochs,
        per_device_train_batch_size=plan.per_device_train_batch_size,
        seed=plan.seed + fold,
        checkpointing_steps="epoch",
        resume_from_checkpoint="latest",  # a fold stopped mid-way goes on from its last epoch
    )
    train(config)
    logits = _predict(out, data)
    probabilities = softmax(logits)
    seconds = time.perf_counter() - start

    def save(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, indices=held, probabilities=probabilities, seconds=np.float64(seconds))

    atomic.write_with(stored, save)
    for folder in (out, data):  # ours: written above; only the stored probabilities are kept
        shutil.rmtree(folder, ignore_errors=True)


def _write_fold_dataset(rows, train_rows: np.ndarray, held: np.ndarray, folder: Path) -> None:
    """The fold as a dataset folder ``train()`` reads: ``train`` = the other folds, ``test`` = this fold (the images'
    bytes copied as they are, no re-encoding)."""
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "data").mkdir(parents=True)
    rows.select(train_rows).to_parquet(str(staging / "data" / "train-00000-of-00001.parquet"))
    rows.select(held).to_parquet(str(staging / "data" / "test-00000-of-00001.parquet"))
    staging.rename(folder)


def _predict(model_dir: Path, data: Path) -> np.ndarray:
    """Logits of the fold's images (its ``test`` split), in order, from the fold's model folder."""
    import torch

    from ..core.loader import DeviceLoader, Preprocess
    from ..data.tensors import load_arrays, open_dataset
    from ..inference.evaluate import evaluate_logits, load_for_inference

    model, processor, _ = load_for_inference(str(model_dir))
    images, labels = load_arrays("test", open_dataset(str(data)), root=data)
    device = next(model.parameters()).device
    loader = DeviceLoader(
        torch.tensor(images, device=device),
        torch.tensor(labels, device=device),
        batch_size=500,
        train=False,
        preprocess=Preprocess.from_processor(processor, model.config.num_channels),
    )
    return evaluate_logits(model, loader)[0]


def check_state(work: Path, plan: SearchPlan, labels: np.ndarray) -> None:
    """Start a search folder, or check that the stored folds were computed for this plan and these labels."""
    state = {
        "plan": plan.__dict__,
        "labels_sha256": hashlib.sha256(np.asarray(labels, dtype=np.int64).tobytes()).hexdigest(),
    }
    path = work / STATE_FILE
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise HfFmnistError(
                f"{path}: cannot read it ({type(e).__name__}); remove {work} to search afresh."
            ) from None
        if stored != state:
            raise HfFmnistError(
                f"{work} holds folds of another label search ({STATE_FILE} differs: another k, recipe, seed or "
                f"dataset); pass the same settings to resume, or remove {work} to search afresh."
            )
        return
    ownership.check_is_folder(work, "the label search folder")
    if work.exists() and ownership.entries(work):
        raise HfFmnistError(f"{work} holds files the audit did not write; pass a new --output-dir.")
    with atomic.writing(work):
        work.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, json.dumps(state, indent=2) + "\n")


def _num_classes(rows) -> int:
    from ..data.tensors import find_columns

    return rows.features[find_columns(rows.features)[1]].num_classes


FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")


def label_issues(labels: np.ndarray, probabilities: np.ndarray, filter_by: str = FILTERS[0]) -> np.ndarray:
    """Indices of likely label errors, most likely first: cleanlab's ``find_label_issues`` with ``filter_by`` (its
    default, confident learning's noise-rate pruning, unless told), ranked by self-confidence."""
    from ..extras import require

    require("cleanlab", extra="audit", command="audit")
    from cleanlab.filter import find_label_issues

    return np.asarray(
        find_label_issues(
            labels, probabilities, filter_by=filter_by, return_indices_ranked_by="self_confidence", n_jobs=1
        ),
        dtype=np.int64,
    )
