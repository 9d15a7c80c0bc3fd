"""Strict reader for the IDX files Fashion-MNIST ships in (gzip-compressed or raw).

Every check failure is a one-line :class:`IdxError` naming the file, the problem and the fix. Structural checks run
before the checksum so a damaged file gets the specific diagnosis ("truncated", "bad magic") rather than only "sha256
mismatch".

>>> images, labels = read_split("/usr/share/datasets/fashion-mnist", "train")  # doctest: +SKIP
>>> images.shape, labels[:3]                                                     # doctest: +SKIP
((60000, 28, 28), array([9, 0, 0], dtype=uint8))
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import HfFmnistError

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
ROWS = COLS = 28
NUM_CLASSES = 10

SPLITS = ("train", "test")
#: The four original file names (without ``.gz``), by split.
FILENAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: sha256 of the *decompressed* originals. Mirrors re-gzip the files (Debian does), so gz digests differ.
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
NUM_EXAMPLES = {"train": 60_000, "test": 10_000}
MAX_EXAMPLES = 100_000  # per file: bounds what a hostile header can make us read (train has 60,000)
TRAILING_PROBE = 1 << 20  # surplus bytes read to report how many there are

_FIX = "delete it and download it again (or reinstall the dataset-fashion-mnist package)"


class IdxError(HfFmnistError):
    """A raw Fashion-MNIST file is missing, damaged or not what it claims to be."""


@dataclass(frozen=True)
class RawSplit:
    """One split's decoded raw arrays: images ``(N, 28, 28)`` uint8 and labels ``(N,)`` uint8."""

    images: np.ndarray
    labels: np.ndarray


def read_bytes(path: str | os.PathLike, magic: int | None = None) -> bytes:
    """The decompressed content of an IDX file; gzip is detected by its magic bytes, not by the file name.

    The file is read as a stream and never beyond what its own header promises (at most :data:`MAX_EXAMPLES`
    items): a small gzip bomb with a valid header stops after the first surplus chunk instead of filling memory.
    ``magic``: the kind of file expected (:data:`IMAGES_MAGIC`, :data:`LABELS_MAGIC`); a file of another kind is
    read no further than its header, and :func:`parse_images`/:func:`parse_labels` name the mismatch.
    """
    path = Path(path)
    with _open_stream(path) as stream:
        try:
            head = stream.read(16)
            expected = _promised_length(head, path, magic)
            if expected is None:  # not the header we expect: parse_images/parse_labels say what is wrong
                return head
            data = head[:expected] + stream.read(max(0, expected - len(head)))
            _check_length(len(data), expected, _what(head), path)
            # one byte past the probe tells "exactly TRAILING_PROBE" from "more"
            surplus = len(head) - min(len(head), expected) + len(stream.read(TRAILING_PROBE + 1))
        except EOFError:
            raise IdxError(f"{path}: gzip stream is truncated (download interrupted?); {_FIX}.") from None
        except (OSError, zlib.error) as e:
            raise IdxError(f"{path}: gzip stream is corrupt ({e}); {_FIX}.") from None
    if surplus:
        count = f"{surplus}" if surplus <= TRAILING_PROBE else f"more than {TRAILING_PROBE:,}"
        raise IdxError(f"{path}: {count} unexpected trailing bytes after {_what(head)} ({expected} bytes); {_FIX}.")
    return data


@contextlib.contextmanager
def _open_stream(path: Path):
    """A binary stream of the file's content (decompressed if it is gzip), after the checks that need no reading."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise IdxError(f"{path}: not a regular file; pass the folder holding the four Fashion-MNIST files.")
        if info.st_size == 0:
            raise IdxError(f"{path}: file is empty (0 bytes); {_FIX}.")
        f = open(path, "rb")
    except FileNotFoundError:
        raise IdxError(f"{path}: file not found.") from None
    except OSError as e:
        raise IdxError(f"{path}: cannot read ({e.strerror}); check the path and its permissions.") from None
    with f:
        start = f.read(4)
        f.seek(0)
        if start[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=f, mode="rb") as g:
                yield g
        elif path.suffix == ".gz":
            raise IdxError(f"{path}: named .gz but is not gzip data (starts with {start.hex(' ')}); {_FIX}.")
        else:
            yield f


def _promised_length(head: bytes, path, expected_magic: int | None = None) -> int | None:
    """Bytes the IDX header at the start of ``head`` promises in all; None if it is not the header expected.

    An unknown header is left to :func:`parse_images`/:func:`parse_labels`, which say exactly what is wrong.
    """
    if len(head) < 8:
        return None
    magic, count = int.from_bytes(head[:4], "big"), int.from_bytes(head[4:8], "big")
    if magic not in (IMAGES_MAGIC, LABELS_MAGIC) or expected_magic not in (None, magic):
        return None
    if count > MAX_EXAMPLES:
        raise IdxError(
            f"{path}: the header promises {count:,} items, more than the {MAX_EXAMPLES:,} a Fashion-MNIST "
            f"file can hold; {_FIX}."
        )
    if magic == LABELS_MAGIC:
        return 8 + count
    if len(head) < 16:
        return None
    rows, cols = int.from_bytes(head[8:12], "big"), int.from_bytes(head[12:16], "big")
    if (rows, cols) != (ROWS, COLS):
        raise IdxError(f"{path}: images are {rows}x{cols}, Fashion-MNIST images are {ROWS}x{COLS}; {_FIX}.")
    return 16 + count * rows * cols


def _what(head: bytes) -> str:
    """What a header promises, in words: ``60000 images of 28x28`` or ``60000 labels``."""
    if len(head) >= 8 and int.from_bytes(head[:4], "big") == LABELS_MAGIC:
        return f"{int.from_bytes(head[4:8], 'big')} labels"
    if len(head) >= 16 and int.from_bytes(head[:4], "big") == IMAGES_MAGIC:
        return f"{int.from_bytes(head[4:8], 'big')} images of {ROWS}x{COLS}"
    return "the header"


def parse_images(data: bytes, path: str | os.PathLike) -> np.ndarray:
    """Validate an IDX3 image file's bytes and return a read-only ``(N, 28, 28)`` uint8 view of them."""
    _check_magic(data, IMAGES_MAGIC, "images", path)
    if len(data) < 16:
        raise IdxError(f"{path}: header is {len(data)} bytes, an images file needs 16; {_FIX}.")
    count, rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in (4, 8, 12))
    if (rows, cols) != (ROWS, COLS):
        raise IdxError(f"{path}: images are {rows}x{cols}, Fashion-MNIST images are {ROWS}x{COLS}; {_FIX}.")
    _check_length(len(data), 16 + count * rows * cols, f"{count} images of {rows}x{cols}", path)
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def parse_labels(data: bytes, path: str | os.PathLike) -> np.ndarray:
    """Validate an IDX1 label file's bytes and return a read-only ``(N,)`` uint8 view of them."""
    _check_magic(data, LABELS_MAGIC, "labels", path)
    if len(data) < 8:
        raise IdxError(f"{path}: header is {len(data)} bytes, a labels file needs 8; {_FIX}.")
    count = int.from_bytes(data[4:8], "big")
    _check_length(len(data), 8 + count, f"{count} labels", path)
    labels = np.frombuffer(data, dtype=np.uint8, offset=8)
    if count and labels.max() >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise IdxError(f"{path}: label {labels[bad]} at index {bad} is outside 0-{NUM_CLASSES - 1}; {_FIX}.")
    return labels


