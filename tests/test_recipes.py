"""The recipe registry: every recipe builds its stock model, flags win over recipes, the global batch divides."""

import pytest
import torch

from hf_fmnist.core import recipes
from hf_fmnist.core.config import TrainConfig
from hf_fmnist.core.models import create_model
from hf_fmnist.errors import HfFmnistError
from hf_fmnist.training.settings import choose_recipe, resolve


@pytest.mark.parametrize("name", [n for n, r in recipes.RECIPES.items() if r.model])
def test_every_recipe_builds_its_stock_model_with_its_shape(name):
    """A typo in a recipe's model_config is an error, not a silently ignored setting."""
    recipe = recipes.RECIPES[name]
    model = create_model(recipe.model, **recipe.model_config)
    assert type(model).__module__.startswith("transformers.")
    for key, value in recipe.model_config.items():
        assert getattr(model.config, key) == value
    assert model(pixel_values=torch.zeros(2, 3, 28, 28)).logits.shape == (2, 10)


def test_unknown_shape_settings_and_recipes_are_one_clear_error():
    with pytest.raises(HfFmnistError, match="RegNetConfig has no setting hiden_sizes"):
        create_model("cnn", hiden_sizes=[8])
    with pytest.raises(HfFmnistError, match="Unknown --recipe 'fast'; choose one of: cpu-5min"):
        TrainConfig(output_dir="o", recipe="fast")


def test_flags_given_win_and_the_rest_comes_from_the_recipe():
    resolved = resolve(
        TrainConfig(output_dir="o", recipe="cpu-5min", learning_rate=0.01, hflip=False), recipes.get("cpu-5min")
    )
    assert resolved.learning_rate == 0.01 and resolved.hflip is False  # given
    recipe = recipes.get("cpu-5min")
    assert resolved.num_train_epochs == recipe.num_train_epochs and resolved.recipe == "cpu-5min"
    assert resolved.pad_crop == 0 and resolved.pca_stem is True and resolved.eval_last_epochs == 2
    assert resolved.model_name_or_path == "cnn" and resolved.model_config == {}
    wide = resolve(TrainConfig(output_dir="o", recipe="h200-10s"), recipes.get("h200-10s"))
    assert wide.model_config["hidden_sizes"] == [64, 128, 256] and wide.mixed_precision == "bf16"
    other = resolve(TrainConfig(output_dir="o", recipe="h200-10s", model_name_or_path="vit"), recipes.get("h200-10s"))
    assert other.model_config == {}  # the recipe's shape belongs to its own preset


def test_the_recipe_batch_is_global_and_divides_among_processes_and_micro_steps():
    recipe = recipes.get("cpu-5min")  # 512 images per optimizer step
    for processes, accumulation, per_device in ((1, 1, 512), (2, 1, 256), (2, 2, 128), (4, 1, 128)):
        config = TrainConfig(output_dir="o", recipe="cpu-5min", gradient_accumulation_steps=accumulation)
        resolved = resolve(config, recipe, processes)
        assert resolved.per_device_train_batch_size == per_device and resolved.train_batch_size == 512
    explicit = resolve(TrainConfig(output_dir="o", per_device_train_batch_size=100), recipe, 2)
    assert explicit.train_batch_size == 200  # an explicit per-device batch keeps its per-process meaning
    with pytest.raises(HfFmnistError, match="global batch of 512 images does not divide into 3 process"):
        resolve(TrainConfig(output_dir="o"), recipe, 3)


def test_defaults_by_device_and_model():
    assert recipes.default_recipe(None, gpu=False) == "cpu-15min"
    assert recipes.default_recipe(None, gpu=True) == "h200-2min"
    assert recipes.default_recipe("vit", gpu=False) == "cpu-vit-15min"
    assert recipes.default_recipe("someone/resnet", gpu=True) == "fine-tune"
    text = recipes.help_text()
    unmeasured = sum(r.result == recipes.NOT_MEASURED for r in recipes.RECIPES.values())
    assert all(name in text for name in recipes.RECIPES) and " ".join(text.split()).count("not measured") == unmeasured


@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_every_unset_flag_takes_the_recipes_value(name):
    """A flag whose default is a value instead of None would silently override every recipe."""
    import dataclasses

    recipe = recipes.RECIPES[name]
    model = None if recipe.model else "someone/checkpoint"  # fine-tune keeps the model it is given
    resolved = resolve(TrainConfig(output_dir="o", model_name_or_path=model), recipe).to_dict()
    settings = [f.name for f in dataclasses.fields(recipe) if f.name in resolved and f.name != "model_config"]
    assert len(settings) >= 14  # every setting a recipe fills, not a lucky few
    assert {f: resolved[f] for f in settings} == {f: getattr(recipe, f) for f in settings}


