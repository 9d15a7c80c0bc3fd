"""Dataset and model cards, rendered from the Jinja templates in ``model_card/`` through huggingface_hub."""

from __future__ import annotations

import os
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
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    from . import idx
    from .data import class_counts
    from .dataset_script.hf_fmnist import CITATION, DESCRIPTION, HOMEPAGE

    names = dataset[next(iter(dataset))].features["label"].names
    counts = class_counts(dataset)
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


DEFAULT_MODEL_REPO = "NAMESPACE/fashion-mnist-classifier"


def model_card(model, processor, results: dict, config, resolved: dict, *, repo_id: str | None = None):
    """The ``README.md`` of a model folder: model-index results on the test split, the recipe, plots, limits."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from .dataset_script.hf_fmnist import CITATION
    from .models import PRESETS

    repo_id = repo_id or config.hub_model_id or DEFAULT_MODEL_REPO
    dataset_id, dataset_name, dataset_url = _dataset_reference(config.dataset)
    base_model = None if config.model_name_or_path in PRESETS else config.model_name_or_path
    where = {"task_type": "image-classification", "task_name": "Image Classification", "dataset_type": dataset_id,
             "dataset_name": dataset_name, "dataset_split": results["eval_split"]}
    card_data = ModelCardData(
        model_name=repo_id.split("/")[-1],
        license="mit",
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["image-classification", "fashion-mnist", "hf_fmnist"],
        datasets=[dataset_id],
        metrics=["accuracy", "f1"],
        base_model=base_model if base_model and not os.path.exists(base_model) else None,
        eval_results=[
            EvalResult(**where, metric_type="accuracy", metric_name="Accuracy",
                       metric_value=round(results["eval_accuracy"], 4)),
            EvalResult(**where, metric_type="f1", metric_name="Macro F1",
                       metric_value=round(results["eval_macro_f1"], 4), metric_config="macro"),
        ],
    )
    from .loader import Preprocess

    pre = Preprocess.from_processor(processor, model.config.num_channels)
    recipe = {k: resolved[k] for k in ("num_train_epochs", "max_train_steps", "per_device_train_batch_size",
                                       "learning_rate", "weight_decay", "num_warmup_steps", "pad_crop")}
    recipe.update(optimizer="AdamW (betas 0.9, 0.99)", lr_scheduler_type=config.lr_scheduler_type,
                  label_smoothing=config.label_smoothing, hflip=config.hflip, random_erasing=config.random_erasing,
                  gradient_accumulation_steps=config.gradient_accumulation_steps, seed=config.seed)
    recipe.update({k: v for k, v in resolved.items() if k in recipe or k in ("recipe", "mixed_precision")})
    return ModelCard.from_template(
        card_data,
        template_path=template_path("model_card.md"),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        dataset_url=dataset_url,
        architecture=type(model).__name__,
        num_parameters=sum(p.numel() for p in model.parameters()),
        base_model=base_model,
        r=results,
        size=f"{pre.size[1]}×{pre.size[0]}",
        mean=", ".join(f"{m:.4f}" for m in pre.mean),
        std=", ".join(f"{s:.4f}" for s in pre.std),
        recipe=recipe,
        command_line=_command_line(config),
        citation=CITATION.strip(),
    )


def _dataset_reference(dataset: str) -> tuple[str, str, str]:
    """(Hub dataset id, display name, URL) for the card's metadata."""
    if dataset == "fashion_mnist" or os.path.exists(dataset):
        return "zalando-datasets/fashion_mnist", "Fashion-MNIST", "https://huggingface.co/datasets/zalando-datasets/fashion_mnist"
    return dataset, dataset.split("/")[-1], f"https://huggingface.co/datasets/{dataset}"


def _command_line(config) -> str:
    """The non-default flags of ``config``, secrets and machine-specific paths left out."""
    import dataclasses

    skip = {"output_dir", "hub_token", "data_dir", "resume_from_checkpoint", "push_to_hub", "hub_model_id"}
    parts = ["--output_dir out"]
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in skip or value == f.default:
            continue
        if f.name in ("dataset", "model_name_or_path") and os.path.exists(str(value)):
            parts.append(f"--{f.name} PATH")  # a folder on the training machine: meaningless to readers
            continue
        if isinstance(value, bool):
            parts.append(f"--{f.name}" if value else f"--no-{f.name}")
        else:
            parts.append(f"--{f.name} {value}")
    return " ".join(parts)
