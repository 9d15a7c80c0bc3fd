"""Shared pieces of the tune tests: a tiny learnable export without a test split, and a recipe small enough that a
trial takes seconds on 2 cores."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import synthetic_export

TINY_RECIPE = {
    "name": "tiny",
    "tuned_for": "the tests: seconds per trial",
    "result": "not measured",
    "model": "cnn",
    "model_config": {"embedding_size": 8, "hidden_sizes": [8, 16, 16], "depths": [1, 1, 1]},
    "num_train_epochs": 3,
    "train_batch_size": 32,
    "learning_rate": 0.006,
    "weight_decay": 0.05,
}


def tiny_recipe(folder: Path) -> Path:
    path = folder / "tiny.json"
    path.write_text(json.dumps(TINY_RECIPE))
    return path


def train_only_export(folder: Path, train_images: int = 200) -> Path:
    """A learnable export whose only split is train: its test file and the card's entry for it are removed."""
    export = synthetic_export(folder, sizes=(train_images, 10))
    for path in (export / "data").glob("test-*"):
        path.unlink()
    card = export / "README.md"
    text = re.sub(r"  - split: test\n    path: data/test-\*\n", "", card.read_text())
    text = re.sub(r"  - name: test\n(    .*\n)+", "", text)  # dataset_info's split sizes
    card.write_text(text)
    return export


def tune_args(out: Path, dataset: Path, recipe: Path, *extra: str) -> list[str]:
    return [
        *("--output_dir", str(out), "--dataset", str(dataset), "--recipe", str(recipe)),
        *("--validation_split_percentage", "20", "--cpu_threads", "1"),
        *extra,
    ]
