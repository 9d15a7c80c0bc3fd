"""Atomic writes: whole files and whole folders, never through a link, and a full disk as one error line.

Commands write into folders that may come from strangers (a downloaded model folder's ``evaluation/``, a run folder
being resumed). Such a folder can hold a link named like our file, or like our temp file, pointing anywhere: writing
through it would change a file we were never given. So the temp file is created exclusively under a random name
(``tempfile.mkstemp``: ``O_CREAT | O_EXCL``, which does not follow a link), and the rename that completes the write
replaces a link at the destination instead of following it. Readers never see half a file.

Folders (a checkpoint, a dataset export) are assembled under a temp name and swapped in by :func:`replace_dir`: the
previous folder is renamed aside, the new one renamed into place, the old one deleted; a failure in between puts the
previous one back.

Modes follow the user's umask (:func:`publish`): ``mkstemp`` and ``mkdtemp`` make private (0600/0700) temp files and
folders, and so do libraries that write atomically themselves (safetensors), but what a command leaves as output
gets the mode an ordinary new file or folder gets (0644/0755 under umask 022), so that a teammate on a shared disk
can read the weights. Every write here applies it before the rename that publishes, to the whole tree of a folder.

A disk that fills up mid-write is the user's to fix, not a bug: :func:`writing` turns ``ENOSPC`` (and ``EDQUOT``),
however the writing library reports it (``OSError``, safetensors' ``SafetensorError``, pyarrow's ``OSError``), into
one :class:`NoSpaceError` line naming the filesystem and the file, under its final name; a read-only filesystem or
a folder without write permission is one :class:`CannotWriteError` line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from .errors import HfFmnistError

NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How libraries that do not keep the errno word it: Rust's io::Error ("... (os error 28)"), C's strerror
NO_SPACE_WORDS = tuple(os.strerror(n) for n in NO_SPACE_ERRNOS) + tuple(f"os error {n})" for n in NO_SPACE_ERRNOS)


class NoSpaceError(HfFmnistError):
    """The filesystem filled up (or the quota ran out) while a file was written."""

    def __init__(self, file: str | os.PathLike):
        from .errors import printable

        self.file = Path(file)
        where = mount_point(self.file)
        super().__init__(
            f"no space left on {printable(str(where))} while writing {printable(str(self.file))}; what was there "
            f"before is unchanged. Free some space there (or write elsewhere) and run again."
        )


CANNOT_WRITE_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


class CannotWriteError(HfFmnistError):
    """The place a command writes to is read-only or not ours to write."""

    def __init__(self, file: str | os.PathLike, reason: str):
        from .errors import printable

        super().__init__(
            f"cannot write {printable(str(file))} ({reason}); what was there before is unchanged. Choose a folder you "
            f"can write to."
        )


def is_no_space(error: BaseException | None) -> bool:
    """Whether ``error``, or an exception it was raised from, says the filesystem is full."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in NO_SPACE_ERRNOS:
            return True
        if any(words in str(error) for words in NO_SPACE_WORDS):
            return True
        error = error.__cause__ or error.__context__
    return False


