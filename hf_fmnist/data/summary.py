"""A human-readable summary of a Fashion-MNIST ``DatasetDict``: rows, class balance, a sample grid."""

from __future__ import annotations

import os

from ..errors import printable
from .tensors import class_counts, decode, find_columns


def _cut(name: str) -> str:
    """A name from a stranger's files, at most :data:`hf_fmnist.errors.ITEM_CHARS` characters in a table cell."""
    from ..errors import ITEM_CHARS

    return name if len(name) <= ITEM_CHARS else name[: ITEM_CHARS - 1] + "…"


def format_summary(dataset) -> str:
    """Rows per split, then a class-by-split table of counts.

    Class and split names come from the dataset's own files, maybe a stranger's: they are escaped
    (:func:`hf_fmnist.errors.printable`), so a name cannot clear the terminal or forge a line of the table, and cut
    to 40 characters, so that no line of the table runs to the length of a name.
    """
    first = dataset[next(iter(dataset))]
    names = [_cut(printable(n)) for n in first.features[find_columns(first.features)[1]].names]
    counts = class_counts(dataset)
    width = max(len(n) for n in names) + 2
    lines = [
        "Rows per split: " + ", ".join(f"{_cut(printable(split))} {len(ds):,}" for split, ds in dataset.items()),
        "",
    ]
    lines.append(f"{'label':<6}{'class':<{width}}" + "".join(f"{_cut(printable(split)):>10}" for split in counts))
    for i, name in enumerate(names):
        lines.append(f"{i:<6}{name:<{width}}" + "".join(f"{int(c[i]):>10,}" for c in counts.values()))
    lines.append(f"{'':<6}{'total':<{width}}" + "".join(f"{int(c.sum()):>10,}" for c in counts.values()))
    return "\n".join(lines)


def print_summary(
    dataset, *, grid: str | os.PathLike | None = None, split: str | None = None, root: str | os.PathLike | None = None
) -> None:
    """Print :func:`format_summary`; with ``grid``, save 4 sample images per class, titled with class names.

    ``root``: the local folder the dataset came from (see :func:`hf_fmnist.data.tensors.decode`).
    """
    print(format_summary(dataset))
    if grid is None:
        return
    from ..plots import class_samples, image_grid

    split = split or next(iter(dataset))
    ds = dataset[split]
    _, label_col = find_columns(ds.features)
    head = ds.select(range(min(len(ds), 500)))  # plenty for 4 per class; avoids decoding the whole split
    images, labels = decode(head, root)
    picked, titles = class_samples(images, labels, ds.features[label_col].names)
    path = image_grid(picked, titles, grid, suptitle=f"Fashion-MNIST {split}: 4 samples per class")
    print(f"\nSaved a grid of {len(picked)} {split} images with their class names to {printable(str(path))}")


MAX_MAP_IMAGES = 20_000  # a raw-pixel map of more images is a map of the first 20,000 (UMAP's time grows fast)


def pixel_map(
    dataset,
    path: str | os.PathLike,
    *,
    method: str = "umap",
    split: str | None = None,
    root: str | os.PathLike | None = None,
) -> None:
    """Save a 2-D map of the raw pixels of ``split`` (its first :data:`MAX_MAP_IMAGES` images), coloured by class."""
    from ..errors import HfFmnistError
    from . import maps
    from .tensors import load_arrays

    split = split or next(iter(dataset))
    if split not in dataset:
        raise HfFmnistError(f"--split {split!r} not found; this dataset has {', '.join(dataset)}.")
    ds = dataset[split]
    rows = ds.select(range(min(len(ds), MAX_MAP_IMAGES)))
    images, labels = load_arrays(split, rows, root=root)
    _, label_col = find_columns(ds.features)
    names = ds.features[label_col].names
    points = maps.reduce_2d(images.reshape(len(images), -1).astype("float32"), method)
    title = f"{maps.LABELS[method]} of the raw pixels, {split} split ({len(images):,} images)"
    written = maps.scatter(points, labels, names, path, method=method, title=title)
    print(
        f"Saved a {maps.LABELS[method]} map of {len(images):,} {split} images' raw pixels to {printable(str(written))}"
    )
