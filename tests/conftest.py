"""Shared fixtures. Environment isolation happens before any Hugging Face library is imported."""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from pathlib import Path

# datasets reads its cache location at import time: keep the suite's caches out of the user's home, and make any
# attempt to reach the Hub fail fast instead of hanging on a network this machine does not have.
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="hf_fmnist-tests-"))
os.environ["HF_DATASETS_CACHE"] = str(_SESSION_TMP / "datasets")
os.environ["HF_FMNIST_CACHE"] = str(_SESSION_TMP / "hf_fmnist")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
os.environ.pop("HF_FMNIST_DATA_DIR", None)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hf_fmnist import idx, raw  # noqa: E402

REAL_DIR = raw.DEBIAN_DIR
HAVE_REAL = idx.has_files(REAL_DIR)
real_data = pytest.mark.skipif(not HAVE_REAL, reason=f"Debian's dataset-fashion-mnist is not installed ({REAL_DIR})")


def idx_images(images: np.ndarray) -> bytes:
    n, rows, cols = images.shape
    header = b"".join(x.to_bytes(4, "big") for x in (idx.IMAGES_MAGIC, n, rows, cols))
    return header + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    header = b"".join(x.to_bytes(4, "big") for x in (idx.LABELS_MAGIC, len(labels)))
    return header + labels.astype(np.uint8).tobytes()


class Synthetic:
    """A tiny Fashion-MNIST-shaped raw folder: 40 train and 20 test images, every class present."""

    def __init__(self, folder: Path, seed: int = 0, sizes=(40, 20)):
        rng = np.random.default_rng(seed)
        self.folder = folder
        self.arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.contents: dict[str, bytes] = {}
        for split, n in zip(idx.SPLITS, sizes):
            images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
            images[:, :4] = 0  # some runs, like real images, so compression paths are exercised
            labels = np.arange(n) % 10
            rng.shuffle(labels)
            self.arrays[split] = (images, labels)
            image_name, label_name = idx.FILENAMES[split]
            self.contents[image_name] = idx_images(images)
            self.contents[label_name] = idx_labels(labels)
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in self.contents.items():
            (folder / f"{name}.gz").write_bytes(gzip.compress(content, mtime=0))
        self.checksums = {name: hashlib.sha256(c).hexdigest() for name, c in self.contents.items()}

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.gz"


@pytest.fixture
def synthetic(tmp_path) -> Synthetic:
    return Synthetic(tmp_path / "raw")


@pytest.fixture(scope="session")
def real_export(tmp_path_factory) -> Path:
    """The real dataset exported once per session (about 4 s)."""
    if not HAVE_REAL:
        pytest.skip(f"Debian's dataset-fashion-mnist is not installed ({REAL_DIR})")
    from hf_fmnist.builder import export

    return export(tmp_path_factory.mktemp("real") / "fashion_mnist")
