"""The settings a run uses, resolved once into a frozen :class:`Settings`.

Every flag given, the recipe's value for every flag left unset, and what only the run can decide: the precision and
compilation the Accelerator runs with, the batch per process, and the schedule the data size gives. The training
loop reads these fields and nothing else; ``training_config.json`` stores them (``resolved``) for the card.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

from ..core import recipes
from ..core.config import MAX_STEPS, TrainConfig
from ..core.models import PRESETS
from ..errors import HfFmnistError
from .accelerator import gpu_available
from .optim import describe_optimizer

INITIALISATION = ("zero_init_residual", "pca_stem")  # recipe settings that only a freshly created preset can take
FROM_RECIPE = (  # flags whose unset value (None) the recipe fills, as they are
    "learning_rate",
    "weight_decay",
    "lr_scheduler_type",
    "label_smoothing",
    "pad_crop",
    "hflip",
    "random_erasing",
    "eval_last_epochs",
)


@dataclass(frozen=True)
class Settings:
    recipe: str
    model_name_or_path: str
    model_config: dict  # the preset's shape; empty for a checkpoint, which keeps its own
    per_device_train_batch_size: int
    train_batch_size: int  # global: per device × processes × accumulation steps
    learning_rate: float
    weight_decay: float
    lr_scheduler_type: str
    label_smoothing: float
    pad_crop: int
    hflip: bool
    random_erasing: float
    eval_last_epochs: int
    zero_init_residual: bool
    pca_stem: bool
    mixed_precision: str  # what the Accelerator runs with
    torch_compile: bool  # likewise (`accelerate launch --dynamo_backend` counts)
    optimizer: str
    max_train_steps: int
    num_train_epochs: int  # epochs the steps span (the last may be partial)
    steps_per_epoch: int
    num_warmup_steps: int

    def evaluates_after(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) ends with an evaluation: every epoch, or only the last N."""
        return not self.eval_last_epochs or epoch >= self.num_train_epochs - self.eval_last_epochs

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def choose_recipe(config: TrainConfig) -> recipes.Recipe:
    """``--recipe``, or the default for this device and ``--model_name_or_path``."""
    if config.recipe is not None:
        return recipes.get(config.recipe)
    return recipes.get(recipes.default_recipe(config.model_name_or_path, gpu=gpu_available()))


def mixed_precision_for(config: TrainConfig, recipe: recipes.Recipe) -> str:
    """The flag, else what ``accelerate launch --mixed_precision`` asked for, else the recipe's.

    The launcher exports "no" when it was given nothing, so only fp16/bf16 from it count as a request.
    """
    if config.mixed_precision is not None:
        return config.mixed_precision
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    return launcher if launcher in ("fp16", "bf16") else recipe.mixed_precision


def compile_for(config: TrainConfig, recipe: recipes.Recipe) -> bool:
    return bool(recipe.torch_compile if config.torch_compile is None else config.torch_compile)


def resolve(
    config: TrainConfig,
    recipe: recipes.Recipe,
    num_processes: int = 1,
    *,
    num_train_images: int = 60_000,
    mixed_precision: str | None = None,
    torch_compile: bool | None = None,
) -> Settings:
    """The run's settings, given what the Accelerator runs with (processes, precision, compilation; None: what
    :func:`mixed_precision_for` and :func:`compile_for` ask it for) and the number of training images.

    The recipe's batch is global: it is divided among processes and accumulation micro-steps, so the same recipe
    trains the same model on any number of processes. An explicit ``--per_device_train_batch_size`` keeps its
    per-process meaning (global batch = it × processes × accumulation steps).
    """
    accumulation = config.gradient_accumulation_steps
    per_device = config.per_device_train_batch_size
    if per_device is None:
        if recipe.train_batch_size % (num_processes * accumulation):
            raise HfFmnistError(
                f"Recipe {recipe.name}'s global batch of {recipe.train_batch_size} images does not divide into "
                f"{num_processes} process(es) × {accumulation} accumulation step(s); pass "
                f"--per_device_train_batch_size, or choose a process count that divides it."
            )
        per_device = recipe.train_batch_size // (num_processes * accumulation)
    model = config.model_name_or_path or recipe.model
    if model is None:
        raise HfFmnistError(
            f"--recipe {recipe.name} fine-tunes a checkpoint: pass --model_name_or_path (a model folder or Hub id)."
        )
    train_batch_size = per_device * num_processes * accumulation
    picked = {name: _pick(config, recipe, name) for name in FROM_RECIPE}
    steps_per_epoch = num_train_images // train_batch_size
    if steps_per_epoch == 0:
        raise HfFmnistError(
            f"{num_train_images} training images make no full batch of {per_device} per process × {num_processes} "
            f"processes; lower --per_device_train_batch_size or use more samples."
        )
    return Settings(
        recipe=recipe.name,
        model_name_or_path=model,
        model_config=recipe.model_config if model == recipe.model else {},  # the shape belongs to its preset
        per_device_train_batch_size=per_device,
        train_batch_size=train_batch_size,
        **picked,
        **_initialisation(config, recipe, model),
        mixed_precision=mixed_precision_for(config, recipe) if mixed_precision is None else mixed_precision,
        torch_compile=compile_for(config, recipe) if torch_compile is None else torch_compile,
        optimizer=describe_optimizer(),
        **schedule(config, _pick(config, recipe, "num_train_epochs"), steps_per_epoch, picked["lr_scheduler_type"]),
    )


def schedule(config: TrainConfig, epochs: int, steps_per_epoch: int, scheduler: str = "onecycle") -> dict:
    """Step counts: total optimizer steps, epochs they span, warm-up steps."""
    max_steps = config.max_train_steps or epochs * steps_per_epoch
    if max_steps > MAX_STEPS:  # epochs × steps of an epoch: each within its bound, not always together
        raise HfFmnistError(
            f"--num_train_epochs {epochs:,} of {steps_per_epoch:,} steps is {max_steps:,} optimizer steps, more than "
            f"the {MAX_STEPS:,} hf_fmnist accepts; lower --num_train_epochs or pass --max_train_steps."
        )
    warmup = config.num_warmup_steps
    if warmup is None:
        warmup = int(0.25 * max_steps) if scheduler == "onecycle" else 0
    return {
        "max_train_steps": max_steps,
        "num_train_epochs": math.ceil(max_steps / steps_per_epoch),
        "steps_per_epoch": steps_per_epoch,
        "num_warmup_steps": warmup,
    }


def _pick(config: TrainConfig, recipe: recipes.Recipe, name: str):
    value = getattr(config, name)
    return getattr(recipe, name) if value is None else value


def _initialisation(config: TrainConfig, recipe: recipes.Recipe, model: str) -> dict:
    """The recipe's initialisation tricks for a preset; a checkpoint being fine-tuned keeps its weights."""
    if model in PRESETS:
        return {name: _pick(config, recipe, name) for name in INITIALISATION}
    explicit = [name for name in INITIALISATION if getattr(config, name)]
    if explicit:
        raise HfFmnistError(
            f"--{explicit[0]} initialises a new model, but {model!r} is a checkpoint being fine-tuned; drop the "
            f"flag, or train a preset ({', '.join(PRESETS)})."
        )
    return dict.fromkeys(INITIALISATION, False)
