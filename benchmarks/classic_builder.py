"""The reference: Fashion-MNIST built the classic way, as the original Hugging Face ``fashion_mnist`` script did.

A ``GeneratorBasedBuilder`` that yields one ``{"image": numpy array, "label": int}`` dict per example; ``datasets``
then encodes every image through PIL. Same raw files, same features, same output as ours.
"""

from __future__ import annotations

import datasets

from hf_fmnist.data import idx, raw
from hf_fmnist.dataset_script.hf_fmnist import CITATION, CLASS_NAMES, DESCRIPTION, HOMEPAGE, LICENSE


class ClassicFashionMnist(datasets.GeneratorBasedBuilder):
    VERSION = datasets.Version("1.0.0")

    def _info(self):
        return datasets.DatasetInfo(
            description=DESCRIPTION,
            features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASS_NAMES)}),
            supervised_keys=("image", "label"),
            homepage=HOMEPAGE,
            license=LICENSE,
            citation=CITATION,
        )

    def _split_generators(self, dl_manager):
        files = raw.locate(self.config.data_dir)
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"files": files, "split": split}) for split in idx.SPLITS
        ]

    def _generate_examples(self, files, split):
        arrays = idx.read_split(files, split)
        for i, (image, label) in enumerate(zip(arrays.images, arrays.labels)):
            yield i, {"image": image, "label": int(label)}
