"""The training view of a split: every image as one uint8 tensor, every label as one int64 tensor.

PNGs are decoded once per split and the arrays cached next to the split's Arrow cache file, so a training run
never decodes an image again (60,000 × 28 × 28 is 47 MB: it fits on any device).

>>> images, labels = load_tensors("test")     # doctest: +SKIP
>>> images.shape, images.dtype, labels[:3]    # doctest: +SKIP
(torch.Size([10000, 28, 28]), torch.uint8, tensor([9, 2, 1]))
"""

from __future__ import annotations

import contextlib
import os
import stat
import warnings
from pathlib import Path

import numpy as np

from ..errors import HfFmnistError, listing, one_line, printable
from . import png

BUILTIN = "fashion_mnist"
CACHE_PREFIX = "hf_fmnist-tensors"
MAX_IMAGE_FILE_BYTES = 16 << 20  # one image file an Image cell points at; Fashion-MNIST's are under 1 KB
_memo: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def load_tensors(split: str = "train", dataset=None, *, data_dir=None, verify: bool = True, root=None):
    """``(images, labels)`` of one split as torch tensors: uint8 ``(N, H, W)`` and int64 ``(N,)``.

    ``dataset``: a ``datasets.DatasetDict`` (or a single ``Dataset``, then ``split`` is ignored); default: the
    built-in Fashion-MNIST (:func:`hf_fmnist.load_dataset` with ``data_dir`` and ``verify``). ``root``: the local
    folder the dataset was loaded from, the only place image cells that hold a path instead of bytes may point into.
    """
    import torch

    images, labels = load_arrays(split, dataset, data_dir=data_dir, verify=verify, root=root)
    return torch.tensor(images), torch.tensor(labels)  # copies (47 MB for train): callers may modify them


def load_arrays(split: str = "train", dataset=None, *, data_dir=None, verify: bool = True, root=None):
    """:func:`load_tensors` as numpy arrays (no torch import); read-only, shared with later calls."""
    if dataset is None:
        from .builder import load_dataset

        dataset = load_dataset(data_dir, verify=verify)
    if hasattr(dataset, "keys"):  # a DatasetDict
        if split not in dataset:
            raise HfFmnistError(f"Split {printable(split)!r} not found; this dataset has {listing(dataset)}.")
        dataset = dataset[split]
    images, labels = decode_cached(dataset, root)
    check_labels(labels, dataset, split)
    return images, labels


def check_labels(labels: np.ndarray, ds, split: str) -> None:
    """Every label must name a class: a ClassLabel column stores plain integers, -1 (datasets' "no label") or 50
    among them would fail only after training, in the confusion matrix, or as a traceback in the loss."""
    _, label_column = find_columns(ds.features)
    classes = ds.features[label_column].num_classes
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        values = np.unique(labels[bad])
        shown = listing(values)
        raise HfFmnistError(
            f"Split {printable(str(ds.split or split))!r}: {int(bad.sum()):,} label(s) of column "
            f"{printable(label_column)!r} outside 0-{classes - 1} (the {classes} class names): {shown}; fix those rows "
            f"or remove them (dataset.filter) before training or evaluating."
        )


