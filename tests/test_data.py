"""The uint8 tensor view and dataset resolution."""

import numpy as np
import pytest
import torch

from hf_fmnist import HfFmnistError
from hf_fmnist.data import builder
from hf_fmnist.data import tensors as data


def test_load_tensors_shapes_and_cache(synthetic):
    dataset = builder.load_dataset(synthetic.folder, verify=False)
    images, labels = data.load_tensors("train", dataset)
    assert images.dtype == torch.uint8 and images.shape == (40, 28, 28)
    assert labels.dtype == torch.int64
    np.testing.assert_array_equal(images.numpy(), synthetic.arrays["train"][0])
    cache = data._cache_path(dataset["train"])
    assert cache.exists()
    data._memo.clear()
    # a fresh process would read the cache: prove it is used by changing what decoding would give
    np.savez(cache, images=np.zeros((40, 28, 28), np.uint8), labels=np.zeros(40, np.int64))
    assert data.load_tensors("train", dataset)[0].sum() == 0


def test_selected_rows_are_respected(synthetic):
    dataset = builder.load_dataset(synthetic.folder, verify=False)
    subset = dataset["test"].select([5, 2, 7])
    images, labels = data.decode(subset)
    np.testing.assert_array_equal(images, synthetic.arrays["test"][0][[5, 2, 7]])
    np.testing.assert_array_equal(labels, synthetic.arrays["test"][1][[5, 2, 7]])


def test_unknown_split(synthetic):
    dataset = builder.load_dataset(synthetic.folder, verify=False)
    with pytest.raises(HfFmnistError, match="Split 'validation' not found; this dataset has train, test"):
        data.load_arrays("validation", dataset)


def test_missing_columns_are_explained():
    import datasets

    ds = datasets.Dataset.from_dict({"text": ["a"], "score": [1]})
    with pytest.raises(HfFmnistError, match="Need an Image column and a ClassLabel column, found text: Value"):
        data.decode(ds)


def test_open_dataset_errors(tmp_path):
    with pytest.raises(HfFmnistError, match="does not exist"):
        data.open_dataset(str(tmp_path / "missing"))
    with pytest.raises(HfFmnistError, match="from the Hub"):
        data.open_dataset("someone/not-here")  # HF_HUB_OFFLINE in the tests: fails fast
