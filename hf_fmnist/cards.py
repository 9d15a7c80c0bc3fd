"""Dataset and model cards, rendered from the Jinja templates in ``model_card/`` through huggingface_hub."""

from __future__ import annotations

from importlib import resources

TEMPLATES = "hf_fmnist.model_card"
DEFAULT_DATASET_REPO = "NAMESPACE/fashion_mnist"


def template_path(name: str) -> str:
    """Filesystem path of a card template shipped with the package."""
    return str(resources.files(TEMPLATES).joinpath(name))


def dataset_card(dataset, info, *, repo_id: str = DEFAULT_DATASET_REPO, verified: bool = True):
    """The ``README.md`` of an exported Fashion-MNIST folder: YAML as push_to_hub writes it, plus a full body.

    ``dataset`` is the ``DatasetDict``; ``info`` a ``DatasetInfo`` whose splits and sizes describe the written
    Parquet files. Class counts are computed from the labels, not assumed.
    """
    import numpy as np
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    from . import idx
    from .dataset_script.hf_fmnist import CITATION, DESCRIPTION, HOMEPAGE

    names = dataset[next(iter(dataset))].features["label"].names
    counts = {
        split: np.bincount(np.asarray(ds.data.column("label")), minlength=len(names)) for split, ds in dataset.items()
    }
    num_rows = sum(len(ds) for ds in dataset.values())
    card_data = DatasetCardData(
        pretty_name="Fashion-MNIST",
        license="mit",
        task_categories=["image-classification"],
        task_ids=["multi-class-image-classification"],
        size_categories=[_size_category(num_rows)],
        language_creators=["found"],
        annotations_creators=["expert-generated"],
        source_datasets=["original"],
        paperswithcode_id="fashion-mnist",
    )
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    data_files = [{"split": split, "path": f"data/{split}-*"} for split in dataset]
    MetadataConfigs({"default": {"data_files": data_files}}).to_dataset_card_data(card_data)
    return DatasetCard.from_template(
        card_data,
        template_path=template_path("dataset_card.md"),
        pretty_name="Fashion-MNIST",
        description=DESCRIPTION.strip(),
        repo_id=repo_id,
        first_label_name=names[int(dataset[next(iter(dataset))].data.column("label")[0].as_py())],
        splits=list(info.splits.values()),
        class_rows=[
            {"id": i, "name": name, "counts": [int(c[i]) for c in counts.values()]} for i, name in enumerate(names)
        ],
        homepage=HOMEPAGE,
        checksums=idx.SHA256 if verified else {},
        license_text="MIT, as the original release (Copyright (c) 2017 Zalando SE).",
        citation=CITATION.strip(),
    )


def _size_category(n: int) -> str:
    """The Hub's size_categories bucket for ``n`` rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    return next((label for bound, label in bounds if n < bound), "1M<n<10M")
