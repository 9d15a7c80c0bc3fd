"""2-D maps of feature vectors (UMAP, t-SNE or PCA) and their PNG scatter, coloured by class.

UMAP (umap-learn) and t-SNE (scikit-learn) run long native code that does not return to Python for minutes, so a
SIGTERM would wait for them: they run in a child process, which the parent stops within a second of a signal
(:func:`reduce_2d`), leaving no temp file. PCA is a few matrix products and runs in place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

METHODS = ("umap", "tsne", "pca")
LABELS = {"umap": "UMAP", "tsne": "t-SNE", "pca": "PCA"}
PCA_BEFORE = 50  # UMAP and t-SNE read the first 50 principal components (t-SNE's authors' advice; UMAP is faster)


def require_method(method: str, command: str) -> None:
    """Fail fast, in one line, when ``method`` needs an extra that is not installed."""
    from ..errors import HfFmnistError
    from ..extras import require

    if method not in METHODS:
        raise HfFmnistError(f"--method {method!r}: choose one of {', '.join(METHODS)}.")
    if method == "umap":
        require("umap", extra="embed", command=command)
    elif method == "tsne":
        require("sklearn", extra="embed", command=command)


def pca(features: np.ndarray, components: int) -> np.ndarray:
    """The first ``components`` principal-component scores (float32), by SVD of the centred features; signs fixed
    so that each component's largest loading is positive (deterministic across runs)."""
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    vt = vt[:components]
    vt *= np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])[:, None]
    return (x @ vt.T).astype(np.float32)


def _reduce(features: np.ndarray, method: str, seed: int) -> np.ndarray:
    """The 2-D map itself (in whichever process runs it)."""
    if method == "pca":
        return pca(features, 2)
    x = pca(features, min(PCA_BEFORE, features.shape[1], len(features)))
    if method == "umap":
        import umap

        return umap.UMAP(n_components=2, random_state=seed, n_jobs=1).fit_transform(x).astype(np.float32)
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))  # t-SNE needs perplexity < rows
    return (
        TSNE(n_components=2, random_state=seed, perplexity=perplexity, init="pca").fit_transform(x).astype(np.float32)
    )


def _child(features_path: str, result_path: str, method: str, seed: int) -> None:
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler raises; here the default ends the child
    with np.load(features_path) as npz:
        features = npz["features"]
    np.save(result_path, _reduce(features, method, seed))


def reduce_2d(features: np.ndarray, method: str, *, seed: int = 0, workdir: str | os.PathLike | None = None):
    """``(N, 2)`` map of ``features`` by ``method``; UMAP and t-SNE in a child process (see the module's note).

    The features travel through a temp folder (in ``workdir``, default the system's), removed however this ends.
    """
    import multiprocessing
    import shutil

    if method == "pca" or len(features) < 4:
        return pca(features, 2) if len(features) >= 2 else np.zeros((len(features), 2), np.float32)
    tmp = tempfile.mkdtemp(prefix=".hf_fmnist-map-", dir=workdir)
    process = None
    try:
        features_path, result_path = os.path.join(tmp, "features.npz"), os.path.join(tmp, "map.npy")
        with open(features_path, "wb") as f:
            np.savez(f, features=np.asarray(features, dtype=np.float32))
        process = multiprocessing.get_context("spawn").Process(
            target=_child, args=(features_path, result_path, method, seed), daemon=True
        )
        process.start()
        while process.is_alive():
            process.join(timeout=0.5)  # a SIGTERM is handled here, between waits: Terminated stops the child below
        if process.exitcode != 0 or not os.path.exists(result_path):
            raise RuntimeError(f"the {LABELS[method]} map's process ended with exit code {process.exitcode}")
        return np.load(result_path)
    finally:
        if process is not None and process.is_alive():
            process.kill()
            process.join(timeout=5)
        shutil.rmtree(tmp, ignore_errors=True)


def scatter(
    points: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    path: str | os.PathLike,
    *,
    method: str,
    title: str,
    images: np.ndarray | None = None,
    thumbnails: int = 0,
    seed: int = 0,
) -> Path:
    """A PNG scatter of ``points`` coloured by class, with a legend of class names; with ``thumbnails``, that many
    images (sampled with ``seed``) drawn at their points."""
    from ..plots import _pyplot, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 7.5))
    colors = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    size = max(1.0, min(12.0, 20000 / max(len(points), 1)))
    for c, name in enumerate(names):
        member = labels == c
        if member.any():
            ax.scatter(*points[member].T, s=size, color=colors(c % colors.N), label=name, alpha=0.7, linewidths=0)
    if thumbnails and images is not None and len(points):
        from matplotlib.offsetbox import AnnotationBbox, OffsetImage

        picks = np.random.default_rng(seed).choice(len(points), size=min(thumbnails, len(points)), replace=False)
        for i in picks.tolist():
            box = OffsetImage(images[i], cmap="gray", zoom=0.8)
            edge = {"edgecolor": colors(int(labels[i]) % colors.N)}
            ax.add_artist(AnnotationBbox(box, points[i], frameon=True, pad=0.1, bboxprops=edge))
    label = LABELS[method]
    ax.set(xlabel=f"{label} 1", ylabel=f"{label} 2", title=title)
    ax.legend(markerscale=max(1.0, 30 / size), fontsize=8, loc="best", title="class")
    fig.tight_layout()
    return save_figure(fig, path)
