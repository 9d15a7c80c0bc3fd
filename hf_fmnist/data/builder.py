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
    builder = make_builder(data_dir, verify=verify, cache_dir=cache_dir)
    builder.download_and_prepare()
    return builder.as_dataset()
