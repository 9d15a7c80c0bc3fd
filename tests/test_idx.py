import gzip

import numpy as np
import pytest

from hf_fmnist.data import idx
from hf_fmnist.data.idx import IdxError

from conftest import REAL_DIR, idx_images, idx_labels, real_data


def test_reads_synthetic_gz_and_raw(synthetic, tmp_path):
    split = idx.read_split(synthetic.folder, "train", checksums=synthetic.checksums)
    images, labels = synthetic.arrays["train"]
    assert split.images.dtype == np.uint8 and split.images.shape == (40, 28, 28)
    np.testing.assert_array_equal(split.images, images)
    np.testing.assert_array_equal(split.labels, labels)
    # the same content, decompressed, with the plain original names
    plain = tmp_path / "plain"
    plain.mkdir()
    for name, content in synthetic.contents.items():
        (plain / name).write_bytes(content)
    again = idx.read_split(plain, "train", checksums=synthetic.checksums)
    np.testing.assert_array_equal(again.images, images)


def _corrupt(synthetic, name, content=None, raw_bytes=None):
    path = synthetic.path(name)
    path.write_bytes(raw_bytes if raw_bytes is not None else gzip.compress(content))
    return path


TRAIN_IMAGES, TRAIN_LABELS = idx.FILENAMES["train"]


def _replace_header(content: bytes, offset: int, value: int) -> bytes:
    return content[:offset] + value.to_bytes(4, "big") + content[offset + 4 :]


CASES = {
    "truncated gz": (
        TRAIN_IMAGES,
        lambda s: gzip.compress(s.contents[TRAIN_IMAGES])[:-2000],
        True,
        "gzip stream is truncated",
    ),
    "not gzip": (TRAIN_IMAGES, lambda s: b"<html>not found</html>", True, "named .gz but is not gzip data"),
    "empty file": (TRAIN_LABELS, lambda s: b"", True, "file is empty"),
    "bad magic": (
        TRAIN_IMAGES,
        lambda s: _replace_header(s.contents[TRAIN_IMAGES], 0, 2049),
        False,
        "bad magic number 2049",
    ),
    "labels given as images": (TRAIN_LABELS, lambda s: s.contents[TRAIN_IMAGES], False, "expected 2049 for labels"),
    "wrong dims": (TRAIN_IMAGES, lambda s: idx_images(np.zeros((40, 32, 32), np.uint8)), False, "images are 32x32"),
    "truncated data": (TRAIN_IMAGES, lambda s: s.contents[TRAIN_IMAGES][:-100], False, "truncated"),
    "trailing bytes": (
        TRAIN_LABELS,
        lambda s: s.contents[TRAIN_LABELS] + b"\0\0\0",
        False,
        "3 unexpected trailing bytes",
    ),
    "count mismatch": (TRAIN_LABELS, lambda s: idx_labels(np.zeros(39, np.uint8)), False, "holds 40 images but"),
    "label out of range": (TRAIN_LABELS, lambda s: idx_labels(np.r_[np.zeros(39), 10]), False, "label 10 at index 39"),
    "checksum mismatch": (TRAIN_IMAGES, lambda s: _flip_pixel(s.contents[TRAIN_IMAGES]), False, "sha256"),
    # a relabelled image is the quietest corruption: every label still in range, only the checksum can tell
    "label checksum mismatch": (TRAIN_LABELS, lambda s: _relabel_last(s.contents[TRAIN_LABELS]), False, "sha256"),
}


def _relabel_last(content: bytes) -> bytes:
    return content[:-1] + bytes([(content[-1] + 1) % 10])


def _flip_pixel(content: bytes) -> bytes:
    return content[:-1] + bytes([content[-1] ^ 1])


