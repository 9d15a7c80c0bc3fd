"""Named training recipes: one registry of defaults, each tuned for a machine and a time budget.

A recipe fills every training setting that the command line leaves unset: the model preset and its shape, epochs,
the *global* batch, learning rate and schedule, augmentation, regularisation, precision and compilation. Any flag
given explicitly wins. ``--recipe NAME`` picks one; without it the device decides (:func:`default_recipe`).

A recipe's batch is global (images per optimizer step over all processes and accumulation micro-steps), so a recipe
trains the same model on 1 or N processes; its learning rate belongs to that global batch and is never rescaled.

``result`` is what was measured with the recipe exactly as written here, or "not measured": never a guess.

>>> RECIPES["cpu-5min"].model, RECIPES["cpu-5min"].train_batch_size
('cnn', 512)
>>> default_recipe(None, gpu=False), default_recipe("vit", gpu=False), default_recipe("NS/some-model", gpu=True)
('cpu-15min', 'cpu-vit-15min', 'fine-tune')
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import textwrap
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import HfFmnistError, printable

PRECISIONS = ("no", "fp16", "bf16")
SCHEDULERS = ("onecycle", "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup")
NOT_MEASURED = "not measured"
# Measured results are written in one place, per CPU and as ranges; the recipes point there
MEASURED = "measured per CPU in docs/benchmarks.md (Recipes: measured results)"


# The ranges a recipe's numbers must lie in (the flags' own, from core/config.py, and bounds on the work asked for)
_RANGES = (
    ("num_train_epochs", 1, 10_000),
    ("train_batch_size", 1, 1 << 16),
    ("learning_rate", 0, 10),
    ("weight_decay", 0, 10),
    ("label_smoothing", 0, 1),
    ("pad_crop", 0, 8),
    ("random_erasing", 0, 1),
    ("eval_last_epochs", 0, 10_000),
)


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """One named set of training defaults; the field names are the ``TrainConfig`` flags they fill."""

    name: str
    tuned_for: str  # the machine and budget it was chosen for
    result: str  # MEASURED (the numbers live in docs/benchmarks.md) or NOT_MEASURED
    model: str | None  # a preset name; None keeps --model_name_or_path (fine-tuning a checkpoint)
    model_config: dict = field(default_factory=dict)  # overrides of the preset's transformers config (its shape)
    num_train_epochs: int  # passes over the 60,000 training images
    train_batch_size: int  # GLOBAL images per optimizer step: per device × processes × accumulation steps
    learning_rate: float  # peak AdamW learning rate, for the global batch above
    weight_decay: float  # AdamW decoupled weight decay
    lr_scheduler_type: str = "onecycle"
    label_smoothing: float = 0.1
    pad_crop: int = 0  # pixels of random translation
    hflip: bool = True
    random_erasing: float = 0.0  # probability per image
    zero_init_residual: bool = False  # residual blocks start as the identity
    pca_stem: bool = False  # first convolution initialised from the principal components of image patches
    eval_last_epochs: int = 0  # evaluate after only the last N epochs; 0: after every epoch
    mixed_precision: str = "no"  # Accelerate's: no, fp16, bf16
    torch_compile: bool = False

    def __post_init__(self) -> None:
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"recipe {self.name}: mixed_precision {self.mixed_precision!r} not in {PRECISIONS}")
        if self.model is None and self.model_config:
            raise ValueError(f"recipe {self.name}: model_config needs a preset to apply to")
        if self.lr_scheduler_type not in SCHEDULERS:
            raise ValueError(f"recipe {self.name}: lr_scheduler_type {self.lr_scheduler_type!r} not in {SCHEDULERS}")
        for name, low, high in _RANGES:
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"recipe {self.name}: {name} must be in [{low:g}, {high:g}], not {value!r}")
        if not self.label_smoothing < 1 or not self.learning_rate > 0:
            raise ValueError(f"recipe {self.name}: label_smoothing must be < 1 and learning_rate > 0")

    def describe(self) -> str:
        """One line for ``--help``."""
        shape = f" {self.model_config}" if self.model_config else ""
        model = f"{self.model}{shape}" if self.model else "the given checkpoint"
        precision = self.mixed_precision if self.mixed_precision != "no" else "fp32"
        return (
            f"{self.name}: {self.tuned_for}. {model}, {self.num_train_epochs} epochs, "
            f"batch {self.train_batch_size}, lr {self.learning_rate:g}, {precision}"
            f"{', torch.compile' if self.torch_compile else ''}. Result: {self.result}."
        )


# The built-in recipes are files of the same form as the ones `hf-fmnist tune` writes, read by the same loader
# (hf_fmnist/recipes/NAME.json). The GPU recipes widen the CNN: at 28×28 an H200 is bound by kernel launches, not
# arithmetic, so width is nearly free there, and keeping a 14×14 stage (downsample_in_first_stage=False) learns more
# per epoch.
BUILTIN_ORDER = ("cpu-5min", "cpu-15min", "cpu-vit-15min", "h200-10s", "h200-2min", "h200-5min", "fine-tune")
MAX_RECIPE_BYTES = 64 << 10  # a recipe is a few hundred bytes; a larger file is not one
# model_config values: whole numbers, booleans, short strings, or short lists of whole numbers, each bounded, so a
# recipe from a stranger cannot ask for a model that exhausts memory before training starts
MAX_SHAPE_INT = 4096
MAX_SHAPE_LIST = 16


TEXT_FIELDS = ("name", "tuned_for", "result")
MAX_TEXT = 200  # characters of a recipe's name, what it was tuned for, and its result line


def from_dict(data, where: str) -> Recipe:
    """A :class:`Recipe` from a JSON object, its fields checked (names, types, ranges); else one line naming
    ``where`` (the file) and the field. The one reader of a recipe: the built-ins and files given to ``--recipe``."""
    if not isinstance(data, dict):
        raise HfFmnistError(f"{where}: a recipe must be a JSON object, not {type(data).__name__}.")
    hints = typing.get_type_hints(Recipe)
    known = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise HfFmnistError(
            f"{where}: unknown recipe field {unknown[0]!r}; recipe fields are {', '.join(sorted(known))}."
        )
    missing = sorted(f.name for f in dataclasses.fields(Recipe) if f.name not in data and _required(f))
    if missing:
        raise HfFmnistError(f"{where}: recipe field {missing[0]!r} is missing.")
    for name, value in data.items():
        kinds = typing.get_args(hints[name]) or (hints[name],)
        if not any(_fits(value, kind) for kind in kinds):
            wanted = " or ".join("null" if k is type(None) else getattr(k, "__name__", str(k)) for k in kinds)
            raise HfFmnistError(f"{where}: recipe field {name!r} must be {wanted}, not {json.dumps(value)[:60]}.")
    for name in TEXT_FIELDS:  # shown in --help, in the card and on the training line: one short printable line
        text = data.get(name)
        if isinstance(text, str) and (len(text) > MAX_TEXT or not text.isprintable()):
            raise HfFmnistError(
                f"{where}: recipe field {name!r} must be printable text of at most {MAX_TEXT} characters "
                f"({len(text):,} given)."
            )
    _check_shape(data.get("model_config", {}), where)
    from .models import PRESETS

    if data.get("model") is not None and data["model"] not in PRESETS:  # a recipe never names a path or a Hub id
        raise HfFmnistError(f"{where}: recipe field 'model' must be a preset ({', '.join(PRESETS)}) or null.")
    try:
        return Recipe(**data)
    except ValueError as e:
        raise HfFmnistError(f"{where}: {e}") from None


def load_file(path: str | os.PathLike) -> Recipe:
    """A recipe file (JSON, as ``hf-fmnist tune`` writes and the built-ins are): one line if it is not one."""
    path = Path(path).expanduser()
    try:
        if not path.is_file():
            raise HfFmnistError(f"--recipe {path}: no such recipe file; pass a recipe name or a JSON recipe file.")
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise HfFmnistError(f"--recipe {path}: {path.stat().st_size:,} bytes is not a recipe (at most 64 KiB).")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise HfFmnistError(f"--recipe {path}: not a JSON recipe file ({type(e).__name__}: {e}).") from None
    return from_dict(data, f"--recipe {printable(str(path))}")


def to_dict(recipe: Recipe) -> dict:
    """The recipe as the JSON object :func:`from_dict` reads back equal."""
    return dataclasses.asdict(recipe)


def _builtin() -> dict[str, Recipe]:
    folder = resources.files("hf_fmnist") / "recipes"
    out = {}
    for name in BUILTIN_ORDER:
        recipe = from_dict(json.loads((folder / f"{name}.json").read_text(encoding="utf-8")), f"{name}.json")
        if recipe.name != name:  # a bug of the package, not of user input
            raise RuntimeError(f"hf_fmnist/recipes/{name}.json names itself {recipe.name!r}")
        out[name] = recipe
    return out


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _fits(value, kind) -> bool:
    """``value`` (from JSON) is a ``kind``: bools are not numbers, whole numbers are floats, floats are finite."""
    kind = typing.get_origin(kind) or kind
    if kind is type(None):
        return value is None
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, kind)


def _check_shape(shape: dict, where: str) -> None:
    for key, value in shape.items():
        items = value if isinstance(value, list) else [value]
        ok = isinstance(value, (bool, str)) and len(str(value)) <= 64
        ok = ok or (
            len(items) <= MAX_SHAPE_LIST
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SHAPE_INT for v in items)
        )
        if not ok:
            raise HfFmnistError(
                f"{where}: model_config[{key!r}] must be a boolean, a short string, or whole numbers 0-{MAX_SHAPE_INT} "
                f"(at most {MAX_SHAPE_LIST}), not {json.dumps(value)[:60]}."
            )


RECIPES: dict[str, Recipe] = _builtin()

# Without --recipe: the recipe for (device, preset). No GPU recipe trains the ViT yet: on a GPU it gets the CPU one.
# The other convolutional presets (resnet, convnext) take the CNN's recipes, and pvt1 the transformer's.
DEFAULTS: dict[tuple[str, str], str] = {
    **{("cpu", preset): "cpu-15min" for preset in ("cnn", "resnet", "convnext")},
    **{("cpu", preset): "cpu-vit-15min" for preset in ("vit", "pvt", "pvt1")},
    **{("gpu", preset): "h200-2min" for preset in ("cnn", "resnet", "convnext")},
    **{("gpu", preset): "cpu-vit-15min" for preset in ("vit", "pvt", "pvt1")},
}
DEFAULT_PRESET = "cnn"


def get(name: str) -> Recipe:
    """A built-in recipe by name, or a recipe file (a path ending in ``.json``, or one that exists)."""
    if name in RECIPES:
        return RECIPES[name]
    if is_file_spec(name):
        return load_file(name)
    raise HfFmnistError(
        f"Unknown --recipe {name!r}; choose one of: {', '.join(RECIPES)} (see train.py --help), or pass a JSON recipe "
        f"file (as `hf-fmnist tune` writes)."
    )


def is_file_spec(name: str) -> bool:
    """``--recipe`` names a file, not a built-in: it ends in ``.json`` or holds a path separator."""
    return name.endswith(".json") or os.sep in name or "/" in name


def default_recipe(model_name_or_path: str | None, *, gpu: bool) -> str:
    """The recipe used when ``--recipe`` is not given: by device and preset; ``fine-tune`` for any checkpoint."""
    preset = model_name_or_path or DEFAULT_PRESET
    return DEFAULTS.get(("gpu" if gpu else "cpu", preset), "fine-tune")


def help_text() -> str:
    """The recipe list for ``--help``: every recipe, what it is tuned for, and its measured result."""
    lines = ["recipes (--recipe NAME; every flag given explicitly overrides the recipe):"]
    lines += [f"{r.describe()}" for r in RECIPES.values()]
    lines.append(
        f"without --recipe: {DEFAULTS[('cpu', 'cnn')]} on CPU, {DEFAULTS[('gpu', 'cnn')]} on a GPU; "
        f"{DEFAULTS[('cpu', 'vit')]} for --model_name_or_path vit; fine-tune for any other checkpoint."
    )
    lines.append(
        "The recipes were tuned on the test split (what the epochs report by default); to tune your own without "
        "reading it, hold out part of the training split with --validation_split_percentage."
    )
    return "\n".join(
        textwrap.fill(line, 116, initial_indent="  ", subsequent_indent="      ") if i else line
        for i, line in enumerate(lines)
    )
