"""Build Fashion-MNIST with the `datasets` builder and cache it.

>>> from hf_fmnist import load_dataset
>>> ds = load_dataset()                                   # doctest: +SKIP
>>> ds["train"].features["label"].names[:2]               # doctest: +SKIP
['T-shirt/top', 'Trouser']

Writing the Hub-ready folder is :mod:`hf_fmnist.data.export`.
"""

from __future__ import annotations

import functools
import hashlib
import os
from importlib import resources
from pathlib import Path


@functools.cache
def code_hash() -> str:
    """Digest of the code that decides the built bytes; part of the cache path, so edits never serve stale data."""
    h = hashlib.sha256()
    for package, name in (("hf_fmnist.dataset_script", "hf_fmnist.py"), ("hf_fmnist.data", "png.py")):
        h.update(resources.files(package).joinpath(name).read_bytes())
    return h.hexdigest()[:16]


def make_builder(data_dir: str | os.PathLike | None = None, *, verify: bool = True, cache_dir: str | None = None):
    """The ``FashionMnist`` builder, configured like :func:`load_dataset`."""
    from ..dataset_script.hf_fmnist import FashionMnist

    kwargs: dict[str, str | bool] = (
        {} if verify else {"verify": False}
    )  # only non-defaults, so the default cache path stays stable
    if data_dir is not None:
        kwargs["data_dir"] = str(Path(data_dir).absolute())
    return FashionMnist(cache_dir=cache_dir, hash=code_hash(), **kwargs)


def load_dataset(data_dir: str | os.PathLike | None = None, *, verify: bool = True, cache_dir: str | None = None):
    """Fashion-MNIST as a ``datasets.DatasetDict`` (``train``, ``test``), built on first use and cached.

    ``data_dir``: a folder with the four raw files; default: see :func:`hf_fmnist.data.raw.locate`.
    ``verify=False`` accepts raw files whose sha256 differs from the originals.
    """
    from ..atomic import CANNOT_WRITE_ERRNOS

    check_cache_variables()
    try:
        builder = make_builder(data_dir, verify=verify, cache_dir=cache_dir)
        builder.download_and_prepare()
        return builder.as_dataset()
    except OSError as e:  # datasets creates its cache folders first thing: a read-only HF_HOME was a traceback
        if e.errno not in CANNOT_WRITE_ERRNOS:
            raise
        raise cache_error(e, cache_dir) from None


CACHE_VARIABLES = ("HF_DATASETS_CACHE", "HF_HOME", "HF_FMNIST_CACHE")


def check_cache_variables() -> None:
    """A cache variable set but empty is a path too: datasets reads ``HF_DATASETS_CACHE=`` as the current folder and
    writes its cache and lock files there. One line instead."""
    from ..errors import HfFmnistError

    for name in CACHE_VARIABLES:
        value = os.environ.get(name)
        if value is not None and not value.strip():
            raise HfFmnistError(
                f"{name} is set but empty, which would put the dataset cache in the current folder; unset it "
                f"(unset {name}) or point it at a folder."
            )


def cache_error(error: OSError, cache_dir: str | None):
    """The one line for a dataset cache that cannot be written: the folder, and the variables that move it."""
    import datasets

    from ..errors import HfFmnistError, printable
    from .raw import ENV_CACHE_DIR

    folder = error.filename or cache_dir or datasets.config.HF_DATASETS_CACHE
    return HfFmnistError(
        f"Cannot write the dataset cache {printable(str(folder))} ({error.strerror}); point HF_DATASETS_CACHE (or "
        f"HF_HOME, which holds it by default) at a writable folder; {ENV_CACHE_DIR} moves hf_fmnist's own cache of "
        f"raw files."
    )
