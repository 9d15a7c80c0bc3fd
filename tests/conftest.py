"""Shared fixtures. Environment isolation happens before any Hugging Face library is imported."""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import uuid
from pathlib import Path

# huggingface_hub reads HF_ENDPOINT, and datasets its cache location, at import time: start the Hub-protocol test
# server and point every client at it (and at temp caches) before anything imports them. No test reaches the network.
from hub_server import HubServer  # noqa: E402

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="hf_fmnist-tests-"))
HUB_USER, HUB_TOKEN = "tester", "hf_testtoken0123456789abcdef"
HUB = HubServer(tokens={HUB_TOKEN: HUB_USER, "hf_othertoken0123456789abcdef": "someone-else"})
os.environ.update(
    {
        "HF_ENDPOINT": HUB.endpoint,
        "HF_HOME": str(_SESSION_TMP / "hf_home"),
        "HF_TOKEN": HUB_TOKEN,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_DATASETS_CACHE": str(_SESSION_TMP / "datasets"),
        "HF_FMNIST_CACHE": str(_SESSION_TMP / "hf_fmnist"),
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    }
)
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_FMNIST_DATA_DIR"):
    os.environ.pop(_name, None)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hf_fmnist.data import idx, raw  # noqa: E402

# Tests of the CI rule below point REAL_DIR at an empty folder to play a machine without the package.
REAL_DIR = Path(os.environ.get("HF_FMNIST_TEST_REAL_DIR", raw.DEBIAN_DIR))
# CI installs the real data; there a missing package must fail the run, or CI would pass without the real-data tests.
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
real_data = pytest.mark.real_data  # skipped without the real files; a failure under CI=true


def require_real_data() -> None:
    """Skip (or, under ``CI=true``, fail) the current test when the real Fashion-MNIST files are missing."""
    if idx.has_files(REAL_DIR):  # asked per test, not at import: mutmut's first check fails every package call
        return
    missing = f"Debian's dataset-fashion-mnist is not installed ({REAL_DIR})"
    if IN_CI:
        pytest.fail(
            f"{missing}, and CI=true requires the real-data tests: apt-get install dataset-fashion-mnist", pytrace=False
        )
    pytest.skip(missing)


def pytest_runtest_setup(item):
    if item.get_closest_marker("real_data"):
        require_real_data()


def idx_images(images: np.ndarray) -> bytes:
    n, rows, cols = images.shape
    header = b"".join(x.to_bytes(4, "big") for x in (idx.IMAGES_MAGIC, n, rows, cols))
    return header + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    header = b"".join(x.to_bytes(4, "big") for x in (idx.LABELS_MAGIC, len(labels)))
    return header + labels.astype(np.uint8).tobytes()


def class_patterns(size: int = 28) -> np.ndarray:
    """One bool ``(size, size)`` pattern per class, each a different texture or shape.

    Every pattern is unchanged by a horizontal flip and recognisable after a shift of a pixel or two, so the
    training augmentations keep each class recognisable, and a small CNN tells them apart within a few steps.
    """
    r, c = np.mgrid[:size, :size]
    centre = (size - 1) / 2
    radius = np.hypot(r - centre, c - centre)
    return np.stack(
        [
            radius < 9,  # 0: filled disc
            (radius > 6) & (radius < 10),  # 1: ring
            r % 4 < 2,  # 2: horizontal stripes
            c % 4 < 2,  # 3: vertical stripes
            (r // 2 + c // 2) % 2 == 0,  # 4: checkerboard
            (abs(r - centre) < 2) | (abs(c - centre) < 2),  # 5: plus
            abs(abs(r - centre) - abs(c - centre)) < 1.5,  # 6: X
            r < size // 2,  # 7: top half
            r >= size // 2,  # 8: bottom half
            (abs(c - centre) > 8),  # 9: two side bars
        ]
    )


class Synthetic:
    """A tiny Fashion-MNIST-shaped raw folder: 40 train and 20 test images, every class present.

    Images are learnable: each class is its own texture or shape (:func:`class_patterns`), bright on a dark noisy
    background, so a model that trains at all gets far above chance on the test split, and one whose images and
    labels were misaligned does not.
    """

    def __init__(self, folder: Path, seed: int = 0, sizes=(40, 20)):
        rng = np.random.default_rng(seed)
        patterns = class_patterns()
        self.folder = folder
        self.arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.contents: dict[str, bytes] = {}
        for split, n in zip(idx.SPLITS, sizes):
            labels = np.arange(n) % 10
            rng.shuffle(labels)
            noise = rng.integers(0, 90, size=(n, 28, 28))
            images = np.where(patterns[labels], 150 + noise, noise).astype(np.uint8)
            images[:, :2] = 0  # some runs, like real images, so compression paths are exercised
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


def synthetic_export(folder: Path, sizes=(40, 20)) -> Path:
    """A :class:`Synthetic` raw folder under ``folder/raw``, exported to ``folder/export`` (the form training reads)."""
    from hf_fmnist.data.export import export

    return export(folder / "export", data_dir=Synthetic(folder / "raw", sizes=sizes).folder, verify=False)


def unique_repo(name: str, user: str = HUB_USER) -> str:
    """A repo id no other test uses: the test Hub lives for the whole session."""
    return f"{user}/{name}-{uuid.uuid4().hex[:8]}"


def pytest_configure(config):
    import datasets

    datasets.config.USE_PARQUET_EXPORT = False  # else load_dataset asks a dataset-viewer host, with a 100 s timeout


def pytest_unconfigure(config):
    HUB.close()


@pytest.fixture
def hub() -> HubServer:
    return HUB


@pytest.fixture
def synthetic(tmp_path) -> Synthetic:
    return Synthetic(tmp_path / "raw")


@pytest.fixture(scope="session")
def real_export(tmp_path_factory) -> Path:
    """The real dataset exported once per session (about 4 s)."""
    require_real_data()
    from hf_fmnist.data.export import export

    return export(tmp_path_factory.mktemp("real") / "fashion_mnist")


def tiny_train_args(out, dataset, *extra) -> list[str]:
    """train.py arguments for one epoch of 32-image steps on a small export: seconds, for tests of what goes around
    training (folders, checkpoints, errors), not of what it learns."""
    return [
        *("--output_dir", str(out), "--dataset", dataset, "--num_train_epochs", "1"),
        *("--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "40"),
        *extra,
    ]


def one_error_line(capsys) -> str:
    """The one ``error: ...`` line a refused input must give on stderr, and no traceback."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    return errors[0]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """An untrained ``cnn`` preset saved as train.py saves one: config, safetensors weights, image processor (enough
    for loading, predicting and the gates; one per test module)."""
    from hf_fmnist.core import models

    folder = tmp_path_factory.mktemp("model") / "model"
    models.create_model("cnn").save_pretrained(folder)
    models.preset_image_processor().save_pretrained(folder)
    return folder