@pytest.mark.parametrize("case", list(CASES))
def test_corruption_is_one_clear_line(synthetic, case):
    name, make, is_raw_file, expected = CASES[case]
    bad = make(synthetic)
    path = _corrupt(synthetic, name, raw_bytes=bad) if is_raw_file else _corrupt(synthetic, name, content=bad)
    with pytest.raises(IdxError) as info:
        idx.read_split(synthetic.folder, "train", checksums=synthetic.checksums)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert str(path) in message or path.name in message  # names the file
    assert "download" in message or "same release" in message  # says what to do


def test_checksum_opt_out_accepts_modified_files(synthetic):
    _corrupt(synthetic, TRAIN_IMAGES, content=_flip_pixel(synthetic.contents[TRAIN_IMAGES]))
    with pytest.raises(IdxError, match="verify=False"):
        idx.read_split(synthetic.folder, "train", checksums=synthetic.checksums)
    split = idx.read_split(synthetic.folder, "train", verify=False)
    assert split.images[-1, -1, -1] == synthetic.arrays["train"][0][-1, -1, -1] ^ 1


def test_missing_files_are_listed_together(synthetic):
    synthetic.path(TRAIN_IMAGES).unlink()
    synthetic.path(TRAIN_LABELS).unlink()
    with pytest.raises(IdxError) as info:
        idx.find_files(synthetic.folder)
    assert f"{TRAIN_IMAGES}.gz, {TRAIN_LABELS}.gz" in str(info.value)


def test_not_a_folder(tmp_path):
    with pytest.raises(IdxError, match="not a folder"):
        idx.find_files(tmp_path / "nope")


def test_unknown_split(synthetic):
    with pytest.raises(IdxError, match="Unknown split 'validation'"):
        idx.read_split(synthetic.folder, "validation")


@real_data
def test_real_files_verify_and_match_known_facts():
    train = idx.read_split(REAL_DIR, "train")
    test = idx.read_split(REAL_DIR, "test")
    assert train.images.shape == (60_000, 28, 28) and test.images.shape == (10_000, 28, 28)
    assert train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert test.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert np.bincount(train.labels).tolist() == [6_000] * 10
    assert np.bincount(test.labels).tolist() == [1_000] * 10
    assert abs(train.images.mean() / 255 - 0.2860) < 0.0005


FIX = "delete it and download it again (or reinstall the dataset-fashion-mnist package)"
_IMAGES, _LABELS = (2051).to_bytes(4, "big"), (2049).to_bytes(4, "big")


def _u32(*values: int) -> bytes:
    return b"".join(v.to_bytes(4, "big") for v in values)


@pytest.mark.parametrize(
    "parse, data, line",
    [
        (idx.parse_images, _IMAGES[:3], "only 3 bytes, too short for an IDX header"),
        (idx.parse_images, _IMAGES, "header is 4 bytes, an images file needs 16"),
        (idx.parse_images, _IMAGES + _u32(0, 28) + b"\0\0\0", "header is 15 bytes, an images file needs 16"),
        (
            idx.parse_images,
            _LABELS + _u32(0),
            "bad magic number 2049 (0x00000801), expected 2051 for images (a labels file?)",
        ),
        (
            idx.parse_labels,
            _IMAGES + _u32(0),
            "bad magic number 2051 (0x00000803), expected 2049 for labels (an images file?)",
        ),
        (idx.parse_labels, _u32(7, 0), "bad magic number 7 (0x00000007), expected 2049 for labels (not an IDX file?)"),
        (idx.parse_images, _IMAGES + _u32(0, 27, 28), "images are 27x28, Fashion-MNIST images are 28x28"),
        (
            idx.parse_images,
            _IMAGES + _u32(2, 28, 28) + bytes(784),
            "truncated: 800 bytes, the header promises 2 images of 28x28 (1584 bytes)",
        ),
        (idx.parse_labels, _LABELS + b"\0\0\0", "header is 7 bytes, a labels file needs 8"),
        # a count above 2**24: its highest byte matters
        (
            idx.parse_labels,
            _LABELS + _u32(2**24 + 1) + b"\0",
            "truncated: 9 bytes, the header promises 16777217 labels (16777225 bytes)",
        ),
        (idx.parse_labels, _LABELS + _u32(3) + bytes([1, 12, 10]), "label 12 at index 1 is outside 0-9"),
        (
            idx.parse_images,
            _IMAGES + _u32(1, 28, 28) + bytes(787),
            "3 unexpected trailing bytes after 1 images of 28x28 (800 bytes)",
        ),
    ],
)
def test_each_refusal_is_its_exact_line(parse, data, line):
    """The whole line, not key words: a wrong kind, number or file name in it sends the user the wrong way."""
    with pytest.raises(IdxError) as refused:
        parse(data, "f")
    assert str(refused.value) == f"f: {line}; {FIX}."


