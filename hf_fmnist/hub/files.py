"""The publishing gate: which files of a local folder a push may upload, and the one way each is read.

Every push (dataset, model, Space) names the files hf_fmnist writes for that repo type (:data:`DATASET_FILES`,
:data:`MODEL_FILES`, the Space's own list). :func:`gather` copies each such file, once, into a private snapshot
folder through :func:`open_plain`, which accepts only a regular file reached without a link in any path component
below the folder and with a single hard link (a hard link to ``~/.cache/huggingface/token`` looks like any other
file). What a push uploads, hashes and renders its card from is that snapshot: a file swapped after the check, or a
``README.md`` that links out of the folder, can no longer put other bytes on the Hub. Everything left out is named
in one log line with the reason.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# What a training output folder publishes, each named as hf_fmnist writes it: the model, its card and what the card
# shows (training/outputs.py: the plots, examples/LABEL_NAME.png), the results and config, TensorBoard's files under
# runs/ (accelerate's tracker for the project "hf_fmnist" of training/loop.py: the event files, and hparams.yml and
# the hparams' own event file in a folder named after the time) and `hf-fmnist export`'s onnx/ files (fp32, int8 and
# fp16 models and the export record the card reads). Anything
# else (checkpoints, a user's own notes, images or temp files) stays local and is named in the log.
EXAMPLE_FILE = re.compile(r"examples/[0-9]{1,4}_[a-z0-9_]{1,100}\.png")  # f"{label}_{slug}.png", slug [a-z0-9_]
MODEL_FILES: tuple[str | re.Pattern[str], ...] = (
    "README.md",
    "config.json",
    "preprocessor_config.json",
    "model.safetensors",
    re.compile(r"model-[0-9]{5}-of-[0-9]{5}\.safetensors"),  # save_pretrained's shards
    "model.safetensors.index.json",
    "all_results.json",
    "training_config.json",
    "learning_curves.png",
    "confusion_matrix.png",
    "predictions.png",
    EXAMPLE_FILE,  # only those the examples/ folder's marker lists: see model_files
    "onnx/model.onnx",
    "onnx/model_quantized.onnx",
    "onnx/model_fp16.onnx",
    "onnx/export.json",
    re.compile(r"runs/hf_fmnist/events\.out\.tfevents\.[0-9]+\.[^/]+"),
    re.compile(r"runs/hf_fmnist/[0-9]+(\.[0-9]+)?/events\.out\.tfevents\.[0-9]+\.[^/]+"),
    re.compile(r"runs/hf_fmnist/[0-9]+(\.[0-9]+)?/hparams\.yml"),
)


def model_files(folder: Path) -> tuple[str | re.Pattern[str], ...]:
    """:data:`MODEL_FILES` for ``folder``, with the example images narrowed to the ones training wrote there (its
    ``examples/.hf_fmnist`` marker lists them): a user's own ``examples/3_dress.png`` stays local."""
    from ..ownership import EXAMPLES, marked_files

    ours = sorted(marked_files(folder / "examples", EXAMPLES))
    named = tuple(f"examples/{name}" for name in ours if EXAMPLE_FILE.fullmatch(f"examples/{name}"))
    return tuple(p for p in MODEL_FILES if p is not EXAMPLE_FILE) + named


MODEL_IGNORE = ("step_*", "epoch_*", ".*", "*/.*", "evaluation/*", "**/__pycache__/*")
# What `hf-fmnist build` writes: the card and the Parquet shards (data/<split>-NNNNN-of-NNNNN.parquet).
DATASET_FILES = ("README.md", "data/*.parquet")
DATASET_IGNORE = (".*", "*/.*")


class Refused(Exception):
    """A file the gate does not publish; the message is the reason, in a few words."""


@dataclass(frozen=True)
class LocalFile:
    path_in_repo: str
    local_path: Path  # the snapshot copy: exactly the bytes hashed here, and uploaded
    size: int
    git_sha1: str  # git blob id, what the Hub reports for regular files
    sha256: str  # LFS oid, what the Hub reports for LFS files
    content: bytes | None = None  # uploaded instead of local_path's bytes (a card rendered for the repo)

    @classmethod
    def rendered(cls, path_in_repo: str, local_path: Path, content: bytes) -> LocalFile:
        sha1 = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
        return cls(path_in_repo, local_path, len(content), sha1, hashlib.sha256(content).hexdigest(), content)