def test_onecycle_warms_up_over_a_quarter_of_all_steps():
    from hf_fmnist.training.settings import schedule

    config = TrainConfig(output_dir="o")
    assert schedule(config, 4, 10) == {
        "max_train_steps": 40,
        "num_train_epochs": 4,
        "steps_per_epoch": 10,
        "num_warmup_steps": 10,
    }
    assert schedule(config, 4, 10, "cosine")["num_warmup_steps"] == 0
    assert schedule(TrainConfig(output_dir="o", max_train_steps=15), 4, 10)["num_train_epochs"] == 2


@pytest.mark.parametrize("name", [n for n, r in recipes.RECIPES.items() if r.model == "cnn"])
def test_pointing_cnn_at_resnet_keeps_every_cnn_recipe_buildable(name, monkeypatch):
    """The switch issue 24 asks for is one line (models.PRESETS["cnn"]): with it, each CNN recipe, the GPU ones'
    wider shapes included, still builds a stock model. ConvNeXt has no embedding_size or downsample_in_first_stage,
    so pointing cnn at it also needs the GPU recipes' shapes rewritten: that is an error, not a silent change."""
    from hf_fmnist.core import models

    recipe = recipes.RECIPES[name]
    monkeypatch.setitem(models.PRESETS, "cnn", models.resnet)
    model = create_model("cnn", **recipe.model_config)
    assert model.config.model_type == "resnet"
    assert model(pixel_values=torch.zeros(2, 3, 28, 28)).logits.shape == (2, 10)
    monkeypatch.setitem(models.PRESETS, "cnn", models.convnext)
    if recipe.model_config:
        with pytest.raises(HfFmnistError, match="ConvNextConfig has no setting downsample_in_first_stage, embedding"):
            create_model("cnn", **recipe.model_config)


# --- recipes are data: the built-ins and a file given to --recipe go through one reader ---------------------------


@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_a_builtin_written_as_a_file_reads_back_equal(tmp_path, name):
    import json

    path = tmp_path / f"{name}-copy.json"
    path.write_text(json.dumps(recipes.to_dict(recipes.RECIPES[name])))
    assert recipes.get(str(path)) == recipes.RECIPES[name]
    assert TrainConfig(output_dir="o", recipe=str(path)).public_dict()["recipe"] == f"./{path.name}"  # no local path


def _bad(tmp_path, **change):
    import json

    data = {**recipes.to_dict(recipes.RECIPES["cpu-5min"]), **change}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))  # NaN is written as NaN, which json reads back
    return path


@pytest.mark.parametrize(
    "change, words",
    [
        ({"learnin_rate": 0.1}, "unknown recipe field 'learnin_rate'"),
        ({"learning_rate": "fast"}, "'learning_rate' must be float"),
        ({"learning_rate": float("nan")}, "'learning_rate' must be float"),
        ({"num_train_epochs": 2.5}, "'num_train_epochs' must be int"),
        ({"hflip": 1}, "'hflip' must be bool"),
        ({"name": "n" * 60_000}, "'name' must be printable text of at most 200 characters (60,000 given)"),
        ({"tuned_for": "a\x1b[2Jb"}, "'tuned_for' must be printable text"),
        ({"model": "someone/model"}, "'model' must be a preset"),
        ({"model_config": {"hidden_sizes": [10**9]}}, "model_config['hidden_sizes']"),
        ({"pad_crop": 99}, "pad_crop must be in [0, 8]"),
        ({"lr_scheduler_type": "sometimes"}, "lr_scheduler_type 'sometimes'"),
    ],
)
def test_a_bad_recipe_file_is_one_line_naming_it_and_the_field(tmp_path, change, words):
    path = _bad(tmp_path, **change)
    with pytest.raises(HfFmnistError) as e:
        choose_recipe(TrainConfig(output_dir="o", recipe=str(path)))
    assert str(path) in str(e.value) and words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("content", ["{", "[1, 2]", "x" * (70 << 10)])
def test_a_file_that_is_no_recipe_is_one_line(tmp_path, content):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(HfFmnistError, match=r"--recipe .*r\.json"):
        recipes.get(str(path))
    with pytest.raises(HfFmnistError, match="no such recipe file"):
        recipes.get(str(tmp_path / "missing.json"))
