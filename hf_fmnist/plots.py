"""PNG figures: sample grids (with class names, and predictions when given). Matplotlib, headless."""

from __future__ import annotations

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
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, 1.45 * nrows + (0.4 if suptitle else 0)))
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
    """Write ``fig`` as PNG via a temp file and rename, then close it."""
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=110)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        plt.close(fig)
    return path
