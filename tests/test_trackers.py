"""--report_to: Accelerate's trackers, each an extra named in a one-line error when missing, each writing under the
run's output folder. Trackio is tested for real through its local store (a fresh process each: trackio fixes its
store when first imported)."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hf_fmnist.core.config import TrainConfig
from hf_fmnist.errors import HfFmnistError
from hf_fmnist.training.loop import main as train_main

from conftest import one_error_line, synthetic_export, tiny_train_args
from tune_helpers import tiny_recipe, train_only_export, tune_args

ROOT = Path(__file__).parents[1]


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("TRACKIO_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "hf_fmnist.cli", *args], env=env, capture_output=True, text=True, timeout=600
    )


def _logged(db: Path) -> dict[str, list[dict]]:
    """Trackio's local store: each run's logged metrics, in order."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT run_name, step, metrics FROM metrics ORDER BY id").fetchall()
    out: dict[str, list[dict]] = {}
    for run, step, metrics in rows:
        out.setdefault(run, []).append({"step": step, **json.loads(metrics)})
    return out


@pytest.mark.parametrize("value", ["tensorboard", "trackio", "wandb,mlflow", "all", "comet_ml, aim,clearml,dvclive"])
def test_every_accelerate_tracker_name_and_all_are_accepted(value):
    assert TrainConfig(output_dir="o", report_to=value).report_to == value


def test_an_unknown_tracker_is_one_line():
    with pytest.raises(HfFmnistError, match="--report_to 'neptun' is not one of tensorboard, trackio, wandb"):
        TrainConfig(output_dir="o", report_to="tensorboard,neptun")


@pytest.mark.parametrize("tracker", ["wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive"])
def test_a_tracker_that_is_not_installed_names_its_extra(tmp_path, capsys, monkeypatch, tracker):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == tracker else real(name, *a))
    dataset = str(synthetic_export(tmp_path / "data"))
    out = tmp_path / "out"
    assert train_main(tiny_train_args(out, dataset, "--with_tracking", "--report_to", tracker)) == 2
    assert f"needs the '{tracker}' extra ({tracker} is not installed): pip install \"hf_fmnist[{tracker}]\"" in (
        one_error_line(capsys)
    )
    assert not out.exists()  # refused before anything was written


@pytest.mark.slow
def test_trackio_logs_a_run_in_its_local_store_under_the_output_folder(tmp_path):
    pytest.importorskip("trackio")
    dataset = str(synthetic_export(tmp_path / "data", sizes=(64, 20)))
    out = tmp_path / "out"
    result = _run(["train", *tiny_train_args(out, dataset, "--with_tracking", "--report_to", "trackio")], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    logged = _logged(out / "runs" / "trackio" / "hf_fmnist.db")  # the project's store, inside --output_dir
    results = json.loads((out / "all_results.json").read_text())
    assert list(logged) == ["out"]  # one run, named after the output folder
    assert logged["out"][-1]["eval/accuracy"] == results["eval_accuracy"]
    assert logged["out"][-1]["step"] == results["train_steps"]


@pytest.mark.slow
def test_tune_logs_each_trial_as_its_own_trackio_run(tmp_path):
    pytest.importorskip("trackio")
    pytest.importorskip("optuna")
    data = train_only_export(tmp_path / "data", train_images=100)
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"num_train_epochs": {"choices": [1]}, "label_smoothing": {"low": 0, "high": 0.2}}))
    out = tmp_path / "search"
    args = tune_args(out, data, tiny_recipe(tmp_path), "--n_trials", "2", "--space", str(space))
    result = _run(["tune", *args, "--report_to", "trackio"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    logged = _logged(out / "runs" / "trackio" / "hf_fmnist.db")
    trials = {row["trial"]: row for row in json.loads((out / "trials.json").read_text())}
    assert sorted(logged) == ["trial_0000", "trial_0001"]
    for number, row in trials.items():
        assert logged[f"trial_{number:04d}"][-1]["eval/accuracy"] == row["validation_accuracy"]


@pytest.mark.slow
def test_wandb_offline_and_mlflow_write_only_under_the_output_folder(tmp_path):
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    dataset = str(synthetic_export(tmp_path / "data", sizes=(64, 20)))
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    for name in ("MLFLOW_TRACKING_URI", "WANDB_DIR", "TRACKIO_DIR"):
        env.pop(name, None)
    args = tiny_train_args(out, dataset, "--with_tracking", "--report_to", "wandb,mlflow")
    result = subprocess.run(
        [sys.executable, "-m", "hf_fmnist.cli", "train", *args], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.listdir(cwd) == []  # nothing in the working directory (wandb's ./wandb, mlflow's ./mlruns by default)
    assert len(list((out / "runs" / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'runs' / 'mlflow' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("hf_fmnist").experiment_id])
    results = json.loads((out / "all_results.json").read_text())
    assert run.info.run_name == "out" and run.data.metrics["eval/accuracy"] == results["eval_accuracy"]