def test_headers_of_exactly_the_minimum_size_hold_zero_items():
    assert idx.parse_images(_IMAGES + _u32(0, 28, 28), "f").shape == (0, 28, 28)
    assert idx.parse_labels(_LABELS + _u32(0), "f").shape == (0,)


def test_read_refusals_name_what_the_header_promised(tmp_path):
    labels = tmp_path / "labels"
    labels.write_bytes(_LABELS + _u32(1))  # 8 bytes: one label promised, none there
    with pytest.raises(IdxError) as refused:
        idx.read_bytes(labels, idx.LABELS_MAGIC)
    assert str(refused.value) == f"{labels}: truncated: 8 bytes, the header promises 1 labels (9 bytes); {FIX}."
    labels.write_bytes(_LABELS + _u32(3) + b"\1")  # the count is read from the header only, not the labels after it
    with pytest.raises(IdxError) as refused:
        idx.read_bytes(labels, idx.LABELS_MAGIC)
    assert str(refused.value) == f"{labels}: truncated: 9 bytes, the header promises 3 labels (11 bytes); {FIX}."
    labels.write_bytes(_LABELS + _u32(2**24 + 1) + b"\1")  # refused before reading: its highest byte counts too
    with pytest.raises(IdxError) as refused:
        idx.read_bytes(labels, idx.LABELS_MAGIC)
    assert str(refused.value) == (
        f"{labels}: the header promises 16,777,217 items, more than the 100,000 a Fashion-MNIST file can hold; {FIX}."
    )
    labels.write_bytes(_LABELS + _u32(idx.MAX_EXAMPLES) + bytes(idx.MAX_EXAMPLES))  # the most a file may hold
    assert len(idx.read_bytes(labels, idx.LABELS_MAGIC)) == 8 + idx.MAX_EXAMPLES
    images = tmp_path / "images"
    images.write_bytes(_IMAGES + _u32(2, 28, 28) + bytes(784))
    with pytest.raises(IdxError) as refused:
        idx.read_bytes(images)
    assert str(refused.value) == (
        f"{images}: truncated: 800 bytes, the header promises 2 images of 28x28 (1584 bytes); {FIX}."
    )


