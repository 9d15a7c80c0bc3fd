"""Whole-file writes that are atomic and never write through a link.

Commands write into folders that may come from strangers (a downloaded model folder's ``evaluation/``, a run folder
being resumed). Such a folder can hold a link named like our file, or like our temp file, pointing anywhere: writing
through it would change a file we were never given. So the temp file is created exclusively under a random name
(``tempfile.mkstemp``: ``O_CREAT | O_EXCL``, which does not follow a link), and the rename that completes the write
replaces a link at the destination instead of following it. Readers never see half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replace ``path`` with a regular file holding ``data`` (a link there is replaced, its target left alone)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # ours: mkstemp created it
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))
