"""Duplicate images in a dataset: exact copies (byte for byte, within and across splits, with their labels) and near
copies across splits (the nearest image of another split by RMS gray-level difference).

The method is stated where its results are reported (``audit.json``, the dataset card): exact duplicates compare the
decoded 28×28 gray pixels by sha256; near duplicates are pairs whose root-mean-square pixel difference, in gray levels
(0-255), is at most a threshold. The threshold is the user's to judge: the audit reports the counts at half, once
and twice the threshold, the histogram of nearest distances and a grid of the nearest pairs.

>>> import numpy as np
>>> a = np.zeros((3, 2, 2), np.uint8); a[2] = 9
>>> groups = exact_groups({"train": (a, np.array([0, 1, 2]))})
>>> [(g["splits"], g["labels"]) for g in groups]
[(['train', 'train'], [0, 1])]
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import numpy as np

NEAR_THRESHOLD = 10.0  # RMS gray levels; docs/dataset.md ("Auditing the data") gives the measurement behind it


def exact_groups(splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[dict]:
    """Every set of two or more byte-identical images, over all splits: members as parallel lists of split, index
    and label, ordered by split then index; groups ordered by their first member."""
    members: dict[bytes, list[tuple[int, str, int, int]]] = {}
    for order, (split, (images, labels)) in enumerate(splits.items()):
        flat = np.ascontiguousarray(images).reshape(len(images), -1)
        for i in range(len(flat)):
            members.setdefault(hashlib.sha256(flat[i].tobytes()).digest(), []).append((order, split, i, int(labels[i])))
    groups = [sorted(m) for m in members.values() if len(m) > 1]
    groups.sort()
    return [{"splits": [m[1] for m in g], "indices": [m[2] for m in g], "labels": [m[3] for m in g]} for g in groups]


def summarize_exact(groups: list[dict], split_names: list[str]) -> dict:
    """Counts by identity: groups (and extra copies) inside each split, groups spanning splits, images of each later
    split that have a copy in the first one, and groups whose labels disagree."""
    within = {s: {"groups": 0, "extra_copies": 0} for s in split_names}
    across = 0
    in_first = {s: 0 for s in split_names[1:]}
    conflicts = 0
    for g in groups:
        splits = set(g["splits"])
        for s in splits:
            n = g["splits"].count(s)
            if n > 1:
                within[s]["groups"] += 1
                within[s]["extra_copies"] += n - 1
        if len(splits) > 1:
            across += 1
            if split_names[0] in splits:
                for s in in_first:
                    in_first[s] += g["splits"].count(s)
        conflicts += len(set(g["labels"])) > 1
    return {
        "within": within,
        "groups_across_splits": across,
        f"images_with_a_copy_in_{split_names[0]}": in_first,
        "groups_with_disagreeing_labels": conflicts,
    }


def rms_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Root-mean-square gray-level difference of paired images (exact, in integers)."""
    d = a.reshape(len(a), -1).astype(np.int64) - b.reshape(len(b), -1).astype(np.int64)
    return np.sqrt((d * d).mean(axis=1))


def chunks_within(budget_bytes: int, columns: int, total: int) -> int:
    """Rows per chunk of a ``rows × columns`` float32 distance block that, held about three times over (products,
    norms, argmin), fits in ``budget_bytes``; at least 1."""
    return int(max(1, min(total, budget_bytes // max(1, 12 * columns))))


def nearest(
    queries: np.ndarray,
    pool: np.ndarray,
    *,
    budget_bytes: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For each query image, the index of the nearest pool image and their RMS distance (exact, recomputed in
    integers for the pair found). Distances come from ``|q|² + |p|² - 2 q·p`` in float32 blocks of rows sized to
    ``budget_bytes``, so the pool is never copied per query; ``progress(rows)`` after each block."""
    import torch

    pool_t = torch.from_numpy(pool.reshape(len(pool), -1).astype(np.float32))  # a float copy
    pool_sq = (pool_t * pool_t).sum(1)
    rows = chunks_within(budget_bytes, len(pool), len(queries))
    found = np.empty(len(queries), dtype=np.int64)
    for start, block in _blocks(queries, rows):
        q = torch.from_numpy(block.reshape(len(block), -1).astype(np.float32))
        d2 = (q * q).sum(1, keepdim=True) + pool_sq[None, :] - 2.0 * (q @ pool_t.T)
        found[start : start + len(block)] = d2.argmin(1).numpy()
        if progress is not None:
            progress(len(block))
    return found, rms_distance(queries, pool[found])


def _blocks(array: np.ndarray, rows: int) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, len(array), rows):
        yield start, array[start : start + rows]


def near_summary(distances: np.ndarray, threshold: float) -> dict:
    """Counts of query images whose nearest image of the other split is an exact copy, or within half, one and two
    thresholds (copies included), so a reader sees how much the count depends on the threshold."""
    return {
        "exact_copies": int((distances == 0).sum()),
        "within_half_threshold": int((distances <= threshold / 2).sum()),
        "within_threshold": int((distances <= threshold).sum()),
        "within_twice_threshold": int((distances <= 2 * threshold).sum()),
        "queries": int(len(distances)),
    }
