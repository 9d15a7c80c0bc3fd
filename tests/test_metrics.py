"""Metrics against small cases computed by hand: asymmetric errors, an absent class, ties; the evaluate module path."""

import numpy as np
import pytest

from hf_fmnist.core import metrics

NAMES5 = ["a", "b", "c", "d", "e"]


def _logits(predictions, num_classes):
    """Logits whose argmax is ``predictions`` (one-hot rows)."""
    return np.eye(num_classes, dtype=np.float32)[predictions]


# 7 images of 5 classes. Errors are one-way: a -> b once, b -> d once, c -> a twice; class d is predicted but never
# occurs, class e neither occurs nor is predicted.
LABELS = np.array([0, 0, 0, 1, 1, 2, 2])
PREDICTIONS = np.array([0, 0, 1, 1, 3, 0, 0])


def test_confusion_matrix_is_true_by_predicted():
    cm = metrics.confusion_matrix(LABELS, PREDICTIONS, 5)
    assert cm.tolist() == [
        [2, 1, 0, 0, 0],  # a: 2 right, 1 called b
        [0, 1, 0, 1, 0],  # b: 1 right, 1 called d
        [2, 0, 0, 0, 0],  # c: both called a
        [0, 0, 0, 0, 0],  # d: never the truth
        [0, 0, 0, 0, 0],  # e: absent
    ]


def test_report_of_asymmetric_errors_with_absent_classes():
    report = metrics.classification_report(_logits(PREDICTIONS, 5), LABELS, NAMES5)
    assert report["samples"] == 7
    assert report["accuracy"] == pytest.approx(3 / 7)  # indices 0, 1 (a) and 3 (b)
    # Per-class accuracy is recall, cm[i, i] / row sum: a 2/3, b 1/2, c 0/2; d and e have no images -> None.
    # (Precision would give a 2/4, which a transposed matrix would report.)
    assert report["per_class_accuracy"] == {"a": pytest.approx(2 / 3), "b": 0.5, "c": 0.0, "d": None, "e": None}
    # F1 = 2 tp / (predicted + actual):  a 2*2/(4+3) = 4/7;  b 2*1/(2+2) = 1/2;  c 0/(0+2) = 0;  d 0/(1+0) = 0;
    # e occurs nowhere and is left out. Macro-F1 = (4/7 + 1/2 + 0 + 0) / 4 = 15/56 = 0.267857...
    # (averaging over all 5 classes would give 3/14, over the 3 true classes only 5/14.)
    assert report["macro_f1"] == pytest.approx(15 / 56)
    assert report["top5_accuracy"] == 1.0  # 5 classes: every label is in the top 5
    assert report["confusion_matrix"] == metrics.confusion_matrix(LABELS, PREDICTIONS, 5).tolist()


# 7 classes, so top-5 can miss. Row kinds: a strict ranking 6 > 5 > ... > 0 (class i has rank i + 1), all equal
# (ties go to the lower class index, so the top 5 are classes 0-4), and a clear winner (class 6).
RANKED = [6, 5, 4, 3, 2, 1, 0]
TIED = [1] * 7
SIX = [0, 0, 0, 0, 0, 0, 5]
TOPK_LOGITS = np.array([RANKED, RANKED, TIED, TIED, SIX], dtype=np.float32)
TOPK_LABELS = np.array([4, 5, 4, 6, 6])


@pytest.mark.parametrize(
    "k, expected",
    [
        (1, 1 / 5),  # only the last row: ranked rows predict 0, tied rows predict 0 (lowest index)
        (4, 1 / 5),  # still only the last row: labels 4 and 5 rank 5th and 6th, and label 4 is the 5th of the ties
        (5, 3 / 5),  # row 0 (label 4, rank 5), row 2 (label 4 among tied 0-4), row 4 (label 6, rank 1)
        (6, 4 / 5),  # + row 1 (label 5, rank 6); row 3 (label 6, 7th among ties) still misses
        (7, 1.0),
    ],
)
def test_top_k_with_ranks_and_ties(k, expected):
    assert metrics.top_k_accuracy(TOPK_LOGITS, TOPK_LABELS, k) == pytest.approx(expected)


