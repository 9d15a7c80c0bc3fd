"""A private PostgreSQL server for a test: a new cluster (Debian's `postgresql` package) on a free loopback port, in
a temp folder, stopped and removed afterwards. PostgreSQL refuses to run as root; as root the server runs as the
`postgres` user the package creates."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def server_bin() -> Path | None:
    """Debian's server binaries (/usr/lib/postgresql/VERSION/bin), the newest, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A running server; yields the URL of its ``postgres`` database (trust authentication, loopback only)."""
    binaries = server_bin()
    assert binaries is not None
    folder = Path(tempfile.mkdtemp(prefix="hf_fmnist-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # run the server as the package's postgres user, which owns the folder
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=120)

    try:
        run(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
