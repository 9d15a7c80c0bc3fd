"""The real Fashion-MNIST (Debian's dataset-fashion-mnist files; CI installs them)."""

import datasets
import numpy as np

from hf_fmnist.data import idx
from hf_fmnist.data.tensors import decode, load_arrays

from conftest import REAL_DIR, real_data


@real_data
def test_export_round_trip_equals_raw_arrays(real_export):
    loaded = datasets.load_dataset(str(real_export))
    assert {split: len(ds) for split, ds in loaded.items()} == {"train": 60_000, "test": 10_000}
    for split in idx.SPLITS:
        expected = idx.read_split(REAL_DIR, split)
        pixels, labels = decode(loaded[split])
        np.testing.assert_array_equal(pixels, expected.images)
        np.testing.assert_array_equal(labels, expected.labels)
        assert np.bincount(labels).tolist() == [len(labels) // 10] * 10
    assert loaded["train"][:10]["label"] == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert loaded["test"][:10]["label"] == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]


@real_data
def test_tensor_view_of_builtin_dataset(real_export):
    images, labels = load_arrays("train")  # built by the session's export: served from the cache
    assert images.shape == (60_000, 28, 28) and images.dtype == np.uint8 and labels.dtype == np.int64
    assert abs(images.mean() / 255 - 0.2860) < 0.0005
    np.testing.assert_array_equal(images, idx.read_split(REAL_DIR, "train").images)


@real_data
def test_card_describes_the_real_data(real_export):
    text = (real_export / "README.md").read_text()
    assert "size_categories:\n- 10K<n<100K" in text
    assert "| 9 | Ankle boot | 6,000 | 1,000 |" in text
    assert idx.SHA256["train-images-idx3-ubyte"] in text
