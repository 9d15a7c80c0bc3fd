"""Fashion-MNIST as a `datasets` builder: verified raw IDX files in, ``Image`` + ``ClassLabel`` Arrow tables out.

datasets >= 4 no longer runs loading scripts, so use the class directly::

    from hf_fmnist.dataset_script.hf_fmnist import FashionMnist

    builder = FashionMnist(data_dir="/usr/share/datasets/fashion-mnist")  # data_dir optional: see hf_fmnist.data.raw
    builder.download_and_prepare()
    ds = builder.as_dataset()          # DatasetDict with "train" (60,000) and "test" (10,000)

It is an ``ArrowBasedBuilder``: each yielded table holds thousands of rows whose PNG bytes were encoded in bulk
(:mod:`hf_fmnist.data.png`), instead of 70,000 per-example dicts each encoded through PIL.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import pyarrow as pa

import hf_fmnist
from hf_fmnist.data import prepare, raw

CLASS_NAMES = list(hf_fmnist.CLASS_NAMES)
TABLE_ROWS = 10_000  # rows per yielded Arrow table

DESCRIPTION = """\
Fashion-MNIST is a dataset of Zalando's article images: a training set of 60,000 examples and a test set of 10,000
examples. Each example is a 28x28 grayscale image associated with a label from 10 classes. It is intended as a
direct drop-in replacement for the original MNIST dataset for benchmarking machine learning algorithms: it shares the
same image size and the structure of training and testing splits.
"""
HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"
LICENSE = "MIT"
CITATION = """\
@article{xiao2017fashionmnist,
  author    = {Han Xiao and Kashif Rasul and Roland Vollgraf},
  title     = {Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms},
  journal   = {CoRR},
  volume    = {abs/1708.07747},
  year      = {2017},
  url       = {https://arxiv.org/abs/1708.07747},
  eprint    = {1708.07747},
  archivePrefix = {arXiv},
}
"""


@dataclass
class FashionMnistConfig(datasets.BuilderConfig):
    """``verify=False`` skips the sha256 check of the raw files (for deliberately modified copies)."""

    verify: bool = True


class FashionMnist(datasets.ArrowBasedBuilder):
    """Fashion-MNIST, ``train`` (60,000) and ``test`` (10,000), as ``image: Image()``, ``label: ClassLabel``."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = FashionMnistConfig
    BUILDER_CONFIGS = [FashionMnistConfig(name="default", version=VERSION, description="Fashion-MNIST, 28x28 gray")]
    DEFAULT_CONFIG_NAME = "default"

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=DESCRIPTION,
            features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASS_NAMES)}),
            supervised_keys=("image", "label"),
            homepage=HOMEPAGE,
            license=LICENSE,
            citation=CITATION,
        )

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        # Reading, verifying and encoding here, before any table is written, means a bad file fails the build with
        # our own error (datasets wraps errors raised while generating) and leaves no partial split behind.
        files = raw.locate(self.config.data_dir)
        splits = prepare.encode_splits(files, self.config.verify)
        return [datasets.SplitGenerator(name=name, gen_kwargs={"split": split}) for name, split in splits.items()]

    def _generate_tables(self, split: prepare.EncodedSplit):
        schema = self.info.features.arrow_schema
        for i, start in enumerate(range(0, len(split.pngs), TABLE_ROWS)):
            pngs = split.pngs[start : start + TABLE_ROWS]
            image_column = pa.StructArray.from_arrays(
                [pa.array(pngs, pa.binary()), pa.nulls(len(pngs), pa.string())], names=["bytes", "path"]
            )
            label_column = pa.array(split.labels[start : start + TABLE_ROWS])
            yield datasets.builder.Key(0, i), pa.Table.from_arrays([image_column, label_column], schema=schema)
