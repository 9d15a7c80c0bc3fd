"""Fashion-MNIST as a first-class Hugging Face package.

>>> import hf_fmnist
>>> ds = hf_fmnist.load_dataset()                    # DatasetDict: train 60,000, test 10,000   # doctest: +SKIP
>>> images, labels = hf_fmnist.load_tensors("train")  # uint8 (60000, 28, 28), int64 (60000,)   # doctest: +SKIP

Heavy dependencies (datasets, torch) are imported on first use, so ``import hf_fmnist`` and the CLI stay fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_LAZY = {
    "load_dataset": "hf_fmnist.data.builder",
    "export": "hf_fmnist.data.export",
    "load_tensors": "hf_fmnist.data.tensors",
    "HfFmnistError": "hf_fmnist.errors",
}

__all__ = ["CLASS_NAMES", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hf_fmnist' has no attribute {name!r}")
