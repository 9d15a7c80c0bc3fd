"""Where the four raw Fashion-MNIST files come from.

In this order: an explicit ``data_dir`` (``--data-dir``); the ``HF_FMNIST_DATA_DIR`` environment variable; Debian's
``dataset-fashion-mnist`` package in ``/usr/share/datasets/fashion-mnist``; files downloaded earlier into the cache;
otherwise a download from the official mirrors into the cache (resumable, checksum-verified, atomically renamed).

>>> files = locate()                      # doctest: +SKIP
>>> files["train-images-idx3-ubyte"]      # doctest: +SKIP
PosixPath('/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz')
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from ..errors import HfFmnistError
from . import idx

ENV_DATA_DIR = "HF_FMNIST_DATA_DIR"
ENV_CACHE_DIR = "HF_FMNIST_CACHE"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
)
TIMEOUT_S = 30  # per socket operation, not per file
CHUNK_BYTES = 1 << 16
MAX_DOWNLOAD_BYTES = 64 << 20  # the largest original .gz is 26 MB: a mirror sending more is not sending it


class DownloadError(HfFmnistError):
    """No mirror could deliver a verified copy of a raw file."""


def cache_dir() -> Path:
    """``$HF_FMNIST_CACHE``, else ``$XDG_CACHE_HOME/hf_fmnist``, else ``~/.cache/hf_fmnist``."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hf_fmnist"


def locate(
    data_dir: str | os.PathLike | None = None,
    *,
    mirrors: Sequence[str] = MIRRORS,
    download_dir: str | os.PathLike | None = None,
    checksums: dict[str, str] | None = None,
    debian_dir: str | os.PathLike = DEBIAN_DIR,
) -> dict[str, Path]:
    """Paths of the four raw files (keys: the original names in :data:`idx.SHA256`), downloading if need be.

    An explicit ``data_dir`` or ``$HF_FMNIST_DATA_DIR`` must hold the files: a typo there is an error, not a silent
    fallback to another source. Files are only *found* here; :func:`idx.read_split` validates them.
    """
    if data_dir is not None:
        return idx.find_files(data_dir)
    if os.environ.get(ENV_DATA_DIR):
        folder = Path(os.environ[ENV_DATA_DIR])
        try:
            return idx.find_files(folder)
        except idx.IdxError as e:
            raise idx.IdxError(f"{e} (from ${ENV_DATA_DIR}; unset it to use the other sources)") from None
    if idx.has_files(debian_dir):
        return idx.find_files(debian_dir)
    target = Path(download_dir) if download_dir is not None else cache_dir() / "raw"
    return download(target, mirrors=mirrors, checksums=checksums)


def download(
    target: str | os.PathLike,
    *,
    mirrors: Sequence[str] = MIRRORS,
    checksums: dict[str, str] | None = None,
) -> dict[str, Path]:
    """Download the four ``.gz`` files into ``target`` unless verified copies are already there."""
    from filelock import FileLock  # a dependency of datasets; keeps two processes from appending to one .part

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target / ".lock")):
        return {name: _fetch(name, target, mirrors, checksums) for name in idx.SHA256}


def _fetch(name: str, target: Path, mirrors: Sequence[str], checksums: dict[str, str] | None) -> Path:
    final = target / f"{name}.gz"
    if final.is_file():  # only verified files are ever renamed into place
        return final
    part = target / f"{name}.gz.part"
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + f"/{name}.gz"
        try:
            _download_resumable(url, part)
            idx.verify_sha256(idx.read_bytes(part, _magic(name)), name, part, checksums)
        except idx.IdxError as e:
            part.unlink(missing_ok=True)  # a bad copy must not be resumed from
            failures.append(f"{url}: {e}")
            continue
        except (
            urllib.error.URLError,
            http.client.HTTPException,
            OSError,
        ) as e:  # the .part stays: the next attempt resumes it
            failures.append(f"{url}: {getattr(e, 'reason', None) or e}")
            continue
        os.replace(part, final)
        return final
    raise DownloadError(
        f"Could not download {name}.gz ({'; '.join(failures)}). Provide the Fashion-MNIST files in one of three "
        f"ways: pass --data-dir DIR (Python: data_dir=DIR) with the four .gz files; set ${ENV_DATA_DIR}=DIR; or "
        f"on Debian/Ubuntu run `apt-get install dataset-fashion-mnist` (files in {DEBIAN_DIR}). "
        f"Mirrors: {', '.join(MIRRORS)}."
    )


def _download_resumable(url: str, part: Path) -> None:
    """Fetch ``url`` into ``part``, continuing after the bytes already there when the server supports ranges."""
    from tqdm.auto import tqdm

    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "hf_fmnist"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to fetch: the .part is already whole
            return
        raise
    with response:
        if response.status != 206:  # the server ignored the range: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None and length.isdigit() else None
        if total is not None and total > MAX_DOWNLOAD_BYTES:
            raise idx.IdxError(
                f"{url} announces {total:,} bytes, more than the {MAX_DOWNLOAD_BYTES:,} any "
                f"Fashion-MNIST file has; not downloading it."
            )
        with (
            open(part, "ab" if have else "wb") as f,
            tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=part.name.removesuffix(".part"), leave=False
            ) as bar,
        ):
            while chunk := response.read(CHUNK_BYTES):
                have += len(chunk)
                if have > MAX_DOWNLOAD_BYTES:
                    raise idx.IdxError(
                        f"{url} sent more than {MAX_DOWNLOAD_BYTES:,} bytes, more than any "
                        f"Fashion-MNIST file has; stopped."
                    )
                f.write(chunk)
                bar.update(len(chunk))
        if total is not None and part.stat().st_size < total:
            raise urllib.error.URLError(f"connection closed after {part.stat().st_size} of {total} bytes")


def _magic(name: str) -> int:
    return idx.IMAGES_MAGIC if "-images-" in name else idx.LABELS_MAGIC
