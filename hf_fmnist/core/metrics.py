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


# --- calibration and the mistakes that matter (new functions; classification_report stays as it is) --------------

ECE_BINS = 15  # equal-width confidence bins, as in Guo et al. 2017 ("On Calibration of Modern Neural Networks")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise probabilities in float64, stable for large logits."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def per_image_loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy of each row, ``-log p(label)``, in float64 (log-sum-exp, so a confident mistake is finite)."""
    z = np.asarray(logits, dtype=np.float64)
    top = z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(axis=1)) + top[:, 0]
    return log_norm - z[np.arange(len(z)), np.asarray(labels, dtype=np.int64)]


def calibration_bins(logits: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Per equal-width confidence bin (``(k/bins, (k+1)/bins]``, the first one closed at 0): images, correct ones,
    and the sum of their confidences (the top softmax probability). Counts, so the ECE is exact arithmetic on them.

    >>> b = calibration_bins(np.log(np.array([[0.9, 0.1], [0.6, 0.4]])), np.array([0, 1]), bins=10)
    >>> b["count"][8], b["correct"][8], b["count"][5], b["correct"][5]
    (1, 1, 1, 0)
    """
    probs = softmax(logits)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    return {
        "edges": [k / bins for k in range(bins + 1)],
        "count": np.bincount(which, minlength=bins).tolist(),
        "correct": np.bincount(which, weights=correct, minlength=bins).astype(np.int64).tolist(),
        "confidence_sum": np.bincount(which, weights=confidence, minlength=bins).tolist(),
    }


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: over ``bins`` equal-width confidence bins, the image-weighted mean of |accuracy - mean confidence|,
    i.e. ``sum_b |correct_b - confidence_sum_b| / N``."""
    b = calibration_bins(logits, labels, bins)
    n = sum(b["count"])
    gaps = (abs(c - s) for c, s in zip(b["correct"], b["confidence_sum"]))
    return float(sum(gaps) / n) if n else 0.0


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of the labels under the softmax of the logits (nats per image)."""
    return float(per_image_loss(logits, labels).mean()) if len(labels) else 0.0


def calibration_report(logits: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """ECE (``bins`` equal-width bins), NLL and the bins themselves, for results files and the reliability diagram."""
    return {
        "ece": expected_calibration_error(logits, labels, bins),
        "ece_bins": bins,
        "nll": negative_log_likelihood(logits, labels),
        "calibration_bins": calibration_bins(logits, labels, bins),
    }


def most_confused_pairs(cm, names: Sequence[str], top: int = 10) -> list[dict]:
    """The largest off-diagonal cells of a confusion matrix (``cm[true, predicted]``), largest first (ties: by true
    then predicted class index), each with the true class's image count.

    >>> most_confused_pairs([[5, 1], [3, 2]], ["a", "b"])
    [{'true': 'b', 'predicted': 'a', 'count': 3, 'of': 5}, {'true': 'a', 'predicted': 'b', 'count': 1, 'of': 6}]
    """
    cm = np.asarray(cm)
    cells = [(-int(cm[t, p]), t, p) for t in range(len(cm)) for p in range(len(cm)) if t != p and cm[t, p] > 0]
    return [
        {"true": names[t], "predicted": names[p], "count": -negative, "of": int(cm[t].sum())}
        for negative, t, p in sorted(cells)[:top]
    ]


def top_losses(logits: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` wrong predictions with the highest loss (most confident mistakes first; ties by
    index)."""
    loss = per_image_loss(logits, labels)
    wrong = np.flatnonzero(np.asarray(logits).argmax(axis=1) != np.asarray(labels))
    order = np.lexsort((wrong, -loss[wrong]))
    return wrong[order][:count]


def calibration_and_mistakes(logits: np.ndarray, labels: np.ndarray, names: Sequence[str], top: int = 5) -> dict:
    """What results files add to :func:`classification_report`: ECE, NLL, the bins, and the ``top`` most confused
    class pairs."""
    logits, labels = np.asarray(logits), np.asarray(labels, dtype=np.int64)
    cm = confusion_matrix(labels, logits.argmax(axis=1), len(names))
    return {**calibration_report(logits, labels), "confused_pairs": most_confused_pairs(cm, names, top)}
