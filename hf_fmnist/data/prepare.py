"""The CPU-bound half of a build: read and verify the raw splits, encode every image as PNG.

It needs only numpy and zlib; the builder calls it before any table is written, so a bad file fails the build with
our own error and leaves no partial split behind.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import idx, png


@dataclass(frozen=True)
class EncodedSplit:
    """One split ready for Arrow: PNG bytes per image, labels as int64."""

    pngs: list[bytes]
    labels: np.ndarray


def encode_splits(files: dict[str, Path], verify: bool):
    """``{split: EncodedSplit}`` for train and test; raises :class:`idx.IdxError` for a bad file.

    Both splits are checked before any encoding starts. Decompression and hashing release the GIL, so the splits are
    read in parallel; then all images go through one encoder pool, so no core idles at a split boundary.
    """
    with ThreadPoolExecutor(len(idx.SPLITS)) as pool:
        raw = dict(zip(idx.SPLITS, pool.map(lambda split: idx.read_split(files, split, verify=verify), idx.SPLITS)))
    images = np.concatenate([arrays.images for arrays in raw.values()])
    pngs = [p for chunk in png.iter_encode_gray(images) for p in chunk]
    out, start = {}, 0
    for split, arrays in raw.items():
        stop = start + len(arrays.labels)
        out[split] = EncodedSplit(pngs=pngs[start:stop], labels=arrays.labels.astype(np.int64))
        start = stop
    return out
