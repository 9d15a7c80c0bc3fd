"""Benchmark: the audit's duplicate checks and `hf-fmnist embed` on the full dataset, each against a reference.

1. exact duplicates (train + test): ours (sha256 per image, ``data.duplicates.exact_groups``) vs numpy's
   ``np.unique(axis=0)`` over the pixel rows; both must find the same number of repeated images;
2. the nearest train image of every test image: ours (``data.duplicates.nearest``, float32 blocks sized to the memory
   budget) vs scikit-learn's brute-force ``NearestNeighbors``; both must agree on every distance to 1e-3 RMS;
3. ``embed`` of the test split with a model folder, the whole command (model, features, map, PNG, projector), with PCA
   and with UMAP, vs UMAP of the same images' raw pixels (``summary --map``'s work) as reference.

Usage (the whole dataset: about a minute for 1-2 and a few minutes for 3 on 2 cores, to be measured):

    python benchmarks/audit.py --model out/model            # a folder written by train.py (for 3)
    python benchmarks/audit.py --limit 2000                 # a quick check on the first 2,000 images of each split

``--skip-embed`` leaves out 3. Each step is run ``--repeats`` times (default 1: UMAP's compile is part of a user's
first run); best, median and spread are printed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def stats(times: list[float]) -> str:
    spread = f"{min(times):.2f}-{max(times):.2f}"
    return f"best {min(times):.2f} s, median {statistics.median(times):.2f} s (spread {spread}, n={len(times)})"


def timed(fn, repeats: int):
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return times, value


def repeated_by_unique(images: np.ndarray) -> int:
    """Images that repeat an earlier one: the reference count for exact duplicates."""
    _, counts = np.unique(images.reshape(len(images), -1), axis=0, return_counts=True)
    return int((counts - 1).sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a training output folder, for the embed timing")
    parser.add_argument("--limit", type=int, help="only the first N images of each split (a quick check)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-embed", action="store_true")
    parser.add_argument("--data-dir", help="raw Fashion-MNIST files (default: as hf-fmnist finds them)")
    args = parser.parse_args()

    import torch  # noqa: F401  imported before the clocks start: ours would pay torch's import, sklearn not
    from sklearn.neighbors import NearestNeighbors

    from hf_fmnist.data import duplicates
    from hf_fmnist.data.tensors import load_arrays
    from hf_fmnist.image_limits import memory_budget

    train, train_labels = (a[: args.limit] for a in load_arrays("train", data_dir=args.data_dir))
    test, test_labels = (a[: args.limit] for a in load_arrays("test", data_dir=args.data_dir))
    print(f"train {len(train):,} images, test {len(test):,} images")

    splits = {"train": (train, train_labels), "test": (test, test_labels)}
    ours, groups = timed(lambda: duplicates.exact_groups(splits), args.repeats)
    ref, repeated = timed(lambda: repeated_by_unique(np.concatenate([train, test])), args.repeats)
    ours_repeated = sum(len(g["indices"]) - 1 for g in groups)
    assert ours_repeated == repeated, (ours_repeated, repeated)
    print(f"exact duplicates ({repeated:,} repeated images): ours {stats(ours)}; np.unique {stats(ref)}")

    budget = memory_budget() // 2
    ours, (found, distance) = timed(lambda: duplicates.nearest(test, train, budget_bytes=budget), args.repeats)

    def reference():
        nn = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(train.reshape(len(train), -1).astype(np.float32))
        d, _ = nn.kneighbors(test.reshape(len(test), -1).astype(np.float32))
        return d[:, 0] / np.sqrt(train[0].size)  # Euclidean to RMS

    ref, ref_distance = timed(reference, args.repeats)
    assert np.allclose(distance, ref_distance, atol=1e-3), float(np.abs(distance - ref_distance).max())
    print(f"nearest train image of each test image: ours {stats(ours)}; sklearn brute force {stats(ref)}")

    if args.skip_embed:
        return 0
    if not args.model:
        print("embed: pass --model OUT/MODEL (a folder written by train.py), or --skip-embed", file=sys.stderr)
        return 2
    limit = ["--max-samples", str(args.limit)] if args.limit else []
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("pca", "umap"):
            out = Path(tmp) / method
            command = ["hf-fmnist", "embed", "--model", args.model, "--output-dir", str(out), "--method", method]
            times, _ = timed(lambda c=command: subprocess.run([*c, *limit, *data], check=True), args.repeats)
            print(f"embed --method {method} (whole command): {stats(times)}")
    from hf_fmnist.data.maps import reduce_2d

    pixels = test.reshape(len(test), -1).astype(np.float32)
    times, _ = timed(lambda: reduce_2d(pixels, "umap"), args.repeats)
    print(f"reference, UMAP of the same images' raw pixels (summary --map's work, in-process): {stats(times)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
