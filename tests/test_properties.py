"""Properties of the pure functions, checked on generated inputs (Hypothesis) against independent definitions.

The other tests pin outcomes on chosen inputs; these state what must hold for every input: the stratified split
holds out each class's share and nothing twice, the metrics are the textbook counts, a PNG decodes to the pixels it
encodes (ours, PIL's, and hand-filtered rows), an IDX file reads back as what was written and any other length is
refused. Example counts are kept small so the file runs in seconds on 2 cores.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hf_fmnist.core import metrics
from hf_fmnist.data import idx, png
from hf_fmnist.training.loop import stratified_split

from conftest import idx_images, idx_labels

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

labels_arrays = hnp.arrays(np.int64, st.integers(0, 300), elements=st.integers(0, 9))


@FAST
@given(labels=labels_arrays, percentage=st.integers(0, 100), seed=st.integers(0, 2**32 - 1))
def test_the_split_holds_out_each_class_share_once_and_keeps_the_rest_in_order(labels, percentage, seed):
    train, held = stratified_split(labels, percentage, seed)
    assert np.array_equal(np.sort(np.concatenate([train, held])), np.arange(len(labels)))  # each index exactly once
    assert np.all(np.diff(train) > 0) and np.all(np.diff(held) > 0)  # dataset order, no repeats
    for c in range(10):
        n, k = int((labels == c).sum()), int((labels[held] == c).sum())
        assert abs(100 * k - n * percentage) <= 50, (c, n, k)  # percentage % of the class, rounded: images
    again_train, again_held = stratified_split(labels, percentage, seed)
    assert np.array_equal(again_train, train) and np.array_equal(again_held, held)  # every process draws the same


@FAST
@given(labels=hnp.arrays(np.int64, 200, elements=st.integers(0, 1)), seed=st.integers(0, 2**32 - 1))
def test_the_split_draws_with_its_seed(labels, seed):
    """Not the first images of each class: a held-out set drawn by the seed (two seeds differ on 100-image classes)."""
    if min((labels == 0).sum(), (labels == 1).sum()) < 50:
        return
    held = {s: stratified_split(labels, 50, s)[1] for s in (seed, seed + 1)}
    assert not np.array_equal(held[seed], held[seed + 1])


@st.composite
def logits_and_labels(draw, max_classes: int = 10):
    classes = draw(st.integers(1, max_classes))
    n = draw(st.integers(0, 60))
    # few distinct values, so ties (broken by index) are common
    logits = draw(hnp.arrays(np.float32, (n, classes), elements=st.sampled_from([-1.0, 0.0, 0.5, 2.0])))
    labels = draw(hnp.arrays(np.int64, n, elements=st.integers(0, classes - 1)))
    return logits, labels, classes


@FAST
@given(data=logits_and_labels())
def test_the_report_is_the_textbook_counts(data):
    logits, labels, classes = data
    names = [f"c{i}" for i in range(classes)]
    report = metrics.classification_report(logits, labels, names)
    predicted = [int(np.argmax(row)) for row in logits]  # the first of equal maxima, as argmax is documented
    cm = [
        [sum(1 for t, p in zip(labels, predicted) if (t, p) == (i, j)) for j in range(classes)] for i in range(classes)
    ]
    assert report["confusion_matrix"] == cm and report["samples"] == len(labels)
    correct = sum(cm[i][i] for i in range(classes))
    assert report["accuracy"] == (correct / len(labels) if len(labels) else 0.0)  # exact: one division
    for i, name in enumerate(names):
        support = sum(cm[i])
        assert report["per_class_accuracy"][name] == (cm[i][i] / support if support else None)
    f1 = []  # over the classes that occur in labels or predictions
    for i in range(classes):
        tp, fp, fn = cm[i][i], sum(cm[j][i] for j in range(classes)) - cm[i][i], sum(cm[i]) - cm[i][i]
        if tp + fp + fn:
            f1.append(Fraction(2 * tp, 2 * tp + fp + fn))
    expected_f1 = float(sum(f1) / len(f1)) if f1 else 0.0
    # float mean of at most 10 correctly rounded quotients vs the exact rational: a few ulps, far below 1e-12
    assert report["macro_f1"] == pytest.approx(expected_f1, rel=1e-12, abs=1e-15)


@FAST
@given(data=logits_and_labels(), k=st.integers(1, 12))
def test_top_k_is_the_label_among_the_k_highest_ties_broken_by_index(data, k):
    logits, labels, classes = data
    hits = 0
    for row, label in zip(logits, labels):
        ranked = sorted(range(classes), key=lambda j: (-row[j], j))
        hits += label in ranked[:k]
    got = metrics.top_k_accuracy(logits, labels, k)
    assert got == (hits / len(labels) if len(labels) else 0.0)
    if len(labels):
        assert (
            metrics.top_k_accuracy(logits, labels, 1)
            == metrics.classification_report(logits, labels, [str(i) for i in range(classes)])["accuracy"]
        )
        assert metrics.top_k_accuracy(logits, labels, classes) == 1.0


@FAST
@given(data=logits_and_labels(), seed=st.integers(0, 1000))
def test_the_report_does_not_depend_on_the_order_of_the_images(data, seed):
    logits, labels, classes = data
    order = np.random.default_rng(seed).permutation(len(labels))
    names = [str(i) for i in range(classes)]
    a = metrics.classification_report(logits, labels, names)
    b = metrics.classification_report(logits[order], labels[order], names)
    assert a["confusion_matrix"] == b["confusion_matrix"] and a["accuracy"] == b["accuracy"]
    assert a["top5_accuracy"] == b["top5_accuracy"] and a["per_class_accuracy"] == b["per_class_accuracy"]


images_arrays = hnp.arrays(
    np.uint8,
    st.tuples(st.integers(1, 5), st.integers(1, 12), st.integers(1, 12)),
    elements=st.integers(0, 255),
)


@FAST
@given(images=images_arrays)
def test_png_round_trips_and_pil_reads_what_we_write(images):
    from PIL import Image

    pngs = png.encode_gray(images)
    assert len(pngs) == len(images)
    np.testing.assert_array_equal(png.decode_gray(pngs), images)
    for data, image in zip(pngs, images):
        with Image.open(io.BytesIO(data)) as im:
            assert im.mode == "L"
            np.testing.assert_array_equal(np.asarray(im), image)


@FAST
@given(images=images_arrays, optimize=st.booleans())
def test_png_decodes_what_pil_writes(images, optimize):
    from PIL import Image

    pngs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image, mode="L").save(buffer, format="PNG", optimize=optimize)
        pngs.append(buffer.getvalue())
    np.testing.assert_array_equal(png.decode_gray(pngs), images)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _filtered_png(image: np.ndarray, filters: list[int]) -> bytes:
    """An 8-bit gray PNG whose row r uses PNG filter ``filters[r]`` (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth),
    written from the PNG specification, independently of hf_fmnist's encoder."""
    height, width = image.shape
    raw = bytearray()
    prior = [0] * width
    for r in range(height):
        row = [int(v) for v in image[r]]
        out = []
        for x in range(width):
            left = row[x - 1] if x else 0
            up_left = prior[x - 1] if x else 0
            predictor = (0, left, prior[x], (left + prior[x]) // 2, _paeth(left, prior[x], up_left))[filters[r]]
            out.append((row[x] - predictor) % 256)
        raw += bytes([filters[r], *out])
        prior = row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + tag + data + zlib.crc32(tag + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return png.SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")


@FAST
@given(data=st.data(), images=images_arrays)
def test_png_undoes_every_row_filter(data, images):
    """Rows filtered Sub or Up are undone in bulk (numpy), Average and Paeth through PIL: all give the pixels."""
    height = images.shape[1]
    pngs = [
        _filtered_png(image, data.draw(st.lists(st.integers(0, 4), min_size=height, max_size=height)))
        for image in images
    ]
    np.testing.assert_array_equal(png.decode_gray(pngs), images)
    bulk = [
        _filtered_png(image, data.draw(st.lists(st.integers(0, 2), min_size=height, max_size=height)))
        for image in images
    ]
    np.testing.assert_array_equal(png.decode_gray(bulk), images)


idx_splits = st.integers(1, 12).flatmap(
    lambda n: st.tuples(
        hnp.arrays(np.uint8, (n, 28, 28), elements=st.integers(0, 255)),
        hnp.arrays(np.uint8, n, elements=st.integers(0, 9)),
    )
)


@settings(FAST, max_examples=30)
@given(split=idx_splits, compressed=st.booleans())
def test_idx_reads_back_what_was_written(tmp_path_factory, split, compressed):
    images, labels = split
    folder = tmp_path_factory.mktemp("idx")
    contents = {}
    for split_name, reversed_ in (("train", False), ("test", True)):  # the test split: the images in reverse
        image_name, label_name = idx.FILENAMES[split_name]
        order = slice(None, None, -1 if reversed_ else 1)
        contents.update({image_name: idx_images(images[order]), label_name: idx_labels(labels[order])})
    for name, content in contents.items():
        (folder / (name + ".gz" if compressed else name)).write_bytes(gzip.compress(content) if compressed else content)
    checksums = {name: hashlib.sha256(content).hexdigest() for name, content in contents.items()}
    for split_name, order in (("train", slice(None)), ("test", slice(None, None, -1))):
        read = idx.read_split(folder, split_name, checksums=checksums)
        np.testing.assert_array_equal(read.images, images[order])
        np.testing.assert_array_equal(read.labels, labels[order])
        assert read.images.dtype == np.uint8 and read.labels.dtype == np.uint8


@settings(FAST, max_examples=40)
@given(split=idx_splits, cut=st.integers(-20, 20).filter(bool))
def test_idx_refuses_any_other_length(split, cut):
    """A file one byte short or long of what its header promises is damaged: refused, whichever part it is."""
    images, labels = split
    for parse, content in ((idx.parse_images, idx_images(images)), (idx.parse_labels, idx_labels(labels))):
        changed = content[:cut] if cut < 0 else content + bytes(cut)
        with pytest.raises(idx.IdxError):
            parse(changed, "f")


@settings(FAST, max_examples=30)
@given(labels=hnp.arrays(np.uint8, st.integers(1, 50), elements=st.integers(0, 255)))
def test_idx_refuses_a_label_outside_the_classes_and_names_the_first(labels):
    bad = np.flatnonzero(labels > 9)
    if not len(bad):
        assert np.array_equal(idx.parse_labels(idx_labels(labels), "f"), labels)
        return
    with pytest.raises(idx.IdxError, match=f"label {labels[bad[0]]} at index {bad[0]} "):
        idx.parse_labels(idx_labels(labels), "f")


@FAST
@given(images=images_arrays)
def test_png_files_are_valid_chunk_by_chunk(images):
    """Strict readers (libpng, browsers) check what PIL and our decoder skip: each chunk's CRC over its tag and data,
    and the IHDR fields (8-bit gray, deflate, adaptive filtering, no interlace)."""
    for data, image in zip(png.encode_gray(images), images):
        assert data[:8] == png.SIGNATURE
        pos, tags = 8, []
        while pos < len(data):
            length = int.from_bytes(data[pos : pos + 4], "big")
            tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
            assert int.from_bytes(data[pos + 8 + length : pos + 12 + length], "big") == zlib.crc32(tag + body), tag
            tags.append(tag)
            if tag == b"IHDR":
                height, width = image.shape
                assert body == width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
            pos += 12 + length
        assert tags == [b"IHDR", b"IDAT", b"IEND"] and pos == len(data)
