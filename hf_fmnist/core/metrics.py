"""Classification metrics as pure functions of logits and labels (numpy in, plain Python out).

The ``evaluate`` module in ``metric_modules/`` wraps these, so ``evaluate.load`` works offline from the package;
:func:`load_metric` loads it by path.

>>> import numpy as np
>>> report = classification_report(np.eye(3)[[0, 1, 2, 2]], np.array([0, 1, 2, 1]), ["a", "b", "c"])
>>> report["accuracy"], report["confusion_matrix"][1]
(0.75, [0, 1, 1])
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

import numpy as np

METRIC_MODULE = "fmnist_classification.py"


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``cm[true, predicted]`` counts."""
    return np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def top_k_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose label is among the ``k`` highest logits (ties broken by index)."""
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean()) if len(labels) else 0.0


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """Per-class accuracy: the share of each class's images predicted as that class (NaN for absent classes)."""
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def macro_f1(cm: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes that occur (in labels or predictions)."""
    tp = np.diag(cm).astype(float)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    present = (predicted + actual) > 0
    f1 = np.divide(2 * tp, predicted + actual, out=np.zeros_like(tp), where=present)
    return float(f1[present].mean()) if present.any() else 0.0


def classification_report(logits: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict:
    """Everything ``all_results.json`` reports about a split: accuracy, top-5, macro-F1, per class, confusion."""
    logits, labels = np.asarray(logits), np.asarray(labels, dtype=np.int64)
    predictions = logits.argmax(axis=1)
    cm = confusion_matrix(labels, predictions, len(names))
    recall = per_class_recall(cm)
    return {
        "accuracy": float((predictions == labels).mean()) if len(labels) else 0.0,
        "top5_accuracy": top_k_accuracy(logits, labels, 5),
        "macro_f1": macro_f1(cm),
        "samples": int(len(labels)),
        "per_class_accuracy": {name: (None if np.isnan(r) else float(r)) for name, r in zip(names, recall)},
        "confusion_matrix": cm.tolist(),
    }


def metric_module_path() -> str:
    """Filesystem path of the packaged ``evaluate`` metric module."""
    return str(resources.files("hf_fmnist.metric_modules").joinpath(METRIC_MODULE))


def load_metric(names: Sequence[str]):
    """The packaged metric as an ``evaluate.EvaluationModule``; no Hub access needed."""
    import evaluate

    return evaluate.load(metric_module_path(), config_name="default", class_names=list(names))


def compute(logits: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict:
    """:func:`classification_report` computed through ``evaluate`` (the packaged module)."""
    metric = load_metric(names)
    return metric.compute(predictions=np.asarray(logits, dtype=np.float32), references=np.asarray(labels))