def verify_sha256(data: bytes, name: str, path: str | os.PathLike, expected: dict[str, str] | None = None) -> None:
    """Compare the decompressed content of ``path`` (original file name ``name``) with its known digest."""
    expected = SHA256 if expected is None else expected
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected[name]:
        raise IdxError(
            f"{path}: sha256 of the decompressed content is {digest}, expected {expected[name]} "
            f"(the original {name}); {_FIX}, or pass verify=False / --no-verify if you modified it on purpose."
        )


def read_split(
    files: dict[str, Path] | str | os.PathLike,
    split: str,
    *,
    verify: bool = True,
    checksums: dict[str, str] | None = None,
) -> RawSplit:
    """Read and validate one split.

    ``files`` is either a folder holding the original files (``.gz`` or decompressed) or a mapping from the original
    file names (see :data:`FILENAMES`) to paths. ``checksums`` overrides :data:`SHA256` (tests use it).
    """
    if split not in FILENAMES:
        raise IdxError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    if not isinstance(files, dict):
        files = find_files(files)
    image_name, label_name = FILENAMES[split]
    image_bytes = read_bytes(files[image_name], IMAGES_MAGIC)
    label_bytes = read_bytes(files[label_name], LABELS_MAGIC)
    images = parse_images(image_bytes, files[image_name])
    labels = parse_labels(label_bytes, files[label_name])
    if len(images) != len(labels):
        raise IdxError(
            f"{files[image_name]} holds {len(images)} images but {files[label_name]} holds {len(labels)} labels; "
            f"they must come from the same release: {_FIX}."
        )
    if not len(images):  # a valid header may promise 0 items; a split without examples cannot be built or trained on
        raise IdxError(f"{files[image_name]} holds 0 images: a split needs at least one; {_FIX}.")
    if verify:
        verify_sha256(image_bytes, image_name, files[image_name], checksums)
        verify_sha256(label_bytes, label_name, files[label_name], checksums)
    return RawSplit(images=images, labels=labels)


def find_files(folder: str | os.PathLike) -> dict[str, Path]:
    """Map each original file name to its path in ``folder`` (``name.gz`` preferred over ``name``).

    Raises :class:`IdxError` listing what is missing, so a half-copied folder is reported in one go.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise IdxError(f"{folder}: not a folder; pass the folder holding the four Fashion-MNIST files.")
    found, missing = {}, []
    for name in SHA256:
        candidates = [folder / f"{name}.gz", folder / name]
        path = next((p for p in candidates if p.exists()), None)  # a FIFO or folder is refused when read
        if path is None:
            missing.append(f"{name}.gz")
        else:
            found[name] = path
    if missing:
        raise IdxError(
            f"{folder}: missing {', '.join(missing)}; a Fashion-MNIST folder holds the four files "
            f"{', '.join(n + '.gz' for n in SHA256)} (gzip-compressed or not)."
        )
    return found


def has_files(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds all four original files (valid or not)."""
    try:
        find_files(folder)
    except IdxError:
        return False
    return True


def _check_magic(data: bytes, magic: int, kind: str, path: str | os.PathLike) -> None:
    if len(data) < 4:
        raise IdxError(f"{path}: only {len(data)} bytes, too short for an IDX header; {_FIX}.")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        other = {IMAGES_MAGIC: "an images file", LABELS_MAGIC: "a labels file"}.get(found, "not an IDX file")
        raise IdxError(
            f"{path}: bad magic number {found} (0x{found:08x}), expected {magic} for {kind} ({other}?); {_FIX}."
        )


def _check_length(actual: int, expected: int, what: str, path: str | os.PathLike) -> None:
    if actual < expected:
        raise IdxError(f"{path}: truncated: {actual} bytes, the header promises {what} ({expected} bytes); {_FIX}.")
    if actual > expected:
        raise IdxError(
            f"{path}: {actual - expected} unexpected trailing bytes after {what} ({expected} bytes); {_FIX}."
        )
