"""A small Fashion-MNIST-shaped dataset that a model can learn in a few steps: each class has its own brightness and
a bright horizontal band at its own height (both survive flips, one-pixel shifts and erasing), plus noise."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from hf_fmnist.data import idx

from conftest import idx_images, idx_labels


def learnable_export(folder: Path, sizes: tuple[int, int], seed: int = 0) -> str:
    """Raw IDX files in ``folder/raw``, exported as `hf-fmnist build` writes it; returns the export folder."""
    rng = np.random.default_rng(seed)
    return export_arrays(folder, {split: learnable_arrays(n, rng) for split, n in zip(idx.SPLITS, sizes)})


def learnable_arrays(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (uint8) and labels, balanced over the 10 classes in a random order."""
    labels = rng.permutation(np.arange(n) % 10)
    images = 20 + 20 * labels[:, None, None] + rng.integers(-20, 21, size=(n, 28, 28))
    for k, c in enumerate(labels):
        images[k, 2 + 2 * c : 5 + 2 * c, 4:24] = 255
    return np.clip(images, 0, 255).astype(np.uint8), labels


def export_arrays(folder: Path, arrays: dict) -> str:
    """``{split: (images, labels)}`` as raw IDX files in ``folder/raw``, exported; returns the export folder."""
    from hf_fmnist.data.export import export

    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in arrays.items():
        image_name, label_name = idx.FILENAMES[split]
        (raw / f"{image_name}.gz").write_bytes(gzip.compress(idx_images(images), mtime=0))
        (raw / f"{label_name}.gz").write_bytes(gzip.compress(idx_labels(labels), mtime=0))
    return str(export(folder / "export", data_dir=raw, verify=False))
