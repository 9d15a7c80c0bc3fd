"""hf-fmnist tune: an Optuna search of train() runs on a held-out share of the training split, never the test split;
its result is a recipe train.py takes; the study resumes; bad input is one line and leaves a study as it was."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hf_fmnist.core import recipes
from hf_fmnist.errors import HfFmnistError
from hf_fmnist.training import loop
from hf_fmnist.training.loop import main as train_main
from hf_fmnist.training.tune import TuneArgs, tune
from hf_fmnist.training.tune import main as tune_main

from conftest import one_error_line, synthetic_export
from tune_helpers import tiny_recipe, train_only_export, tune_args

optuna = pytest.importorskip("optuna")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return train_only_export(tmp_path_factory.mktemp("tune-data"))


@pytest.fixture
def recipe(tmp_path) -> Path:
    return tiny_recipe(tmp_path)


def _args(out, data, recipe, **kw) -> TuneArgs:
    base = dict(output_dir=str(out), dataset=str(data), recipe=str(recipe), validation_split_percentage=20)
    return TuneArgs(**{**base, "cpu_threads": 1, **kw})


def _study(out: Path, name: str = "hf_fmnist-tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


@pytest.mark.slow
def test_a_pruned_search_on_a_train_only_folder_writes_a_recipe_train_accepts(tmp_path, data, recipe, monkeypatch):
    from hf_fmnist.data import tensors

    opened = []
    real = tensors.load_arrays
    monkeypatch.setattr(tensors, "load_arrays", lambda split, *a, **k: opened.append(split) or real(split, *a, **k))
    out = tmp_path / "search"
    summary = tune(_args(out, data, recipe, n_trials=6))
    assert set(opened) == {"train"} and summary["data_loads"] == 1  # no test split; decoded once for 6 trials
    study = _study(out)
    states = [t.state for t in study.trials]
    assert len(states) == 6 and set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert optuna.trial.TrialState.PRUNED in states  # the median pruner stopped a weak trial early
    for t in study.trials:  # every epoch reported, scored on the same 20% held out (40 of 200 images)
        epochs = t.user_attrs["values"]["num_train_epochs"]
        pruned = t.state == optuna.trial.TrialState.PRUNED
        assert sorted(t.intermediate_values) == list(range(1, len(t.intermediate_values) + 1))
        assert (len(t.intermediate_values) < epochs) if pruned else (len(t.intermediate_values) == epochs)
        assert all(round(v * 40) == v * 40 for v in t.intermediate_values.values())
    rows = json.loads((out / "trials.json").read_text())
    assert [r["trial"] for r in rows][0] == study.best_trial.number and len(rows) == 6
    assert (out / "trials.csv").read_text().count("\n") == 7
    for name in ("optimization_history.png", "param_importances.png", "parallel_coordinate.png", "slice.png"):
        assert (out / name).read_bytes()[:8] == PNG
    best = recipes.get(str(out / "best_recipe.json"))
    values = study.best_trial.user_attrs["values"]
    assert {k: getattr(best, k) for k in values} == values and best.model_config == recipes.get(
        str(recipe)
    ).model_config
    # the printed command retrains the best settings with train.py's loader of recipes, on a folder with a test split
    assert summary["command"].startswith(f"hf-fmnist train --recipe {out / 'best_recipe.json'} ")
    with_test = synthetic_export(tmp_path / "with-test", sizes=(64, 20))
    retrain = tmp_path / "retrain"
    flags = ["--output_dir", str(retrain), "--dataset", str(with_test), "--max_train_steps", "1"]
    assert train_main(["--recipe", str(out / "best_recipe.json"), *flags]) == 0
    resolved = json.loads((retrain / "training_config.json").read_text())["resolved"]
    assert resolved["recipe"] == "tuned-tiny" and resolved["learning_rate"] == values["learning_rate"]


@pytest.mark.slow
def test_the_same_command_proposes_the_same_trials(tmp_path, data, recipe):
    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: {low: 1.0e-3, high: 3.0e-2, log: true}\nnum_train_epochs: {choices: [1]}\n")
    proposed = []
    for name in ("a", "b"):
        tune(_args(tmp_path / name, data, recipe, n_trials=2, space=str(space), pruner="none"))
        proposed.append([t.params for t in _study(tmp_path / name).trials])
    assert proposed[0] == proposed[1] and proposed[0][0] != proposed[0][1]


@pytest.mark.slow
def test_a_diverged_trial_is_recorded_failed_and_the_search_goes_on(tmp_path, data, recipe, monkeypatch):
    calls = []
    real = loop.train_epoch

    def first_diverges(run, *a, **k):
        loss, due, stop = real(run, *a, **k)
        calls.append(run.config.output_dir)
        return (math.nan if len({*calls}) == 1 else loss), due, stop

    monkeypatch.setattr(loop, "train_epoch", first_diverges)
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"num_train_epochs": {"choices": [1]}, "label_smoothing": {"low": 0, "high": 0.2}}))
    out = tmp_path / "search"
    assert tune_main(tune_args(out, data, recipe, "--n_trials", "2", "--space", str(space))) == 0
    states = [t.state.name for t in _study(out).trials]
    assert states == ["FAIL", "COMPLETE", "COMPLETE"]  # the failed one is not counted among the 2 wanted
    assert json.loads((out / "trials.json").read_text())[-1]["state"] == "fail"


@pytest.mark.slow
def test_sigterm_marks_the_trial_in_progress_failed_and_the_same_command_resumes(tmp_path, data, recipe):
    out = tmp_path / "search"
    space = tmp_path / "space.json"
    # 8 epochs: a trial lasts a second or more here, so the poll below (every 0.1 s) sees the third one running; with
    # 2 epochs (0.4 s a trial) all 4 could finish between two polls, and the signal came too late (exit 0)
    space.write_text(json.dumps({"num_train_epochs": {"choices": [8]}, "learning_rate": {"low": 1e-3, "high": 1e-2}}))
    command = [sys.executable, "-m", "hf_fmnist.cli", "tune", *tune_args(out, data, recipe, "--n_trials", "4")]
    command += ["--space", str(space), "--pruner", "none"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    worker = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and worker.poll() is None:  # stop it once 2 trials are done and a 3rd runs
        time.sleep(0.1)
        states = _states(out / "study.db")  # read-only: opening it with Optuna would race the worker creating it
        if states.count("COMPLETE") >= 2 and "RUNNING" in states:
            worker.send_signal(signal.SIGTERM)
            break
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == 75, err[-2000:]
    trials = _study(out).trials
    kept = {t.number: t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
    # the trial in progress is failed (or, had the signal come as it finished, complete): never left running
    assert len(kept) >= 2 and [t.state.name for t in trials] in (["COMPLETE"] * len(kept) + ["FAIL"], ["COMPLETE"] * 3)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    again = _study(out).trials
    assert {t.number: t.value for t in again if t.number in kept} == kept  # completed trials kept as they were
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in again) == 4


def _states(db: Path) -> list[str]:
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as connection:
            return [state for (state,) in connection.execute("SELECT state FROM trials ORDER BY number")]
    except sqlite3.OperationalError:  # no database or no table yet
        return []


# --- bad input: one line, nothing changed ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "space, words",
    [
        ({"learnin_rate": {"low": 0.1, "high": 1}}, "unknown parameter 'learnin_rate'"),
        ({"learning_rate": {"low": 0.1, "high": 0.1}}, "empty or inverted"),
        ({"weight_decay": {"low": 0.1, "high": 0.01}}, "empty or inverted"),
        ({"weight_decay": {"low": 0, "high": 0.1, "log": True}}, "log scale needs low > 0"),
        ({"hflip": {"choices": [True, "no"]}}, 'choice "no" is not a bool'),
        ({"num_train_epochs": {"choices": [1.5, 2]}}, "choice 1.5 is not a int"),
        ({"num_train_epochs": {"low": 1, "high": 2.5}}, "high must be a finite int"),
        ({"model_config.hidden_sizes": {"choices": [[8, 16, 10**9]]}}, "model_config['hidden_sizes']"),
        ({"model_config.no_such_key": {"choices": [1]}}, "unknown parameter 'model_config.no_such_key'"),
        ([], "non-empty mapping"),
    ],
)
def test_a_bad_space_file_is_one_line_naming_it_and_the_parameter(tmp_path, recipe, capsys, space, words):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space))
    out = tmp_path / "search"
    assert tune_main(tune_args(out, tmp_path / "no-data", recipe, "--space", str(path))) == 2
    line = one_error_line(capsys)
    assert str(path) in line and words in line
    assert not out.exists()  # refused before anything was written


def test_a_space_file_that_is_no_yaml_is_one_line(tmp_path, recipe, capsys):
    path = tmp_path / "space.yaml"
    path.write_text("learning_rate: [unclosed\n")
    assert tune_main(tune_args(tmp_path / "o", tmp_path, recipe, "--space", str(path))) == 2
    assert str(path) in one_error_line(capsys)


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--n_trials", "0"], "--n_trials must be a positive number"),
        (["--n_trials", "-3"], "--n_trials must be a positive number"),
        (["--timeout", "0"], "--timeout must be a positive number of seconds"),
        (["--timeout", "nan"], "--timeout must be a positive number of seconds"),
        (["--report_to", "tensorbored"], "--report_to 'tensorbored'"),
        (["--storage", "postgresql://tuner:secret@127.0.0.1:9/nowhere"], "cannot be opened"),
        (["--storage", "nonsense"], "--storage (not a database URL) cannot be opened"),
    ],
)
def test_bad_flags_are_one_line(tmp_path, recipe, capsys, flags, words):
    assert tune_main(tune_args(tmp_path / "o", tmp_path, recipe, *flags)) == 2
    line = one_error_line(capsys)
    assert words in line and "secret" not in line  # a storage URL's password is never printed


def test_a_study_of_another_recipe_or_space_is_refused_and_left_untouched(tmp_path, recipe):
    from hf_fmnist.training import space as search_space
    from hf_fmnist.training.tune import open_study

    out = tmp_path / "search"
    out.mkdir()
    base = recipes.get(str(recipe))
    args = _args(out, tmp_path, recipe)
    study = open_study(args, base, search_space.default_space(base), out)
    before = (out / "study.db").read_bytes()
    other = recipes.from_dict({**recipes.to_dict(base), "learning_rate": 0.01}, "other")
    with pytest.raises(HfFmnistError, match="searches another recipe than this command"):
        open_study(args, other, search_space.default_space(base), out)
    narrower = search_space.default_space(base)[:2]
    with pytest.raises(HfFmnistError, match="searches another space than this command"):
        open_study(args, base, narrower, out)
    assert (out / "study.db").read_bytes() == before and study.user_attrs == _study(out).user_attrs


def test_the_output_folder_must_be_new_or_a_search(tmp_path, recipe, capsys):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert tune_main(tune_args(out, tmp_path, recipe)) == 2
    assert "did not write" in one_error_line(capsys) and os.listdir(out) == ["notes.txt"]


def test_an_earlier_searchs_trials_folder_swapped_for_a_link_is_refused(tmp_path, data, recipe, capsys):
    """Review of issue 27: `trials/` of an earlier search replaced by a link to someone's folder got the next trial's
    recipe file, marker and training_config.json written there (exit 0). Refused in one line; that folder untouched."""
    from hf_fmnist import ownership
    from hf_fmnist.training.tune import TUNE_OUTPUT

    out, victim = tmp_path / "search", tmp_path / "victims"
    out.mkdir()
    victim.mkdir()
    ownership.mark(out, TUNE_OUTPUT)
    (out / "trials").symlink_to(victim)
    assert tune_main(tune_args(out, data, recipe, "--n_trials", "1")) == 2
    assert "Trial folder" in one_error_line(capsys) and os.listdir(victim) == []


def test_a_space_past_the_recipe_rules_ends_in_one_line_without_optunas_traceback(tmp_path, data, recipe):
    """Review of issue 27: epochs up to 1e15 passed the space file's check, the trial's recipe was refused, and
    Optuna's warning printed a 20-line traceback before the `error:` line. Now the one line is all of stderr."""
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"num_train_epochs": {"low": 1, "high": 10**15}}))
    command = [
        sys.executable,
        "-m",
        "hf_fmnist.cli",
        "tune",
        *tune_args(tmp_path / "s", data, recipe, "--n_trials", "1"),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([*command, "--space", str(space)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    [line] = [line for line in done.stderr.splitlines() if line.strip() and "%|" not in line]  # the bar aside
    assert line.startswith("error: ") and "num_train_epochs" in line and "Traceback" not in done.stderr


def test_a_multi_process_launch_is_refused_in_one_line(tmp_path, recipe, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert tune_main(tune_args(tmp_path / "o", tmp_path, recipe)) == 2
    assert "without torchrun" in one_error_line(capsys)


def test_without_optuna_the_error_names_the_extra(tmp_path, recipe, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    assert tune_main(tune_args(tmp_path / "o", tmp_path, recipe)) == 2
    assert 'pip install "hf_fmnist[tune]"' in one_error_line(capsys)


@pytest.mark.parametrize("name", [n for n, r in recipes.RECIPES.items() if r.model is not None])
def test_every_recipes_default_space_keeps_to_the_recipe_rules(name):
    from hf_fmnist.training import space as search_space

    base = recipes.RECIPES[name]
    params = search_space.default_space(base)
    assert {"learning_rate", "weight_decay", "label_smoothing", "random_erasing", "pad_crop"} <= {
        p.name for p in params
    }
    for param in params:  # either end of every range makes a recipe the loader accepts (it checks every range)
        assert param.low < param.high and (param.low > 0 or not param.log)
        for value in (param.low, param.high):
            tuned = search_space.apply(base, "t", {param.name: value}, "test")
            assert getattr(tuned, param.name) == value and tuned.model_config == base.model_config


def test_a_model_config_parameter_merges_into_the_recipes_shape(tmp_path, recipe):
    from hf_fmnist.training import space as search_space

    base = recipes.get(str(recipe))
    path = tmp_path / "space.yaml"
    path.write_text("model_config.hidden_sizes: {choices: [[8, 16, 32], [16, 16, 16]]}\n")
    (param,) = search_space.load(path, base)
    tuned = search_space.apply(base, "t", {param.name: [8, 16, 32]}, "test")
    assert tuned.model_config == {**base.model_config, "hidden_sizes": [8, 16, 32]}


def test_a_fine_tune_recipe_is_refused(tmp_path, capsys):
    assert tune_main(["--output_dir", str(tmp_path / "o"), "--recipe", "fine-tune"]) == 2
    assert "fine-tunes a checkpoint" in one_error_line(capsys)


def test_a_trial_left_running_by_a_crash_is_marked_failed_when_the_search_resumes(tmp_path, recipe):
    from hf_fmnist.training import space as search_space
    from hf_fmnist.training.tune import open_study

    out = tmp_path / "search"
    out.mkdir()
    base = recipes.get(str(recipe))
    args = _args(out, tmp_path, recipe)
    study = open_study(args, base, search_space.default_space(base), out)
    crashed = study.ask()  # as a process killed mid-trial leaves it: running, forever
    done = study.ask()
    study.tell(done, 0.5)
    again = open_study(args, base, search_space.default_space(base), out)
    states = {t.number: t.state.name for t in again.trials}
    assert states == {crashed.number: "FAIL", done.number: "COMPLETE"}
