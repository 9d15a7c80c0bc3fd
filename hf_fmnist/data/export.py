"""Export Fashion-MNIST as a Hub-ready folder: Parquet shards laid out as ``push_to_hub`` lays them out, and a card.

It sits above the builder (which makes the ``DatasetDict``) and the cards (which describe it), so every import points
down: ``dataset_export`` → ``cards`` → ``data`` → ``builder``.

>>> export("out/fashion_mnist")                           # doctest: +SKIP
PosixPath('/.../out/fashion_mnist')
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from .. import atomic, ownership
from ..errors import HfFmnistError
from .builder import load_dataset
from .tensors import class_counts

MAX_SHARD_BYTES = 500 << 20  # datasets' default max_shard_size for push_to_hub ("500MB")
EXPORT_FILES = ("README.md", "data")  # everything an export folder may hold, besides our marker
SHARD_NAME = re.compile(r"[A-Za-z0-9_.-]+-[0-9]{5}-of-[0-9]{5}\.parquet")


def export(
    output_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    verify: bool = True,
    cache_dir: str | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
    audit: str | os.PathLike | None = None,
) -> Path:
    """Write ``output_dir`` laid out as ``DatasetDict.push_to_hub`` lays out a repo; returns its absolute path.

    ``data/{split}-{i:05d}-of-{n:05d}.parquet`` plus a ``README.md`` dataset card. The folder is assembled in a
    sibling temp folder and renamed into place, so a failure leaves no ``output_dir`` (or the previous one intact).
    An existing ``output_dir`` is replaced only if it is empty or an earlier export. ``audit``: an ``hf-fmnist
    audit`` report folder (or its ``audit.json``) of this same data, whose counts the card shows as "Known issues".
    """
    output_dir = Path(output_dir).absolute()
    check_replaceable(output_dir)
    dataset = load_dataset(data_dir, verify=verify, cache_dir=cache_dir)
    issues = None
    if audit is not None:
        from .known_issues import read_audit
        from .tensors import load_arrays

        issues = read_audit(audit, {split: load_arrays(split, dataset) for split in dataset})
    with atomic.writing(output_dir):
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", suffix=".tmp", dir=output_dir.parent))
    try:
        with atomic.writing(output_dir, staging=tmp):  # a full disk: one line, the previous export untouched
            write_export(dataset, tmp, max_shard_bytes=max_shard_bytes, verified=verify, issues=issues)
            ownership.mark(tmp, ownership.EXPORT)
        atomic.replace_dir(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output_dir


def write_export(
    dataset, folder: Path, *, max_shard_bytes: int = MAX_SHARD_BYTES, verified: bool = True, issues: dict | None = None
) -> None:
    """Write the Parquet shards and the dataset card of ``dataset`` (a ``DatasetDict``) into ``folder``."""
    from datasets import DatasetInfo, SplitDict, SplitInfo

    from . import card

    (folder / "data").mkdir()
    info = DatasetInfo(
        config_name="default",
        features=next(iter(dataset.values())).features,
        splits=SplitDict(),
        download_size=0,
        dataset_size=0,
    )
    for split, ds in dataset.items():
        nbytes = ds._estimate_nbytes()
        num_shards = nbytes // max_shard_bytes + 1  # the same rule as push_to_hub
        for index in range(num_shards):
            path = folder / "data" / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
            ds.shard(num_shards=num_shards, index=index, contiguous=True).to_parquet(
                path, batch_size=_writer_batch_size(ds)
            )
            info.download_size += path.stat().st_size
        info.splits.add(SplitInfo(name=split, num_bytes=nbytes, num_examples=len(ds)))
        info.dataset_size += nbytes
    info.size_in_bytes = info.download_size + info.dataset_size
    card.dataset_card(dataset, info, class_counts(dataset), verified=verified, issues=issues).save(folder / "README.md")


def check_replaceable(output_dir: Path) -> None:
    """Refuse to replace anything but a new or empty folder or an earlier export: never delete a user's files.

    An earlier export is a folder carrying our marker and nothing but what :func:`write_export` writes: a user's
    notes or ``data/measurements.csv`` next to a ``README.md`` make it someone else's folder.
    """
    if output_dir.is_symlink():
        raise HfFmnistError(f"--output-dir {output_dir} is a link; pass the folder it points to, or a new path.")
    ownership.check_is_folder(output_dir, "--output-dir")
    if not output_dir.exists() or not ownership.entries(output_dir):
        return
    foreign = _foreign_entries(output_dir)
    if not ownership.is_marked(output_dir, ownership.EXPORT):
        raise HfFmnistError(
            f"--output-dir {output_dir} already holds files that `hf-fmnist build` did not write "
            f"({ownership.describe(ownership.entries(output_dir))}); it replaces only a new or empty folder or an "
            f"earlier export. Choose a new folder or remove it yourself."
        )
    if foreign:
        raise HfFmnistError(
            f"--output-dir {output_dir} is an earlier export, but now also holds other files "
            f"({ownership.describe(foreign)}); move them away or choose a new folder."
        )


def _foreign_entries(folder: Path) -> list[str]:
    """What in an export folder :func:`write_export` would not have written (relative paths)."""
    foreign = [name for name in ownership.entries(folder) if name not in EXPORT_FILES]
    for name in EXPORT_FILES:
        path = folder / name
        if path.is_symlink() or (path.exists() and path.is_dir() != (name == "data")):
            foreign.append(name)
    data = folder / "data"
    if data.is_dir() and not data.is_symlink():
        foreign += [
            f"data/{p.name}"
            for p in sorted(data.iterdir())
            if p.is_symlink() or not p.is_file() or not SHARD_NAME.fullmatch(p.name)
        ]
    return foreign


def _writer_batch_size(ds) -> int:
    """Rows per Parquet row group, as push_to_hub chooses them (small groups for image data)."""
    from datasets import arrow_writer

    by_features = (
        getattr(arrow_writer, "get_writer_batch_size_from_features", None) or arrow_writer.get_writer_batch_size
    )
    by_size = getattr(arrow_writer, "get_writer_batch_size_from_data_size", None)
    size_rule = by_size(len(ds), ds._estimate_nbytes()) if by_size else 1000
    return by_features(ds.features) or size_rule
