"""The search space of ``hf-fmnist tune``: which settings a trial may change, over what range or choices.

A space file (YAML or JSON) maps a parameter to a range or a list of choices::

    learning_rate: {low: 1.0e-3, high: 3.0e-2, log: true}
    num_train_epochs: {low: 3, high: 9}
    hflip: {choices: [true, false]}
    model_config.hidden_sizes: {choices: [[32, 64, 128], [64, 128, 256]]}

Parameters are the recipe's fields that ``train.py`` also takes as flags (:data:`TUNABLE`), and ``model_config.KEY``
for a key of the preset's transformers config (its shape). Whole-number fields take whole-number ranges. Without a
file, :func:`default_space` derives one from the recipe.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import recipes
from ..errors import HfFmnistError

# Recipe fields a trial may change, and their kind; all of them are also train.py flags
TUNABLE: dict[str, type] = {
    "learning_rate": float,
    "weight_decay": float,
    "label_smoothing": float,
    "random_erasing": float,
    "pad_crop": int,
    "num_train_epochs": int,
    "train_batch_size": int,
    "hflip": bool,
    "zero_init_residual": bool,
    "pca_stem": bool,
    "lr_scheduler_type": str,
}
SHAPE_PREFIX = "model_config."
MAX_SPACE_BYTES = 64 << 10


@dataclass(frozen=True)
class Param:
    """One dimension: a range (``low``..``high``, ``log`` scale) or ``choices``."""

    name: str
    kind: type
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None

    def suggest(self, trial):
        """The trial's value (Optuna's categorical choices are scalars: lists travel as JSON text)."""
        if self.choices is not None:
            encoded = [json.dumps(c) for c in self.choices]
            return json.loads(trial.suggest_categorical(self.name, encoded))
        if self.kind is int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def to_dict(self) -> dict:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log}


def load(path: str | os.PathLike, base: recipes.Recipe) -> list[Param]:
    """The space in a YAML or JSON file; one line naming the file and the parameter for anything wrong in it."""
    path = Path(path).expanduser()
    where = f"--space {path}"
    try:
        if not path.is_file():
            raise HfFmnistError(f"{where}: no such file; pass a YAML or JSON search-space file.")
        if path.stat().st_size > MAX_SPACE_BYTES:
            raise HfFmnistError(f"{where}: {path.stat().st_size:,} bytes is not a search space (at most 64 KiB).")
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            from ..extras import require

            data = require("yaml", extra="tune", command="tune").safe_load(text)  # safe: no objects built
    except HfFmnistError:
        raise
    except Exception as e:  # yaml and json raise many types for a malformed file
        message = f"{where}: not a YAML or JSON search space ({type(e).__name__}: {e})"
        raise HfFmnistError(" ".join(message.split())) from None
    return parse(data, where, base)


def parse(data, where: str, base: recipes.Recipe) -> list[Param]:
    if not isinstance(data, dict) or not data:
        raise HfFmnistError(f"{where}: a search space is a non-empty mapping of parameter names to ranges or choices.")
    return [_param(str(name), spec, where, base) for name, spec in data.items()]


def _param(name: str, spec, where: str, base: recipes.Recipe) -> Param:
    kind = _kind(name, where, base)
    at = f"{where}: parameter {name!r}"
    if not isinstance(spec, dict):
        raise HfFmnistError(f"{at} must be a mapping with low/high (and log) or choices, not {json.dumps(spec)[:60]}.")
    unknown = sorted(set(spec) - {"low", "high", "log", "choices"})
    if unknown:
        raise HfFmnistError(f"{at}: unknown key {unknown[0]!r} (use low, high, log or choices).")
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise HfFmnistError(f"{at}: give either choices or low/high, not both.")
        return _choices(name, kind, spec["choices"], at)
    if kind in (bool, str):
        raise HfFmnistError(f"{at} takes choices (a list of {kind.__name__} values), not a range.")
    number = float if kind is float else int  # a model_config key's range is of whole numbers
    low: Any = spec.get("low")
    high: Any = spec.get("high")
    log = spec.get("log", False)
    for key, value in (("low", low), ("high", high)):
        if not _number(value, number):
            raise HfFmnistError(f"{at}: {key} must be a finite {number.__name__}, not {json.dumps(value)[:40]}.")
    if not isinstance(log, bool):
        raise HfFmnistError(f"{at}: log must be true or false, not {json.dumps(log)[:40]}.")
    if not low < high:
        raise HfFmnistError(f"{at}: the range [{low}, {high}] is empty or inverted; low must be below high.")
    if log and low <= 0:
        raise HfFmnistError(f"{at}: a log scale needs low > 0, not {low} (the range reaches zero or below).")
    if kind is None:
        recipes._check_shape({name[len(SHAPE_PREFIX) :]: [int(low), int(high)]}, at)
    return Param(name, number, number(low), number(high), log)


def _choices(name: str, kind, choices, at: str) -> Param:
    if not isinstance(choices, list) or not choices:
        raise HfFmnistError(f"{at}: choices must be a non-empty list, not {json.dumps(choices)[:60]}.")
    for choice in choices:
        if kind is not None and not _fits(choice, kind):
            raise HfFmnistError(
                f"{at}: choice {json.dumps(choice)[:40]} is not a {kind.__name__}; every choice must be one."
            )
        if kind is None:  # a model_config key: the recipe loader's rule for a shape value
            recipes._check_shape({name[len(SHAPE_PREFIX) :]: choice}, at)
    if len({json.dumps(c) for c in choices}) != len(choices):
        raise HfFmnistError(f"{at}: the choices repeat a value.")
    return Param(name, kind or object, choices=tuple(choices))


def _kind(name: str, where: str, base: recipes.Recipe):
    """The parameter's type: a recipe field's, or None for a model_config key (checked against the preset)."""
    if name in TUNABLE:
        return TUNABLE[name]
    if name.startswith(SHAPE_PREFIX) and base.model is not None:
        if name[len(SHAPE_PREFIX) :] in _preset_keys(base.model):
            return None
    raise HfFmnistError(
        f"{where}: unknown parameter {name!r}; tunable are {', '.join(TUNABLE)}, and model_config.KEY for a key of "
        f"the recipe's preset config."
    )


def _preset_keys(preset: str) -> set[str]:
    from ..core.models import create_model

    return set(create_model(preset).config.to_dict())


def _number(value, kind) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return kind is float or float(value).is_integer()


def _fits(value, kind) -> bool:
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind in (int, float):
        return _number(value, kind)
    return isinstance(value, kind)


def default_space(base: recipes.Recipe) -> list[Param]:
    """The space searched without ``--space``, around the recipe: learning rate ÷3..×3 and weight decay ÷4..×4 (log
    scales), label smoothing 0-0.2, random erasing 0-0.4, pad-and-crop 0-2 pixels, and epochs from half the recipe's
    to the recipe's (a recipe is tuned for a time budget: more epochs would exceed it)."""
    wd = base.weight_decay or 0.01
    return [
        Param("learning_rate", float, base.learning_rate / 3, min(base.learning_rate * 3, 10.0), log=True),
        Param("weight_decay", float, wd / 4, min(wd * 4, 10.0), log=True),
        Param("label_smoothing", float, 0.0, 0.2),
        Param("random_erasing", float, 0.0, 0.4),
        Param("pad_crop", int, 0, 2),
        *([Param("num_train_epochs", int, max(1, base.num_train_epochs // 2), base.num_train_epochs)]
          if base.num_train_epochs > 1 else []),
    ]  # fmt: skip


def describe(space: list[Param]) -> dict:
    """The space as plain data (stored with the study: a resumed study must search the same one)."""
    return {p.name: p.to_dict() for p in space}


def apply(base: recipes.Recipe, name: str, values: dict, tuned_for: str) -> recipes.Recipe:
    """``base`` with a trial's ``values``: fields replaced, model_config keys merged; read back through the recipe
    loader, so a tuned recipe obeys the same rules as any other."""
    data = recipes.to_dict(base)
    shape = dict(data["model_config"])
    for key, value in values.items():
        if key.startswith(SHAPE_PREFIX):
            shape[key[len(SHAPE_PREFIX) :]] = value
        else:
            data[key] = value
    data.update(name=name, tuned_for=tuned_for, result=recipes.NOT_MEASURED, model_config=shape)
    return recipes.from_dict(data, f"recipe {name}")