def mount_point(path: str | os.PathLike) -> Path:
    """The mount point of the filesystem ``path`` is (or would be) on: what "no space left on ..." names."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


@contextlib.contextmanager
def writing(file: str | os.PathLike, staging: str | os.PathLike | None = None):
    """Turn a full disk inside the block into :class:`NoSpaceError` for ``file``, and a place that cannot be written
    (a read-only filesystem, no permission) into :class:`CannotWriteError`: the user's to fix, in one line.

    ``staging``: the temp folder the block writes into, standing for the folder ``file``; an error naming a file in
    it (``OSError.filename``) is reported under that file's final name in ``file``.
    """
    try:
        yield
    except BaseException as e:
        if isinstance(e, OSError) and e.errno in CANNOT_WRITE_ERRNOS:
            raise CannotWriteError(file, e.strerror or str(e)) from None
        if not isinstance(e, NoSpaceError) and not is_no_space(e):
            raise
        name = e.file if isinstance(e, NoSpaceError) else getattr(e, "filename", None)
        final = None
        if staging is not None and name:
            with contextlib.suppress(ValueError):
                final = Path(file) / Path(os.path.abspath(name)).relative_to(os.path.abspath(staging))
        if final is None and isinstance(e, NoSpaceError):
            raise  # it already names its file, more precisely than ``file``
        raise NoSpaceError(final or file) from None


def umask() -> int:
    """The process's umask, read without changing it (``/proc/self/status``; else set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def publish(path: str | os.PathLike) -> Path:
    """Give ``path``, and everything under it if it is a folder, the mode a new file (0666) or folder (0777) gets
    under the umask: the one rule for output modes. Links are not followed, and nothing else is touched: call it only
    on what the command itself wrote (a temp file or folder about to be renamed into place)."""
    path = Path(path)
    mask = umask()
    file_mode, dir_mode = 0o666 & ~mask, 0o777 & ~mask
    if path.is_symlink():
        return path
    if not path.is_dir():
        os.chmod(path, file_mode)
        return path
    os.chmod(path, dir_mode)
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        for name in dirnames:
            if not os.path.islink(os.path.join(dirpath, name)):
                os.chmod(os.path.join(dirpath, name), dir_mode)
        for name in filenames:
            if not os.path.islink(os.path.join(dirpath, name)):
                os.chmod(os.path.join(dirpath, name), file_mode)
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replace ``path`` with a regular file holding ``data`` (a link there is replaced, its target left alone)."""
    path = Path(path)
    with writing(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            publish(tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)  # ours: mkstemp created it
            raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_with(path: str | os.PathLike, writer) -> Path:
    """Replace ``path`` with what ``writer(temp_path)`` writes (safetensors' ``save_file``, a Parquet writer, ...).

    The temp file is created exclusively next to ``path`` and renamed over it once ``writer`` returns; on any
    failure it is removed, so nothing half written is ever left, under the final name or any other.
    """
    path = Path(path)
    with writing(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            writer(tmp)
            publish(tmp)  # the writer may have replaced the temp file with a private one of its own
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)  # ours: mkstemp created it
            raise
    return path


def replace_dir(new: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Move folder ``new`` to ``target``, replacing an existing ``target`` without ever leaving a half-written one.

    The previous ``target`` is renamed aside (a hidden name next to it), ``new`` renamed into place, then the old
    one deleted; if the second rename fails, the previous folder is put back. Both must be on one filesystem (make
    ``new`` next to ``target``). Modes are set by :func:`publish` first. The caller decides whether ``target`` may
    be replaced.
    """
    new, target = Path(new), Path(target)
    publish(new)  # mkdtemp's folder, and what libraries wrote into it, get the umask's modes
    if not target.exists() and not target.is_symlink():
        os.rename(new, target)
        return target
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)
    return target


def check_no_links_below(base: str | os.PathLike, folder: str | os.PathLike, what: str) -> None:
    """Refuse ``folder`` (inside ``base``) as a place for writers we do not control, such as a tracker's own files,
    if it or any folder between ``base`` and it is a link, or if anything in it is a link, not a regular file or
    folder, or a file with another hard link: such a writer opens its files by name (TensorBoard's event files,
    ``hparams.yml``) and would write through the link into someone's folder. ``base`` itself (``--output_dir``) is
    the user's choice, link or not. One line naming ``what`` and the entry; the folder may not exist yet.

    Every tracker's files go under one root (``OUTPUT_DIR/runs``): checking that root covers all of them.
    """
    import stat

    from .errors import HfFmnistError, printable

    base, folder = Path(base), Path(folder)

    def refuse(path: Path, why: str) -> HfFmnistError:
        return HfFmnistError(
            f"{what} {printable(str(path))} is {why}; refused (a run writes only into folders of its own, never "
            f"through a link). Move it away or choose another --output_dir."
        )

    path = base
    for part in folder.relative_to(base).parts:
        path = path / part
        if path.is_symlink():
            raise refuse(path, "a link")
        if not path.exists():
            return
        if not path.is_dir():
            raise refuse(path, "not a folder")
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            entry = Path(dirpath) / name
            info = entry.lstat()
            if stat.S_ISLNK(info.st_mode):
                raise refuse(entry, "a link")
            if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
                raise refuse(entry, "not a regular file")
            if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
                raise refuse(entry, "a file with another hard link")