def test_report_top5_and_tie_breaking_agree_with_argmax():
    names = [f"c{i}" for i in range(7)]
    report = metrics.classification_report(TOPK_LOGITS, TOPK_LABELS, names)
    assert report["top5_accuracy"] == pytest.approx(3 / 5)
    # argmax breaks the tie like top-1 does (lowest index): predictions 0, 0, 0, 0, 6 -> only row 4 is right
    assert report["accuracy"] == pytest.approx(1 / 5)
    assert report["accuracy"] == metrics.top_k_accuracy(TOPK_LOGITS, TOPK_LABELS, 1)
    cm = np.array(report["confusion_matrix"])
    assert cm[4, 0] == 2 and cm[5, 0] == 1 and cm[6, 0] == 1 and cm[6, 6] == 1 and cm.sum() == 5
    # per class: c4 0/2, c5 0/1, c6 1/2 (rows 3 and 4), the rest absent
    assert report["per_class_accuracy"] == {
        "c0": None,
        "c1": None,
        "c2": None,
        "c3": None,
        "c4": 0.0,
        "c5": 0.0,
        "c6": 0.5,
    }
    # F1: c0 predicted 4 times, never true -> 0; c4 0; c5 0; c6 2*1/(1+2) = 2/3. Mean over the 4 present = 1/6.
    assert report["macro_f1"] == pytest.approx(1 / 6)


def test_evaluate_module_equals_the_report():
    """``metrics.compute`` (the packaged ``evaluate`` module, what training reports) is the same numbers."""
    rng = np.random.default_rng(0)
    names = [f"class {i}" for i in range(10)]
    labels = rng.integers(0, 9, 203)  # class 9 absent
    logits = rng.normal(size=(203, 10)).astype(np.float32)
    logits[np.arange(150), labels[:150]] += 4.0  # mostly right, not always
    expected = metrics.classification_report(logits, labels, names)
    got = metrics.compute(logits, labels, names)
    assert got == expected
    assert got["per_class_accuracy"]["class 9"] is None and 0.5 < got["accuracy"] < 1


# Calibration, by hand. Two classes; confidences 0.9 (right), 0.9 (wrong), 0.58 (right), 0.52 (wrong). Fifteen
# equal-width bins: 0.9 falls in (13/15, 14/15], 0.58 in (8/15, 9/15], 0.52 in (7/15, 8/15]. Per bin |correct -
# sum of confidences|: 2 images, 1 right, 1.8 -> 0.8; 0.58 right -> 0.42; 0.52 wrong -> 0.52. ECE = 1.74 / 4.
# Ten bins would put 0.52 and 0.58 together ((0.5, 0.6]: |1 - 1.1| = 0.1), giving 0.9 / 4 instead.
CAL_PROBS = np.array([[0.9, 0.1], [0.1, 0.9], [0.58, 0.42], [0.52, 0.48]])
CAL_LABELS = np.array([0, 0, 0, 1])


def test_ece_uses_fifteen_equal_width_bins_recomputed_by_hand():
    logits = np.log(CAL_PROBS)
    bins = metrics.calibration_bins(logits, CAL_LABELS)
    assert [k for k, c in enumerate(bins["count"]) if c] == [7, 8, 13]
    assert [bins["count"][k] for k in (7, 8, 13)] == [1, 1, 2]
    assert [bins["correct"][k] for k in (7, 8, 13)] == [0, 1, 1]
    assert metrics.expected_calibration_error(logits, CAL_LABELS) == pytest.approx(1.74 / 4)
    assert metrics.expected_calibration_error(logits, CAL_LABELS, bins=10) == pytest.approx(0.9 / 4)


def test_nll_is_the_mean_minus_log_probability_of_the_label():
    # -log of the label's probability: 0.9, 0.1, 0.58, 0.48
    expected = -(np.log(0.9) + np.log(0.1) + np.log(0.58) + np.log(0.48)) / 4
    assert metrics.negative_log_likelihood(np.log(CAL_PROBS), CAL_LABELS) == pytest.approx(expected)
    # a huge confident mistake stays finite (log-sum-exp), which a softmax-then-log would turn into inf
    assert metrics.per_image_loss(np.array([[1000.0, -1000.0]]), np.array([1])).tolist() == [2000.0]


def test_top_losses_are_the_most_confident_mistakes_first():
    logits = np.log(np.array([[0.6, 0.4], [0.05, 0.95], [0.3, 0.7], [0.99, 0.01], [0.2, 0.8]]))
    labels = np.array([1, 0, 0, 0, 1])  # mistakes: 0 (p=0.4), 1 (0.05), 2 (0.3); 3 and 4 are right
    assert metrics.top_losses(logits, labels, 10).tolist() == [1, 2, 0]
    assert metrics.top_losses(logits, labels, 2).tolist() == [1, 2]


def test_most_confused_pairs_by_count_with_class_sizes():
    pairs = metrics.most_confused_pairs(metrics.confusion_matrix(LABELS, PREDICTIONS, 5), NAMES5)
    # c -> a twice (c has 2 images), then a -> b and b -> d once each, by class index
    assert pairs == [
        {"true": "c", "predicted": "a", "count": 2, "of": 2},
        {"true": "a", "predicted": "b", "count": 1, "of": 3},
        {"true": "b", "predicted": "d", "count": 1, "of": 2},
    ]
