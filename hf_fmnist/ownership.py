"""Which folders hf_fmnist wrote, so that it only ever replaces or deletes its own.

A folder the package creates (a dataset export, a training output folder) gets a small hidden marker file naming
what it is. Commands that would replace a folder, or write into one, first check that it is new, empty, or marked
as the same kind; anything else is refused with one line naming the folder. Hidden files are never published, so
the marker stays local.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import HfFmnistError

MARKER = ".hf_fmnist"
EXPORT = "dataset-export"
TRAINING_OUTPUT = "training-output"
EXAMPLES = "widget-examples"  # a training output's examples/ folder
EVALUATION = "evaluation-output"
_MAX_MARKER_BYTES = 4096


def mark(folder: str | os.PathLike, kind: str, *, files: list[str] | None = None) -> None:
    """Record that hf_fmnist wrote ``folder`` as a ``kind`` folder, and which ``files`` in it are ours, if given."""
    from .atomic import write_text

    record: dict = {"written_by": "hf_fmnist", "kind": kind}
    if files is not None:
        record["files"] = sorted(files)
    write_text(Path(folder) / MARKER, json.dumps(record) + "\n")


def _record(folder: str | os.PathLike) -> dict | None:
    path = Path(folder) / MARKER
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_MARKER_BYTES:
            return None
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return saved if isinstance(saved, dict) and saved.get("written_by") == "hf_fmnist" else None


def is_marked(folder: str | os.PathLike, kind: str) -> bool:
    """True if ``folder`` carries our marker for ``kind`` (a regular file, not a link planted to look like one)."""
    saved = _record(folder)
    return saved is not None and saved.get("kind") == kind


def marked_files(folder: str | os.PathLike, kind: str) -> set[str]:
    """The plain file names that our ``kind`` marker in ``folder`` says we wrote there (none without a marker)."""
    saved = _record(folder)
    files = saved.get("files") if saved is not None and saved.get("kind") == kind else None
    if not isinstance(files, list):
        return set()
    return {f for f in files if isinstance(f, str) and f == Path(f).name and f not in ("", ".", "..", MARKER)}


def entries(folder: Path) -> list[str]:
    """Names in ``folder`` other than our marker, sorted."""
    return sorted(p.name for p in folder.iterdir() if p.name != MARKER)


def describe(names: list[str], limit: int = 5) -> str:
    from .errors import listing

    return listing(names, limit)


def check_is_folder(folder: Path, flag: str) -> None:
    """A path the user chose for a folder must be one (a link to a folder is the user's choice, and fine)."""
    from .errors import printable

    if folder.exists() and not folder.is_dir():
        raise HfFmnistError(f"{flag} {printable(str(folder))} is a file; choose a folder path that is new or empty.")


def check_writable_by(folder: Path, flag: str, kind: str, command: str, *, resume: str = "") -> None:
    """A command's output folder: new, empty, or one that ``command`` wrote before (marked ``kind``); never a folder
    of the user's files. ``resume`` ends the line where an earlier folder is also the way to go on."""
    from .errors import printable

    check_is_folder(folder, flag)
    if folder.exists() and entries(folder) and not is_marked(folder, kind):
        raise HfFmnistError(
            f"{flag} {printable(str(folder))} holds files that `{command}` did not write "
            f"({describe(entries(folder))}); pass a new or empty folder{resume}."
        )


def lock(folder: str | os.PathLike, flag: str) -> int | None:
    """Hold ``folder`` for this run (an exclusive ``flock`` on the folder itself, released by :func:`unlock` or when
    the process ends): a second run writing into it meanwhile is refused in one line instead of mixing its
    checkpoints and files with the first one's. None where the filesystem has no locks (then nothing is held)."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise HfFmnistError(
            f"{flag} {folder} is being written by another hf_fmnist run; wait for it to end, or choose another {flag}."
        ) from None
    except OSError:  # no locks on this filesystem
        os.close(fd)
        return None
    return fd


def unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the last descriptor of the open file releases its flock