def open_plain(folder: Path, rel: str) -> int:
    """A read-only descriptor of ``folder/rel``, if it is a regular file with one hard link, reached through no link
    below ``folder`` (``folder`` itself may be one: the user named it); else :class:`Refused`."""
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise Refused("not a plain relative path")
    directory = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            except OSError as e:
                raise Refused("a link in its path" if e.errno in (errno.ELOOP, errno.ENOTDIR) else e.strerror) from None
            os.close(directory)
            directory = inner
        try:  # O_NONBLOCK: a FIFO planted under a published name must not hang the push
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
        except OSError as e:
            raise Refused("a link" if e.errno == errno.ELOOP else e.strerror) from None
    finally:
        os.close(directory)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused("not a regular file")
        raise Refused(f"{info.st_nlink} hard links to one file: copy it to publish it")
    return fd


def copy_plain(folder: Path, rel: str, snapshot: Path) -> LocalFile:
    """Read ``folder/rel`` once (:func:`open_plain`) into ``snapshot/rel``, hashing what is copied."""
    fd = open_plain(folder, rel)
    target = snapshot / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    sha256, size = hashlib.sha256(), 0
    with os.fdopen(fd, "rb") as source, open(target, "xb") as copy:
        while chunk := source.read(1 << 20):
            copy.write(chunk)
            sha256.update(chunk)
            size += len(chunk)
    sha1 = hashlib.sha1(b"blob %d\0" % size)  # git's blob id starts with the size: hash our own copy again
    with open(target, "rb") as copy:
        while chunk := copy.read(1 << 20):
            sha1.update(chunk)
    return LocalFile(rel, target, size, sha1.hexdigest(), sha256.hexdigest())


def gather(
    folder: Path,
    snapshot: Path,
    *,
    include: Sequence[str | re.Pattern[str]] | None,
    ignore: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
    left_out: list[str] | None = None,
) -> dict[str, LocalFile]:
    """The files of ``folder`` to publish, each copied once into ``snapshot`` (see the module's docstring).

    ``include``: the repo type's list (glob patterns, ``*`` within one folder level, or regular expressions matching
    the whole path); None publishes any plain file (tests pushing a hand-made folder). ``ignore``: silently left out
    (hidden files, checkpoints). ``left_out``: if given, gets the path of each entry the log names (a file not
    published, a link to a folder).
    """
    files, refused = {}, []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        base = Path(dirpath)
        for name in sorted(dirnames):
            if (base / name).is_symlink():
                rel = (base / name).relative_to(folder).as_posix()
                refused.append(f"{rel} (a link to a folder)")
                if left_out is not None:
                    left_out.append(rel)
        for name in sorted(filenames):
            rel = (base / name).relative_to(folder).as_posix()
            if any(fnmatch.fnmatch(rel, pattern) for pattern in ignore):
                continue
            try:
                if include is not None and not any(matches(rel, pattern) for pattern in include):
                    raise Refused("not a file hf_fmnist writes")
                files[rel] = copy_plain(folder, rel, snapshot)
            except Refused as e:
                refused.append(f"{rel} ({e})")
                if left_out is not None:
                    left_out.append(rel)
    if refused and log is not None:
        from ..errors import printable

        log(
            f"Not publishing {len(refused)} entr{'y' if len(refused) == 1 else 'ies'} of {folder}: "
            + printable("; ".join(refused))
        )
    return dict(sorted(files.items()))


def matches(rel: str, pattern: str | re.Pattern[str]) -> bool:
    """``pattern`` matches the whole of ``rel``: a glob's ``*`` stays within one folder level (unlike fnmatch's); a
    regular expression must match all of it."""
    if isinstance(pattern, re.Pattern):
        return pattern.fullmatch(rel) is not None
    parts, wanted = rel.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, wanted))
