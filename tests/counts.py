"""Accuracies as counts of images: tests compare whole images, never fractions against round thresholds.

An accuracy of 91 images in 100 minus one of 90 in 100 is 0.010000000000000009 in binary floating point, so
``abs(a - b) <= 0.01`` fails for runs exactly one image apart. Counting turns every tolerance into images.
"""

from __future__ import annotations

import numpy as np


def images(fraction: float, n: int) -> int:
    """The count ``k`` that ``fraction == k / n`` states; fails if ``fraction`` is no share of ``n`` images (then it
    was not computed as one, and a count cannot stand for it)."""
    k = round(fraction * n)
    assert fraction == k / n, (fraction, n)
    return k


def correct_images(results: dict) -> int:
    """Test images a run classified correctly: the trace of its confusion matrix, which must agree exactly with
    its stated accuracy and sample count (the three are written by one report)."""
    cm = np.asarray(results["eval_confusion_matrix"])
    n = int(results["eval_samples"])
    assert int(cm.sum()) == n, (int(cm.sum()), n)
    correct = int(np.trace(cm))
    assert images(results["eval_accuracy"], n) == correct, (results["eval_accuracy"], correct, n)
    return correct
