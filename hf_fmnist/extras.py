"""Optional dependencies (setup.cfg extras): import one, or say in one line which extra installs it."""

from __future__ import annotations

import importlib

from .errors import HfFmnistError


def require(module: str, *, extra: str, command: str):
    """``import module``, or an :class:`HfFmnistError` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None) or module
        raise HfFmnistError(
            f"hf-fmnist {command} needs the '{extra}' extra ({missing} is not installed): "
            f'pip install "hf_fmnist[{extra}]"'
        ) from None


def installed_version(distribution: str, *, extra: str, command: str) -> str:
    """The installed version of ``distribution`` (without importing it), or the same error as :func:`require`."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        raise HfFmnistError(
            f"hf-fmnist {command} needs the '{extra}' extra ({distribution} is not installed): "
            f'pip install "hf_fmnist[{extra}]"'
        ) from None