def test_a_split_is_read_for_the_kind_each_file_must_be(tmp_path):
    """A labels file holding (truncated) images is named as the wrong kind, read no further than its header."""
    test_images, test_labels = idx.FILENAMES["test"]
    for name in idx.SHA256:
        (tmp_path / name).write_bytes(
            idx_images(np.zeros((1, 28, 28))) if "images" in name else idx_labels(np.zeros(1))
        )
    (tmp_path / test_labels).write_bytes(_IMAGES + _u32(5, 28, 28) + bytes(784))
    with pytest.raises(IdxError) as refused:
        idx.read_split(tmp_path, "test", verify=False)
    assert str(refused.value) == (
        f"{tmp_path / test_labels}: bad magic number 2051 (0x00000803), expected 2049 for labels (an images file?); "
        f"{FIX}."
    )
    for name in idx.FILENAMES["test"]:
        (tmp_path / name).write_bytes(
            idx_images(np.zeros((0, 28, 28))) if "images" in name else idx_labels(np.zeros(0))
        )
    with pytest.raises(IdxError) as refused:
        idx.read_split(tmp_path, "test", verify=False)
    assert str(refused.value) == f"{tmp_path / test_images} holds 0 images: a split needs at least one; {FIX}."
    with pytest.raises(IdxError) as refused:
        idx.read_split(tmp_path, "validation")
    assert str(refused.value) == "Unknown split 'validation'; choose one of train, test."
    (tmp_path / test_images).unlink()
    (tmp_path / test_labels).unlink()
    with pytest.raises(IdxError) as refused:
        idx.find_files(tmp_path)
    gz = [f"{n}.gz" for n in idx.SHA256]
    assert str(refused.value) == (
        f"{tmp_path}: missing {test_images}.gz, {test_labels}.gz; a Fashion-MNIST folder holds the four files "
        f"{', '.join(gz)} (gzip-compressed or not)."
    )


def _refusal(path, magic=None) -> str:
    with pytest.raises(IdxError) as refused:
        idx.read_bytes(path, magic)
    return str(refused.value)


def test_trailing_bytes_are_counted_up_to_a_bound_and_read_no_further(tmp_path):
    """A small gzip file can inflate to gigabytes: the reader stops 1 MiB past the promised end, and says so."""
    f = tmp_path / "labels.gz"
    f.write_bytes(gzip.compress(_LABELS + _u32(10) + bytes(10) + bytes(2 << 20)))  # 2 MiB too many
    assert _refusal(f, idx.LABELS_MAGIC) == (
        f"{f}: more than 1,048,576 unexpected trailing bytes after 10 labels (18 bytes); {FIX}."
    )
    f.write_bytes(gzip.compress(_LABELS + _u32(10) + bytes(10) + bytes(1 << 20)))  # exactly the bound: counted
    assert _refusal(f) == f"{f}: 1048576 unexpected trailing bytes after 10 labels (18 bytes); {FIX}."
    f.write_bytes(gzip.compress(_LABELS + _u32(10) + bytes(10) + bytes((1 << 20) + 1)))
    assert _refusal(f) == f"{f}: more than 1,048,576 unexpected trailing bytes after 10 labels (18 bytes); {FIX}."
    f.write_bytes(gzip.compress(_LABELS + _u32(10) + bytes(10) + bytes(100)))
    assert _refusal(f) == f"{f}: 100 unexpected trailing bytes after 10 labels (18 bytes); {FIX}."
    f.write_bytes(gzip.compress(_LABELS + _u32(8) + bytes(8) + bytes(3)))  # the header's 16 bytes are the whole file
    assert _refusal(f) == f"{f}: 3 unexpected trailing bytes after 8 labels (16 bytes); {FIX}."


def test_a_corrupt_gzip_stream_is_named(tmp_path):
    f = tmp_path / "labels.gz"
    data = bytearray(gzip.compress(_LABELS + _u32(1000) + bytes(range(250)) * 4))
    data[10] = 0b111  # the first deflate block: final, of the reserved type 3
    f.write_bytes(bytes(data))
    line = _refusal(f, idx.LABELS_MAGIC)
    assert line.startswith(f"{f}: gzip stream is corrupt (") and line.endswith(f"); {FIX}."), line


def test_image_sizes_are_read_whole_from_the_header(tmp_path):
    """Rows and columns are 4-byte counts: a highest byte that is not 0 is another size, refused."""
    f = tmp_path / "images"
    for rows, cols in ((2**24 + 28, 28), (28, 2**24 + 28)):
        f.write_bytes(_IMAGES + _u32(1, rows, cols) + bytes(784))
        assert _refusal(f, idx.IMAGES_MAGIC) == f"{f}: images are {rows}x{cols}, Fashion-MNIST images are 28x28; {FIX}."
