"""The training configuration: one frozen dataclass that *is* the command line.

Every field becomes a ``--flag`` (names as in transformers' ``run_image_classification_no_trainer.py`` where they
exist); the field's ``help`` metadata, with units, becomes the flag's help, and its default the flag's default. The
parsed config is validated once in ``__post_init__`` and never mutated; it is saved as ``training_config.json`` next
to the model and in every checkpoint.

Settings left at ``None`` are filled by the recipe (``--recipe``, :mod:`hf_fmnist.core.recipes`) when training starts;
``training_config.json`` records both the flags as given and the resolved values.

>>> cfg = TrainConfig.from_args(["--output_dir", "out", "--num_train_epochs", "3"])
>>> cfg.num_train_epochs, cfg.model_name_or_path, cfg.recipe
(3, None, None)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HfFmnistError
from . import recipes

CONFIG_FILE = "training_config.json"
SCHEDULERS = recipes.SCHEDULERS
# Accelerate's trackers (each an optional extra; hf_fmnist/training/trackers.py says where each writes), and "all"
TRACKERS = ("tensorboard", "trackio", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive")
REPORTERS = (*TRACKERS, "all")


PROCESSES_HELP = """\
processes, batch and learning rate:
  The global batch (images per optimizer step) is per_device_train_batch_size x processes x
  gradient_accumulation_steps; the learning rate belongs to the global batch and is never rescaled. A recipe fixes
  the global batch and divides it among the processes, so N processes train the same model as one, up to
  floating-point reduction order: data order and augmentation are drawn per global batch, and BatchNorm
  statistics are computed over all processes (synchronised). With gradient accumulation BatchNorm sees each
  micro-batch on its own, so only models without BatchNorm (vit) match the large batch exactly."""


class FlagParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that takes every multiword flag with dashes or with underscores, as transformers'
    ``HfArgumentParser`` does: ``--output-dir`` and ``--output_dir`` are one flag. ``--help`` shows the spelling the
    command declares. Subcommand parsers (``add_subparsers``) are of this class too."""

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        end = args.index("--") if "--" in args else len(args)  # after "--" everything is a value
        return super().parse_known_args([self._declared(a) for a in args[:end]] + args[end:], namespace)

    def _declared(self, arg: str) -> str:
        """``arg`` with its flag spelled as declared, when it differs only in dashes and underscores."""
        flag, eq, value = arg.partition("=")
        if not flag.startswith("--") or flag in self._option_string_actions:
            return arg
        declared = {f.replace("-", "_"): f for f in self._option_string_actions if f.startswith("--")}
        return declared.get(flag.replace("-", "_"), flag) + eq + value


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after each flag, and the recipe list in the epilog kept as written."""


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything a training run depends on. ``None`` means "the preset's recommendation" where the help says so."""

    output_dir: str = _f(None, "folder for the model, card, plots, metrics and checkpoints (required)")
    overwrite_output_dir: bool = _f(
        False, "write into an existing --output_dir that hf_fmnist did not create (its other files are kept)"
    )
    recipe: str | None = _f(
        None,
        f"named defaults for everything below that is not given: {', '.join(recipes.RECIPES)} (listed below), or a "
        "JSON recipe file (as `hf-fmnist tune` writes); "
        f"default: {recipes.DEFAULTS[('cpu', 'cnn')]} on CPU, {recipes.DEFAULTS[('gpu', 'cnn')]} on a GPU",
    )
    model_name_or_path: str | None = _f(
        None,
        "a preset (cnn, vit, pvt, resnet, convnext, pvt1), a local model folder or a Hub model id of an "
        "image-classification checkpoint; default: the recipe's preset",
    )
    dataset: str = _f(
        "fashion_mnist", "fashion_mnist (built in), a folder written by `hf-fmnist build`, or a Hub dataset id"
    )
    data_dir: str | None = _f(None, "raw Fashion-MNIST files for the built-in dataset (see `hf-fmnist build --help`)")
    num_train_epochs: int | None = _f(None, "passes over the training set; default: the preset's")
    max_train_steps: int | None = _f(None, "optimizer steps in total; overrides --num_train_epochs")
    per_device_train_batch_size: int | None = _f(
        None,
        "images per process per micro-step; the global batch is this × processes × accumulation steps; "
        "default: the recipe's global batch / (processes × accumulation steps)",
    )
    per_device_eval_batch_size: int = _f(1000, "images per process per evaluation step")
    learning_rate: float | None = _f(
        None,
        "peak learning rate per optimizer step of the global batch (not rescaled with the process count); "
        "default: the recipe's",
    )
    weight_decay: float | None = _f(None, "AdamW decoupled weight decay; default: the recipe's")
    lr_scheduler_type: str | None = _f(None, f"learning-rate schedule: {', '.join(SCHEDULERS)}; default: the recipe's")
    num_warmup_steps: int | None = _f(
        None, "optimizer steps of linear warm-up; default: 25%% of training for onecycle, else 0"
    )
    gradient_accumulation_steps: int = _f(1, "micro-steps per optimizer step")
    label_smoothing: float | None = _f(None, "cross-entropy label smoothing (0 disables); default: the recipe's")
    pad_crop: int | None = _f(None, "random translation by up to this many pixels (pad-and-crop); default: recipe's")
    hflip: bool | None = _f(None, "random horizontal flips; default: the recipe's")
    random_erasing: float | None = _f(
        None, "probability of erasing a random rectangle per image (0 disables); default: the recipe's"
    )
    zero_init_residual: bool | None = _f(
        None, "start every residual block as the identity (its last BatchNorm scale zeroed); default: the recipe's"
    )
    pca_stem: bool | None = _f(
        None,
        "initialise the first convolution from the principal components of training-image patches; "
        "default: the recipe's",
    )
    eval_last_epochs: int | None = _f(
        None,
        "evaluate on the test split after only the last N epochs (0: after every epoch; every epoch still prints its "
        "loss); default: the recipe's",
    )
    mixed_precision: str | None = _f(
        None,
        f"{', '.join(recipes.PRECISIONS)}: autocast precision (weights and saved model stay fp32; fp16 uses a "
        "gradient scaler and needs a GPU); default: `accelerate launch --mixed_precision` if fp16/bf16, else the "
        "recipe's",
    )
    torch_compile: bool | None = _f(None, "torch.compile the model (inductor); default: the recipe's")
    seed: int = _f(42, "seed for initialisation, data order and augmentation")
    cpu_threads: int | None = _f(
        None,
        "CPU threads per process when training on CPU; default: available cores / processes on this machine "
        "(`accelerate launch` alone would pin 1)",
    )
    checkpointing_steps: str | None = _f(None, "save a resumable checkpoint every N optimizer steps, or 'epoch'")
    resume_from_checkpoint: str | None = _f(None, "a checkpoint folder, or 'latest' in --output_dir")
    with_tracking: bool = _f(False, "log metrics to the --report_to trackers (local files under OUTPUT_DIR/runs)")
    report_to: str = _f(
        "tensorboard",
        f"trackers for --with_tracking, comma-separated: {', '.join(REPORTERS)} (every installed one); each but "
        "tensorboard is the pip extra of its name",
    )
    max_train_samples: int | None = _f(None, "use only the first N training images (quick runs, tests)")
    max_eval_samples: int | None = _f(None, "evaluate on only the first N test images")
    validation_split_percentage: int | None = _f(
        None,
        "hold out this percentage of the training split (seeded, stratified by class) for the epochs' evaluations; "
        "the test split is then evaluated once, at the end (default: no hold-out, the epochs report the test split)",
    )
    ignore_mismatched_sizes: bool = _f(False, "load a checkpoint even if its head has another number of classes")
    push_to_hub: bool = _f(False, "push the final model folder to the Hub (see --hub_model_id)")
    hub_model_id: str | None = _f(
        None, "NAMESPACE/NAME of the model repo for --push_to_hub; default: YOUR_NAMESPACE/<output_dir's name>"
    )
    hub_token: str | None = _f(None, "token for --push_to_hub; default: $HF_TOKEN or the stored login", secret=True)
    hub_private: bool = _f(False, "create the Hub repo as private")

    def __post_init__(self) -> None:
        if not self.output_dir:
            raise HfFmnistError("--output_dir is required: the folder for the model, metrics and checkpoints.")
        check_numbers(self)
        positive = (
            "num_train_epochs",
            "max_train_steps",
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
            "max_train_samples",
            "max_eval_samples",
            "cpu_threads",
        )
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise HfFmnistError(f"--{name} must be a positive integer, not {value}.")
        for name in ("learning_rate",):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise HfFmnistError(f"--{name} must be > 0, not {value}.")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise HfFmnistError(f"--weight_decay must be >= 0, not {self.weight_decay}.")
        if self.recipe is not None and not recipes.is_file_spec(self.recipe):
            recipes.get(self.recipe)  # the error lists the recipes; a recipe file is read when training starts
        if self.mixed_precision is not None and self.mixed_precision not in recipes.PRECISIONS:
            raise HfFmnistError(
                f"--mixed_precision {self.mixed_precision!r} is not one of {', '.join(recipes.PRECISIONS)}."
            )
        if self.label_smoothing is not None and not 0 <= self.label_smoothing < 1:
            raise HfFmnistError(f"--label_smoothing must be in [0, 1), not {self.label_smoothing}.")
        if self.random_erasing is not None and not 0 <= self.random_erasing <= 1:
            raise HfFmnistError(f"--random_erasing is a probability in [0, 1], not {self.random_erasing}.")
        if self.pad_crop is not None and not 0 <= self.pad_crop <= 8:
            raise HfFmnistError(f"--pad_crop must be 0-8 pixels, not {self.pad_crop}.")
        if self.validation_split_percentage is not None and not 0 < self.validation_split_percentage < 100:
            raise HfFmnistError(f"--validation_split_percentage must be 1-99, not {self.validation_split_percentage}.")
        if self.eval_last_epochs is not None and self.eval_last_epochs < 0:
            raise HfFmnistError(f"--eval_last_epochs must be >= 0 (0: every epoch), not {self.eval_last_epochs}.")
        if self.num_warmup_steps is not None and self.num_warmup_steps < 0:
            raise HfFmnistError(f"--num_warmup_steps must be >= 0, not {self.num_warmup_steps}.")
        if self.lr_scheduler_type is not None and self.lr_scheduler_type not in SCHEDULERS:
            raise HfFmnistError(
                f"--lr_scheduler_type {self.lr_scheduler_type!r} is not one of {', '.join(SCHEDULERS)}."
            )
        for reporter in self.report_to.split(","):
            if reporter.strip() not in REPORTERS:
                raise HfFmnistError(f"--report_to {reporter.strip()!r} is not one of {', '.join(REPORTERS)}.")
        if self.checkpointing_steps is not None and not (
            self.checkpointing_steps == "epoch" or re.fullmatch(r"[1-9][0-9]*", self.checkpointing_steps)
        ):
            raise HfFmnistError(
                f"--checkpointing_steps must be a positive integer or 'epoch', not {self.checkpointing_steps!r}."
            )

    @property
    def checkpoint_every(self) -> int | None:
        """Steps between checkpoints, or None (no step checkpoints; see :attr:`checkpoint_each_epoch`)."""
        return int(self.checkpointing_steps) if self.checkpointing_steps not in (None, "epoch") else None

    @property
    def checkpoint_each_epoch(self) -> bool:
        return self.checkpointing_steps == "epoch"

    def to_dict(self, *, redact: bool = True) -> dict:
        """Plain values; secrets (the Hub token) replaced by None unless ``redact=False``."""
        out = dataclasses.asdict(self)
        if redact:
            for f in dataclasses.fields(self):
                if f.metadata.get("secret"):
                    out[f.name] = None
        return out

    def sources(self) -> dict:
        """Where the model and the data came from: ``preset``/``builtin``, ``local`` (a folder) or ``hub`` (an id)."""
        from ..data.tensors import BUILTIN
        from .models import PRESETS

        model = self.model_name_or_path  # None: the recipe's preset
        return {
            "model_name_or_path": "preset" if model is None or model in PRESETS else _kind(model),
            "dataset": "builtin" if self.dataset == BUILTIN else _kind(self.dataset),
        }

    def public_dict(self) -> dict:
        """:meth:`to_dict` fit to publish (``training_config.json``, TensorBoard's hparams): no secret, and no path
        of this machine. A local folder becomes ``./NAME`` (its name: the relative layout a reader can follow);
        presets, the built-in dataset and Hub ids stay as they are."""
        out = self.to_dict()
        sources = self.sources()
        for name in ("output_dir", "data_dir", "resume_from_checkpoint", "dataset", "model_name_or_path"):
            value = out[name]
            if value is None or value == "latest" or sources.get(name, "local") != "local":
                continue
            out[name] = _public_path(value)
        if out["recipe"] is not None and recipes.is_file_spec(out["recipe"]):  # a recipe file: its name only
            out["recipe"] = _public_path(out["recipe"])
        return out

    @staticmethod
    def public_resolved(resolved: dict) -> dict:
        """The resolved values fit to publish: a recipe may resolve the model to a local folder, shown as ``./NAME``."""
        from .models import PRESETS

        out = dict(resolved)
        value = out.get("model_name_or_path")
        if value is not None and value not in PRESETS and _kind(value) == "local":
            out["model_name_or_path"] = _public_path(value)
        return out

    def save(self, folder: str | os.PathLike, **resolved) -> Path:
        """Write ``training_config.json`` atomically: the flags as given (:meth:`public_dict`), where the model and
        data came from (:meth:`sources`), and ``resolved`` (the values used)."""
        from ..atomic import write_text

        saved = {"config": self.public_dict(), "sources": self.sources(), "resolved": self.public_resolved(resolved)}
        return write_text(Path(folder) / CONFIG_FILE, json.dumps(saved, indent=2, sort_keys=True) + "\n")

    @classmethod
    def parser(cls, parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
        """An argparse parser with one flag per field."""
        parser = parser or FlagParser(
            prog="train.py",
            description="Train or fine-tune an image classifier on Fashion-MNIST with Accelerate.",
            epilog=f"{recipes.help_text()}\n\n{PROCESSES_HELP}",
            formatter_class=_HelpFormatter,
        )
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind = hints[f.name]
            base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
            flag = f"--{f.name}"
            if base is bool:
                parser.add_argument(
                    flag, action=argparse.BooleanOptionalAction, default=f.default, help=f.metadata["help"]
                )
            else:
                parser.add_argument(
                    flag, type=base, default=f.default, help=f.metadata["help"], required=f.name == "output_dir"
                )
        return parser

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None) -> TrainConfig:
        return cls(**vars(cls.parser().parse_args(argv)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        """The config saved by :meth:`save` (a ``training_config.json`` file or the folder holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_FILE
        try:
            saved = json.loads(path.read_text())["config"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
            raise HfFmnistError(f"{path}: not a training config written by hf_fmnist ({e}).") from None
        return cls(**check_saved(saved, path))


# Numbers that cannot be trained. A run's length is bounded so that no flag can ask for one that never ends
# (10**21 steps printed "8547008547008546816 epochs of 117"): a million optimizer steps is about 9,000 epochs of the
# recipes' batch of 512, and weeks of training even for the fastest preset.
MAX_STEPS = 1_000_000
MAX_EPOCHS = 10_000
MAX_INT = 2**31 - 1  # any other whole-number flag: beyond it torch and the OS overflow, as tracebacks


def check_numbers(config: TrainConfig) -> None:
    """Refuse a float flag that is not finite (``inf`` passed every ``> 0`` check and trained to a NaN model) and a
    whole-number flag past its bound, one line naming the flag and the bound."""
    import math

    bounds = {"max_train_steps": MAX_STEPS, "num_train_epochs": MAX_EPOCHS}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise HfFmnistError(f"--{f.name} must be a finite number, not {value}.")
        if isinstance(value, int) and not isinstance(value, bool) and value > bounds.get(f.name, MAX_INT):
            bound = bounds.get(f.name, MAX_INT)
            raise HfFmnistError(f"--{f.name} {value:,} is more than {bound:,}, the most hf_fmnist accepts; refused.")


def check_saved(saved, path: Path) -> dict:
    """The ``config`` object of a saved ``training_config.json``, the fields :class:`TrainConfig` knows, each of its
    type (a later field extends the dataclass, and so this check); else one line naming the file and the field."""
    if not isinstance(saved, dict):
        raise HfFmnistError(f"{path}: field 'config' must be an object, not a JSON {type(saved).__name__}.")
    hints, out = typing.get_type_hints(TrainConfig), {}
    for f in dataclasses.fields(TrainConfig):
        if f.name not in saved:
            continue
        value, allowed = saved[f.name], typing.get_args(hints[f.name]) or (hints[f.name],)
        fits = any(_fits(value, kind) for kind in allowed)
        if not fits:
            wanted = " or ".join("null" if k is type(None) else k.__name__ for k in allowed)
            raise HfFmnistError(
                f"{path}: field {f.name!r} must be {wanted}, not {json.dumps(value)[:60]}; not a training config "
                f"hf_fmnist wrote."
            )
        out[f.name] = value
    return out


def _fits(value, kind) -> bool:
    """``value`` (from JSON) is a ``kind``: bools are not numbers, whole numbers are floats."""
    if kind is type(None):
        return value is None
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    return isinstance(value, (int, float) if kind is float else kind)


def _public_path(value) -> str:
    """A local path as ``./NAME``: its name, the layout a reader can follow, without this machine's folders."""
    return f"./{Path(os.path.normpath(os.path.expanduser(str(value)))).name or 'out'}"


def _kind(name_or_path: str) -> str:
    """``local`` for a folder (or anything path-shaped), else ``hub`` (a Hub id), by the rule the loaders use."""
    from ..data.tensors import looks_local

    return "local" if looks_local(str(name_or_path)) else "hub"
