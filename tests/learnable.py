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
    from hf_fmnist.data.export import export

    rng = np.random.default_rng(seed)
    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n in zip(idx.SPLITS, sizes):
        labels = rng.permutation(np.arange(n) % 10)
        images = 20 + 20 * labels[:, None, None] + rng.integers(-20, 21, size=(n, 28, 28))
        for k, c in enumerate(labels):
            images[k, 2 + 2 * c : 5 + 2 * c, 4:24] = 255
        image_name, label_name = idx.FILENAMES[split]
        (raw / f"{image_name}.gz").write_bytes(gzip.compress(idx_images(np.clip(images, 0, 255)), mtime=0))
        (raw / f"{label_name}.gz").write_bytes(gzip.compress(idx_labels(labels), mtime=0))
    return str(export(folder / "export", data_dir=raw, verify=False))
