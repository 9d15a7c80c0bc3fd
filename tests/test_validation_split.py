"""--validation_split_percentage: a seeded, class-stratified share of the training split is held out; the epochs
report it, and the test split is evaluated once, at the end, for the results and the model-index."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from hf_fmnist.core.config import TrainConfig
from hf_fmnist.errors import HfFmnistError
from hf_fmnist.training.loop import main as train_main
from hf_fmnist.training.loop import stratified_split

from conftest import synthetic_export, tiny_train_args


def test_the_held_out_share_is_stratified_seeded_and_disjoint():
    labels = np.repeat(np.arange(10), [30, 20, 10, 40, 30, 20, 10, 40, 30, 20])
    train, held = stratified_split(labels, 10, seed=1)
    assert np.bincount(labels[held], minlength=10).tolist() == [3, 2, 1, 4, 3, 2, 1, 4, 3, 2]  # 10% of each class
    assert sorted(np.concatenate([train, held]).tolist()) == list(range(len(labels)))  # disjoint, nothing lost
    assert train.tolist() == sorted(train.tolist()) and held.tolist() == sorted(held.tolist())  # dataset order
    again, other = stratified_split(labels, 10, seed=1)[1], stratified_split(labels, 10, seed=2)[1]
    assert again.tolist() == held.tolist() and other.tolist() != held.tolist()


@pytest.mark.parametrize("bad", [0, 100, -5])
def test_a_percentage_outside_1_to_99_is_one_line(bad):
    with pytest.raises(HfFmnistError, match="--validation_split_percentage must be 1-99"):
        TrainConfig(output_dir="o", validation_split_percentage=bad)


def test_epochs_report_the_held_out_share_and_the_test_split_is_evaluated_once(tmp_path, capsys):
    dataset = str(synthetic_export(tmp_path / "data", sizes=(160, 40)))
    out = tmp_path / "out"
    args = tiny_train_args(out, dataset, "--num_train_epochs", "2", "--eval_last_epochs", "0")
    assert train_main([*args, "--validation_split_percentage", "20"]) == 0
    printed = capsys.readouterr().out
    epochs = re.findall(r"epoch (\d)/2 .*validation accuracy [\d.]+% \((\d+) images\)", printed)
    assert not re.search(r"epoch \d/2 .*test accuracy", printed)
    results = json.loads((out / "all_results.json").read_text())
    held = results["validation_samples"]
    assert [e for e, _ in epochs] == ["1", "2"] and {n for _, n in epochs} == {str(held)}
    assert 28 <= held <= 36 and results["train_samples"] + held == 160  # 20% of each class, rounded
    assert results["eval_samples"] == 40 and results["eval_split"] == "test"  # the final results: the test split
    assert results["validation_split_percentage"] == 20 and 0 <= results["validation_accuracy"] <= 1
    assert all("validation_accuracy" in h and "eval_accuracy" not in h for h in results["history"])
    card = (out / "README.md").read_text()
    assert "20%" in card and "validation" in card.lower()
