"""benchmarks/time_to_accuracy.py: the published tables and plot use only runs of each recipe as it is defined now."""

import importlib.util
from pathlib import Path

from hf_fmnist.core import recipes

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "time_to_accuracy.py"


def _script():
    spec = importlib.util.spec_from_file_location("time_to_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(recipe: str, settings: dict | None, **extra) -> dict:
    return {"recipe": recipe, "seed": 42, "extra_args": [], "recipe_settings": settings, **extra}


def test_runs_of_an_earlier_definition_or_with_extra_flags_are_left_out():
    script = _script()
    now = script.recipe_settings("cpu-5min")
    before = {**now, "num_train_epochs": now["num_train_epochs"] + 1}
    records = [
        _record("cpu-5min", now, seed=1),
        _record("cpu-5min", before, seed=2),  # the recipe was retuned since: history, not today's result
        _record("cpu-5min", None, seed=3),  # a record from before settings were stored
        _record("cpu-5min", now, seed=4, extra_args=["--num_train_epochs", "3"]),  # not the recipe as written
        _record("cpu-15min", script.recipe_settings("cpu-15min"), seed=5),
        _record("no-such-recipe", None, seed=6),
    ]
    assert [r["seed"] for r in script.current(records)] == [1, 5]


def test_stored_settings_are_the_definition_without_its_prose_as_json_keeps_it():
    script = _script()
    settings = script.recipe_settings("h200-10s")
    recipe = recipes.RECIPES["h200-10s"]
    assert "result" not in settings and "tuned_for" not in settings
    assert settings["model_config"]["hidden_sizes"] == recipe.model_config["hidden_sizes"]
    assert settings["num_train_epochs"] == recipe.num_train_epochs and settings["random_erasing"] == 0.0
    assert script.recipe_settings("no-such-recipe") is None
