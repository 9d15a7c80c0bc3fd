"""Weights that cannot be used: any NaN or infinite value in a model, a state dict or a safetensors file.

A run that diverged (``--learning_rate inf`` trained to ``loss nan``) wrote a NaN model and a card claiming its
accuracy; ``push-model``, the card writer, training's final write and export refuse such weights with one line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..errors import HfFmnistError, listing


def check_finite_weights(model_or_state_dict, source: str) -> None:
    """Refuse ``model_or_state_dict`` if any floating-point tensor holds a NaN or an infinity; one line naming
    ``source``, how many tensors are affected and the first few.

    ``model_or_state_dict``: a ``torch.nn.Module`` (parameters and buffers), a mapping of names to tensors, or the
    path of a safetensors file (read one tensor at a time; bound its header first with
    ``image_limits.check_safetensors_header``).
    """
    bad = [name for name, tensor in _tensors(model_or_state_dict) if not _finite(tensor)]
    if bad:
        raise HfFmnistError(
            f"{source}: {len(bad):,} weight tensor(s) hold NaN or infinite values ({listing(bad, 3)}); such a model "
            f"cannot be used or published (training diverged: lower --learning_rate and train again)."
        )


def _tensors(source) -> Iterator[tuple[str, object]]:
    if isinstance(source, (str, os.PathLike)):
        from safetensors import safe_open

        with safe_open(Path(source), framework="pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name)
    elif isinstance(source, Mapping):
        yield from source.items()
    else:  # a torch module
        yield from source.state_dict().items()


def _finite(tensor) -> bool:
    import torch

    if not isinstance(tensor, torch.Tensor) or not (tensor.is_floating_point() or tensor.is_complex()):
        return True
    return bool(torch.isfinite(tensor).all())
