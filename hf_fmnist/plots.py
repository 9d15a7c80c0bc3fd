"""PNG figures: sample grids (with class names), the top losses, learning curves, confusion matrices, reliability
diagrams.

Matplotlib, headless.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def image_grid(
    images: np.ndarray,
    titles: Sequence[str],
    path: str | os.PathLike,
    *,
    ncols: int = 10,
    title_colors: Sequence[str] | None = None,
    suptitle: str | None = None,
) -> Path:
    """Save ``images`` (``(N, H, W)`` uint8) in a grid, each under its title; written atomically."""
    plt = _pyplot()
    n = len(images)
    nrows = max(1, -(-n // ncols))
    row_height = 1.45 + 0.15 * max((t.count("\n") for t in titles), default=0)  # two-line titles need room
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, row_height * nrows + (0.4 if suptitle else 0)))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            color = title_colors[i] if title_colors is not None else "black"
            ax.set_title(titles[i], fontsize=7, color=color)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def class_samples(images: np.ndarray, labels: np.ndarray, names: Sequence[str], per_class: int = 4):
    """The first ``per_class`` images of each class, laid out class by class (column-major for a 10-wide grid)."""
    picks = [np.flatnonzero(labels == c)[:per_class] for c in range(len(names))]
    order = [picks[c][r] for r in range(per_class) for c in range(len(names)) if r < len(picks[c])]
    return images[order], [names[labels[i]] for i in order]


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG, atomically and never through a link (:mod:`hf_fmnist.atomic`), then close it."""
    from .atomic import write_bytes

    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    return write_bytes(path, buffer.getvalue())


def learning_curves(history: Sequence[dict], path: str | os.PathLike) -> Path:
    """Training loss of every epoch, and the accuracy of the epochs that were evaluated (on the test split, or on the
    validation split held out of the training split), on whole-number epochs."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    split = "validation" if any("validation_accuracy" in h for h in history) else "test"  # a held-out share
    key = "validation_accuracy" if split == "validation" else "eval_accuracy"
    evaluated = [h for h in history if key in h]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax1.plot([h["epoch"] for h in evaluated], [100 * h[key] for h in evaluated], marker="o")
    ax1.set(xlabel="epoch", ylabel=f"{split} accuracy (%)", title=f"{split.capitalize()} accuracy")
    ax2.plot([h["epoch"] for h in history], [h["train_loss"] for h in history], marker="o", color="tab:orange")
    ax2.set(xlabel="epoch", ylabel="mean loss over the epoch", title="Training loss")
    last = max((h["epoch"] for h in history), default=1)
    for ax in (ax1, ax2):
        ax.set_xlim(0.5, last + 0.5)  # every epoch of the run, also where only the last ones were evaluated
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def confusion_matrix(cm: np.ndarray, names: Sequence[str], path: str | os.PathLike) -> Path:
    """Counts, rows = true class, columns = predicted class.

    Errors are shaded red and correct predictions (the diagonal) blue, each on its own scale, so the errors stand
    out however large the diagonal is. Each count is printed white on dark cells and black on light ones.
    """
    plt = _pyplot()
    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(7, 6))
    diagonal = np.eye(len(cm), dtype=bool)
    colors = np.zeros(cm.shape + (4,))
    for mask, cmap_name in ((~diagonal, "Reds"), (diagonal, "Blues")):
        values = cm[mask].astype(float)
        top = values.max() if values.size and values.max() > 0 else 1.0
        colors[mask] = plt.get_cmap(cmap_name)(0.85 * values / top)  # 0.85: the darkest shade is not black
    ax.imshow(colors, interpolation="nearest")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j,
                i,
                f"{cm[i, j]}",
                ha="center",
                va="center",
                fontsize=7,
                color=text_color(colors[i, j]),
                fontweight="bold" if i == j else "normal",
            )
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (test)")
    fig.tight_layout()
    return save_figure(fig, path)


def text_color(rgba) -> str:
    """``"white"`` on a dark background colour, ``"black"`` on a light one (by relative luminance, WCAG)."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(float(c)) for c in rgba[:3])
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    # black and white contrast equally at luminance 0.179: above it black reads better
    return "black" if luminance > 0.179 else "white"


def top_losses_grid(
    images: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    picks: np.ndarray,
    names: Sequence[str],
    path: str | os.PathLike,
    *,
    split: str = "test",
) -> Path:
    """The mistakes ``picks`` (the top losses, the least probable true label first: ``core.metrics.top_losses``), each
    titled "true → predicted" and the confidence of the prediction (its softmax probability, from ``probabilities``)."""
    picks = np.asarray(picks, dtype=np.int64)
    titles = [
        f"{names[labels[i]]}\n→ {names[int(probabilities[i].argmax())]} {probabilities[i].max():.0%}"
        for i in picks.tolist()
    ]
    what = f"the {len(picks)} mistakes of highest loss (true → predicted, confidence)" if len(picks) else "no mistakes"
    return image_grid(images[picks], titles, path, suptitle=f"Fashion-MNIST {split}: {what}")


def reliability_diagram(bins: dict, path: str | os.PathLike, *, split: str, ece: float) -> Path:
    """Accuracy against mean confidence per equal-width confidence bin (``core.metrics.calibration_bins``), with the
    diagonal of perfect calibration, and below it how many images fall in each bin."""
    plt = _pyplot()
    edges = np.asarray(bins["edges"])
    count = np.asarray(bins["count"], dtype=float)
    filled = count > 0
    accuracy = np.divide(np.asarray(bins["correct"], float), count, out=np.zeros_like(count), where=filled)
    confidence = np.divide(np.asarray(bins["confidence_sum"]), count, out=np.zeros_like(count), where=filled)
    width = np.diff(edges)
    fig, (ax, axn) = plt.subplots(2, 1, figsize=(5.5, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(edges[:-1][filled], accuracy[filled], width=width[filled], align="edge", edgecolor="black",
           color="tab:blue", alpha=0.8, label="accuracy of the bin's images")  # fmt: skip
    ax.plot(confidence[filled], confidence[filled], "o", color="tab:red", markersize=4,
            label="mean confidence of the bin")  # fmt: skip
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy",
           title=f"Reliability diagram, {split} split\n{len(width)} equal-width bins, ECE {ece:.4f}")  # fmt: skip
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    axn.bar(edges[:-1], count, width=width, align="edge", edgecolor="black", color="tab:gray", label="images")
    axn.set(
        xlabel="confidence (top softmax probability)", ylabel="images", yscale="log" if count.max() > 0 else "linear"
    )
    axn.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def distance_histogram(distances: np.ndarray, threshold: float, path: str | os.PathLike, *, what: str) -> Path:
    """How far each image's nearest image of the other split is (RMS gray levels), with the near-duplicate threshold
    marked: a reader sees whether it sits in the sparse tail or cuts into the bulk."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    top = float(np.percentile(distances, 99)) if len(distances) else 1.0
    shown = distances[distances <= top]
    ax.hist(shown, bins=100, color="tab:blue", label=f"images ({len(distances):,}; the closest 99% shown)")
    ax.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold T = {threshold:g}")
    ax.set(
        xlabel="RMS gray-level difference to the nearest image of the other split",
        ylabel="images (log scale)",
        yscale="log",
        title=f"Nearest cross-split distances ({what})",
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
