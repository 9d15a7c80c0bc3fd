"""Two `hf-fmnist tune` workers share one study through a real PostgreSQL server (Optuna's RDB storage): distinct
trials, one study. The server is Debian's `postgresql` (scripts/setup.sh installs it), started privately per test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IN_CI
from postgres_server import postgres, server_bin
from tune_helpers import tiny_recipe, train_only_export, tune_args

optuna = pytest.importorskip("optuna")


@pytest.fixture
def database():
    if server_bin() is None:
        missing = "PostgreSQL's server is not installed (apt-get install postgresql)"
        if IN_CI:
            pytest.fail(f"{missing}, and CI=true requires the shared-storage test", pytrace=False)
        pytest.skip(missing)
    pytest.importorskip("psycopg")
    with postgres() as url:
        yield url


@pytest.mark.slow
def test_two_workers_on_loopback_run_distinct_trials_of_one_study(tmp_path, database):
    data = train_only_export(tmp_path / "data", train_images=100)
    recipe = tiny_recipe(tmp_path)
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"num_train_epochs": {"choices": [1]}, "learning_rate": {"low": 1e-3, "high": 1e-2}}))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    workers = []
    for name in ("a", "b"):
        args = tune_args(tmp_path / name, data, recipe, "--n_trials", "4", "--space", str(space))
        command = [sys.executable, "-m", "hf_fmnist.cli", "tune", *args, "--storage", database, "--pruner", "none"]
        workers.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name="hf_fmnist-tiny", storage=database)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= 4 and len({t.number for t in study.trials}) == len(study.trials)
    ran = {name: {p.name for p in (tmp_path / name / "trials").iterdir() if p.is_dir()} for name in ("a", "b")}
    assert ran["a"] and ran["b"] and not ran["a"] & ran["b"]  # each worker ran trials, none ran another's
    assert ran["a"] | ran["b"] == {f"trial_{t.number:04d}" for t in study.trials}  # all of them landed in one study


def test_a_server_that_does_not_answer_is_one_line(tmp_path, database, capsys):
    from hf_fmnist.training.tune import main as tune_main

    from conftest import one_error_line

    dead = database.rsplit(":", 1)[0] + ":1/postgres"  # the same host, a port nobody listens on
    assert tune_main(tune_args(tmp_path / "o", tmp_path, tiny_recipe(tmp_path), "--storage", dead)) == 2
    assert "--storage postgresql://postgres@127.0.0.1:1/postgres cannot be opened" in one_error_line(capsys)