def decode_cached(ds, root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``ds`` (a ``datasets.Dataset``) once; later calls, in this process or another, read the cache."""
    key = ds._fingerprint
    if key in _memo:
        return _memo[key]
    cache = _cache_path(ds)
    if cache is not None and cache.exists():
        with np.load(cache) as npz:
            arrays = npz["images"], npz["labels"]
    else:
        arrays = decode(ds, root)
        if cache is not None:
            _save_atomic(cache, images=arrays[0], labels=arrays[1])
    for array in arrays:
        array.flags.writeable = False  # shared by every caller in this process
    _memo[key] = arrays
    return arrays


def decode(ds, root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All images of ``ds`` as uint8 ``(N, H, W)`` gray levels and its labels as int64 ``(N,)``.

    Images are the bytes embedded in the table. A cell holding only a path is read only from inside ``root`` (the
    local dataset folder) and only if it is a regular file of sane size: a dataset from a stranger must not make us
    read ``/dev/zero`` or someone's private files.
    """
    image_column, label_column = find_columns(ds.features)
    table = ds.with_format("arrow")[:]  # honours select/shuffle indices; zero-copy otherwise
    images = table.column(image_column).combine_chunks()
    blobs = images.field("bytes").to_pylist()
    paths = images.field("path").to_pylist()
    for i, blob in enumerate(blobs):
        if blob is None:  # an Image column may point at files instead of embedding them
            blobs[i] = read_image_file(paths[i], root, f"row {i} of column {image_column!r}")
    check_decoded_size(blobs, image_column)
    try:
        pixels = png.decode_gray(blobs)
    except ValueError as e:
        raise HfFmnistError(f"Column {image_column!r}: {e}; all images must be decodable and of one size.") from None
    labels = np.array(table.column(label_column).to_numpy(zero_copy_only=False), dtype=np.int64)
    return pixels, labels


def check_decoded_size(blobs: list, image_column: str) -> None:
    """The allocation gate for decoding: ``rows × height × width`` gray bytes, held twice (the array and the torch
    copy), must fit the memory budget, judged from the first image's header before anything is decoded (10,000
    identical 640×640 PNGs are an 8.7 KB Parquet file and 8 GB once decoded and copied; 2,000 black 1000×1000 JPEGs
    were 9 GB). Every later image must have the first one's size (decoding checks that)."""
    import struct

    from ..image_limits import check_table

    first = blobs[0] if blobs else None
    if not isinstance(first, bytes):
        return
    if first[:8] == png.SIGNATURE and first[12:16] == b"IHDR":
        width, height = struct.unpack(">II", first[16:24])
    else:  # JPEG and the other formats: Pillow reads the size from the header, without decoding
        import io

        from PIL import Image, UnidentifiedImageError

        from ..image_limits import IMAGE_FORMATS

        try:
            with Image.open(io.BytesIO(first), formats=IMAGE_FORMATS) as image:
                width, height = image.size
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
            return  # not an image: decoding it says so, in its own line
    check_table(
        len(blobs) * width * height,
        f"Column {image_column!r}: {len(blobs):,} images of {width}x{height} decoded",
        bytes_each=2,
    )


def read_image_file(path: str | None, root: str | os.PathLike | None, where: str) -> bytes:
    """The bytes of an image file an ``Image`` cell points at, if it lies inside ``root``; else one clear error."""
    if path is None:
        raise HfFmnistError(f"{where} holds neither image bytes nor a path; the dataset is damaged.")
    if root is None:
        raise HfFmnistError(
            f"{where} holds no image bytes, only a path ({path!r}); hf_fmnist reads only images embedded in the "
            f"dataset, or files inside a local dataset folder. Re-export it with embedded images (`hf-fmnist build`, "
            f"or Dataset.push_to_hub, which embeds them)."
        )
    base = Path(root).resolve()
    target = (base / path).resolve()  # an absolute path stays itself; a relative one is inside the folder
    if not target.is_relative_to(base):
        raise HfFmnistError(f"{where} points at {path!r}, outside the dataset folder {base}; refused.")
    try:
        info = target.stat()
    except OSError as e:
        raise HfFmnistError(f"{where} points at {path!r}, which cannot be read ({e.strerror}).") from None
    if not stat.S_ISREG(info.st_mode):
        raise HfFmnistError(f"{where} points at {path!r}, which is not a regular file; refused.")
    if info.st_size > MAX_IMAGE_FILE_BYTES:
        raise HfFmnistError(
            f"{where} points at {path!r}, {info.st_size:,} bytes: more than the "
            f"{MAX_IMAGE_FILE_BYTES:,} an image of this dataset may have; refused."
        )
    return target.read_bytes()


def local_root(spec: str | os.PathLike | None) -> Path | None:
    """The folder a dataset spec names, if it names a local one (see :func:`open_dataset`); else None."""
    if spec is None or str(spec) == BUILTIN or not looks_local(str(spec)):
        return None
    return Path(spec).expanduser()


def looks_local(spec: str) -> bool:
    """The one rule for a local folder vs a Hub id: it exists here, or is path-shaped (``./x``, ``/x``, ``~/x``,
    ``a/b/c``); ``name`` and ``namespace/name`` are Hub ids."""
    return os.path.exists(spec) or spec.startswith((".", "/", "~")) or spec.count("/") > 1


def eval_split_of(dataset) -> str | None:
    """The split to evaluate on: ``test``, else ``validation``, else None."""
    return next((split for split in ("test", "validation") if split in dataset), None)


def class_counts(dataset) -> dict[str, np.ndarray]:
    """Examples per class for each split, from the label column alone (no image is decoded)."""
    counts = {}
    for split, ds in dataset.items():
        _, label = find_columns(ds.features)
        labels = np.asarray(ds.with_format("arrow")[:].column(label).to_numpy(zero_copy_only=False), dtype=np.int64)
        check_labels(labels, ds, split)  # -1 made bincount raise; 10 added a class the table does not show
        counts[split] = np.bincount(labels, minlength=ds.features[label].num_classes)
    return counts


def find_columns(features) -> tuple[str, str]:
    """Names of the first ``Image`` and the first ``ClassLabel`` column."""
    from datasets import ClassLabel, Image

    image = next((name for name, f in features.items() if isinstance(f, Image)), None)
    label = next((name for name, f in features.items() if isinstance(f, ClassLabel)), None)
    if image is None or label is None:
        described = listing(f"{name}: {type(f).__name__}" for name, f in features.items())
        raise HfFmnistError(
            f"Need an Image column and a ClassLabel column, found {described}; "
            f"cast them with dataset.cast_column(name, datasets.Image()) / datasets.ClassLabel(names=[...])."
        )
    return image, label


def _cache_path(ds) -> Path | None:
    files = ds.cache_files
    if not files:  # in-memory data: nothing on disk to sit next to
        return None
    return Path(files[0]["filename"]).parent / f"{CACHE_PREFIX}-{ds._fingerprint}.npz"


def _save_atomic(path: Path, *, images: np.ndarray, labels: np.ndarray) -> None:
    from ..atomic import CannotWriteError, NoSpaceError, write_with

    def savez(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: given a name, np.savez would append ".npz" to it
            np.savez(f, images=images, labels=labels)

    try:
        write_with(path, savez)
    except (OSError, NoSpaceError, CannotWriteError):  # a read-only or full cache only costs speed
        pass


def open_dataset(spec: str | os.PathLike | None = None, *, data_dir=None, verify: bool = True):
    """A ``DatasetDict`` from a spec: None or ``"fashion_mnist"`` (built in), an exported folder, or a Hub id.

    Exported folders and Hub repos load through plain ``datasets.load_dataset``, exactly as any user would. Its
    class count is checked here, as it is read (:func:`check_class_count`), before anything is built from it.
    """
    dataset = _open_dataset(spec, data_dir=data_dir, verify=verify)
    check_class_count(dataset, BUILTIN if spec is None else printable(str(spec)))
    return dataset


def check_class_count(dataset, source: str) -> None:
    """Refuse a dataset whose label column names more than ``image_limits.MAX_CLASSES`` classes (from its card, its
    Parquet files' schema metadata or a Hub repo): a card of 120,000 names trained a 120,000-class head and then
    asked for a 107 GB confusion matrix; 10⁶ names kept in the Parquet schema printed a 10⁶-row summary."""
    from datasets import ClassLabel

    from ..image_limits import check_classes

    for split, ds in dataset.items():
        for name, feature in ds.features.items():
            if isinstance(feature, ClassLabel):
                check_classes(
                    feature.num_classes, f"Dataset {source}: split {printable(split)!r}, column {printable(name)!r}"
                )


def _open_dataset(spec: str | os.PathLike | None = None, *, data_dir=None, verify: bool = True):
    if spec is None or str(spec) == BUILTIN:
        from .builder import load_dataset

        return load_dataset(data_dir, verify=verify)
    import datasets

    spec = str(spec)
    if looks_local(spec):
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise HfFmnistError(
                f"Dataset folder {folder} does not exist; pass a folder written by `hf-fmnist build`, a Hub dataset "
                f"id (namespace/name), or omit --dataset for the built-in Fashion-MNIST."
            )
        check_reads_inside(folder)
        check_parquet_classes(folder)
        try:
            with _quiet_progress(datasets):  # converting a local export into datasets' cache is not news to the user
                return datasets.load_dataset(str(folder), cache_dir=_local_cache_dir(folder))
        except Exception as e:  # datasets raises many types for unreadable folders
            raise HfFmnistError(f"Cannot load dataset folder {folder}: {one_line(e)}") from None
    try:
        return datasets.load_dataset(spec)
    except Exception as e:
        raise HfFmnistError(
            f"Cannot load dataset {spec!r} from the Hub ({type(e).__name__}: {one_line(e)}); check the id and your "
            f"network, or pass a local folder written by `hf-fmnist build`."
        ) from None


def _local_cache_dir(folder: Path) -> str:
    """Where ``datasets`` caches a local folder's tables: a folder of its own per path and per version of its files.

    ``datasets`` names a local folder's cache by the folder's base name and a hash of its card's ``configs``, not of
    its files: two folders called ``ds`` with the same card shared one cache, and the second was read as the first
    (``evaluate`` reported the other folder's test split). The key here covers the folder's path and each file's
    name, size, modification time and inode; the folder gate (:func:`check_reads_inside`) has already walked it.
    """
    import hashlib

    import datasets

    key = hashlib.sha256(str(folder.resolve()).encode())
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(f for f in filenames if not f.startswith(".")):
            info = os.stat(os.path.join(dirpath, name))
            relative = os.path.relpath(os.path.join(dirpath, name), folder)
            key.update(f"{relative}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_ino}\n".encode())
    return os.path.join(datasets.config.HF_DATASETS_CACHE, "hf_fmnist-local", key.hexdigest()[:16])


@contextlib.contextmanager
def _quiet_progress(datasets):
    """``datasets``' progress bars off for the block, unless already off (then left off)."""
    if datasets.are_progress_bars_disabled():
        yield
        return
    with warnings.catch_warnings():  # HF_DATASETS_DISABLE_PROGRESS_BARS=0 keeps them, and warns that it does
        warnings.simplefilter("ignore")
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.enable_progress_bars()


def check_reads_inside(folder: Path) -> None:
    """The folder-reading gate for a local dataset folder: everything ``datasets.load_dataset`` reads lies inside it.

    A card's ``configs`` → ``data_files`` may name any path (``/abs/other.parquet``, ``../other/*``, a URL), and a
    link below the folder may lead anywhere; either would make ``summary``, ``train`` and ``evaluate`` read files the
    user never named. Each is refused with one short line naming it.
    """
    root = folder.resolve()
    for source, pattern in _card_data_files(folder):
        if not _stays_inside(pattern):
            raise HfFmnistError(
                f"Dataset folder {folder}: its {source} names data_files {printable(pattern)[:100]!r}, outside the "
                f"folder; refused (a local dataset is read only inside its folder)."
            )
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink() and not _resolves_within(path, root):
                raise HfFmnistError(
                    f"Dataset folder {folder}: {printable(path.relative_to(folder).as_posix())[:100]} is a link "
                    f"leading out of the folder; refused (copy the file itself in, if you trust it)."
                )
            if path.exists() and not (path.is_file() or path.is_dir()):  # a FIFO would block datasets' read
                raise HfFmnistError(
                    f"Dataset folder {folder}: {printable(path.relative_to(folder).as_posix())[:100]} is not a "
                    f"regular file (a FIFO, device or socket); refused."
                )


def check_parquet_classes(folder: Path) -> None:
    """Refuse a folder whose Parquet files keep more class names in their own ``huggingface`` schema metadata than
    ``image_limits.MAX_CLASSES``, read from each file's footer before ``datasets`` builds a ClassLabel of them (a
    million names there took a minute and 800 MB to refuse after loading)."""
    import json

    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    from ..image_limits import check_classes

    for path in sorted(folder.rglob("*.parquet")):
        try:
            raw = (pq.read_schema(path).metadata or {}).get(b"huggingface")
            info = json.loads(raw) if raw else None
        except Exception:  # not Parquet, or metadata that is not JSON: datasets says so in its own words
            continue
        described = info.get("info") if isinstance(info, dict) else None
        features = described.get("features") if isinstance(described, dict) else None
        for name, feature in features.items() if isinstance(features, dict) else []:
            if not isinstance(feature, dict):
                continue
            names = feature.get("names")
            if feature.get("_type") == "ClassLabel" and isinstance(names, list):
                where = f"{printable(str(path.relative_to(folder)))[:80]}: Parquet schema metadata, column"
                check_classes(len(names), f"Dataset folder {folder}: {where} {printable(str(name))[:40]!r}")


def _card_data_files(folder: Path) -> list[tuple[str, str]]:
    """Every path pattern that the folder's metadata gives ``datasets`` (``configs`` → ``data_files`` and
    ``data_dir``), with the file naming it: the card's YAML, and ``.huggingface.yaml``, which ``datasets`` merges
    over the card's."""
    import datasets

    from .card import card_configs, check_card_classes, config_paths, read_metadata

    patterns: list[tuple[str, str]] = []
    for path in (folder / "README.md", folder / datasets.config.REPOYAML_FILENAME):
        source = "card (README.md)" if path.name == "README.md" else path.name
        metadata = read_metadata(path)
        configs = card_configs(metadata, path)  # the schema: strings where paths are, no deeper
        check_card_classes(metadata, path)
        patterns += [(source, pattern) for pattern, _ in config_paths(configs)]
    return patterns


def _stays_inside(pattern: str) -> bool:
    """A relative pattern without ``..``, ``~``, a drive or a URL scheme (``hf://``, ``https://``, ``zip::``)."""
    parts = pattern.replace("\\", "/").split("/")
    return not (pattern.startswith(("/", "~", "\\")) or ":" in pattern or ".." in parts or "" == pattern.strip())


def _resolves_within(link: Path, root: Path) -> bool:
    try:
        return link.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a loop of links
        return False
