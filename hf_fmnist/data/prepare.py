"""The CPU-bound half of a build: read and verify the raw splits, encode every image as PNG.

It needs only numpy and zlib, so :func:`start` can run it in a background thread while the caller imports
``datasets`` (~1.5 s of single-threaded imports): zlib releases the GIL, so on a 2-core machine the two overlap
almost completely. The builder then picks up the result with :func:`encoded_splits`; without a matching
:func:`start` it simply does the work itself.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import idx, png


@dataclass(frozen=True)
class EncodedSplit:
    """One split ready for Arrow: PNG bytes per image, labels as int64."""

    pngs: list[bytes]
    labels: np.ndarray


_lock = threading.Lock()
_pending: dict[tuple, tuple[Future, threading.Event]] = {}


def encode_splits(files: dict[str, Path], verify: bool, cancel: threading.Event | None = None):
    """``{split: EncodedSplit}`` for train and test; raises :class:`idx.IdxError` for a bad file.

    Both splits are checked before any encoding starts. Decompression and hashing release the GIL, so the splits are
    read in parallel; then all images go through one encoder pool, so no core idles at a split boundary.
    """
    with ThreadPoolExecutor(len(idx.SPLITS)) as pool:
        raw = dict(zip(idx.SPLITS, pool.map(lambda split: idx.read_split(files, split, verify=verify), idx.SPLITS)))
    images = np.concatenate([arrays.images for arrays in raw.values()])
    pngs = [p for chunk in png.iter_encode_gray(images, cancel=cancel) for p in chunk]
    out, start = {}, 0
    for split, arrays in raw.items():
        stop = start + len(arrays.labels)
        out[split] = EncodedSplit(pngs=pngs[start:stop], labels=arrays.labels.astype(np.int64))
        start = stop
    return out


def start(files: dict[str, Path], verify: bool) -> None:
    """Begin :func:`encode_splits` in a daemon thread; :func:`encoded_splits` with the same arguments collects it."""
    key = _key(files, verify)
    future: Future = Future()
    cancel = threading.Event()

    def work():
        try:
            future.set_result(encode_splits(files, verify, cancel))
        except BaseException as e:  # handed to whoever collects the result
            future.set_exception(e)

    with _lock:
        if key in _pending:
            return
        _pending[key] = (future, cancel)
    threading.Thread(target=work, name="hf_fmnist-prepare", daemon=True).start()


def encoded_splits(files: dict[str, Path], verify: bool):
    """The result of a matching :func:`start`, waiting for it if need be; else computed now."""
    with _lock:
        pending = _pending.pop(_key(files, verify), None)
    if pending is None:
        return encode_splits(files, verify)
    return pending[0].result()


def cancel_all() -> None:
    """Stop and forget prefetches nobody collected (the dataset was already cached)."""
    with _lock:
        pending = list(_pending.values())
        _pending.clear()
    for _, cancel in pending:
        cancel.set()


def _key(files: dict[str, Path], verify: bool) -> tuple:
    return tuple(sorted((name, str(Path(p).resolve())) for name, p in files.items())), verify
