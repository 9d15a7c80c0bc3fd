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

import textwrap
from dataclasses import dataclass, field

from ..errors import HfFmnistError

PRECISIONS = ("no", "fp16", "bf16")
NOT_MEASURED = "not measured"
# Measured results are written in one place, per CPU and as ranges; the recipes point there
MEASURED = "measured per CPU in docs/benchmarks.md (Recipes: measured results)"


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


# The GPU recipes widen the CNN: at 28×28 an H200 is bound by kernel launches, not arithmetic, so width is nearly
# free there, and keeping a 14×14 stage (downsample_in_first_stage=False) learns more per epoch.
_WIDE = {"embedding_size": 64, "hidden_sizes": [64, 128, 256], "depths": [1, 2, 2], "downsample_in_first_stage": False}
_WIDER = {"embedding_size": 64, "hidden_sizes": [96, 192, 384], "depths": [2, 3, 3], "downsample_in_first_stage": False}

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            name="cpu-5min",
            tuned_for="5 minutes on a 2-core CPU (aim: 93.0%)",
            model="cnn",
            num_train_epochs=9,
            train_batch_size=512,
            learning_rate=6e-3,
            weight_decay=0.05,
            pad_crop=0,
            zero_init_residual=True,
            pca_stem=True,
            eval_last_epochs=2,
            result=MEASURED,
        ),
        Recipe(
            name="cpu-15min",
            tuned_for="15 minutes on a 2-core CPU (aim: 94.0%)",
            model="cnn",
            num_train_epochs=30,
            train_batch_size=512,
            learning_rate=6e-3,
            weight_decay=0.05,
            pad_crop=1,
            random_erasing=0.25,
            zero_init_residual=True,
            pca_stem=True,
            eval_last_epochs=8,
            result=MEASURED,
        ),
        Recipe(
            name="cpu-vit-15min",
            tuned_for="15 minutes on a 2-core CPU, a transformer (aim: 90.0%)",
            model="pvt",
            num_train_epochs=8,
            train_batch_size=256,
            learning_rate=3e-3,
            weight_decay=0.05,
            pad_crop=0,
            eval_last_epochs=3,
            result=MEASURED,
        ),
        Recipe(
            name="h200-10s",
            tuned_for="10 s of training and evaluation on one H200 (aim: 94.0%)",
            model="cnn",
            model_config=_WIDE,
            num_train_epochs=12,
            train_batch_size=512,
            learning_rate=4e-3,
            weight_decay=0.05,
            pad_crop=1,
            mixed_precision="bf16",
            result=NOT_MEASURED,
        ),
        Recipe(
            name="h200-2min",
            tuned_for="2 minutes of training and evaluation on one H200 (aim: 95.5%)",
            model="cnn",
            model_config=_WIDE,
            num_train_epochs=60,
            train_batch_size=512,
            learning_rate=4e-3,
            weight_decay=0.05,
            pad_crop=2,
            random_erasing=0.1,
            mixed_precision="bf16",
            result=NOT_MEASURED,
        ),
        Recipe(
            name="h200-5min",
            tuned_for="the best accuracy in 5 minutes on one H200 (aim: 96.0%)",
            model="cnn",
            model_config=_WIDER,
            num_train_epochs=80,
            train_batch_size=512,
            learning_rate=3e-3,
            weight_decay=0.05,
            pad_crop=2,
            random_erasing=0.25,
            mixed_precision="bf16",
            torch_compile=True,
            result=NOT_MEASURED,
        ),
        Recipe(
            name="fine-tune",
            tuned_for="fine-tuning a checkpoint that is not a preset (the default for one)",
            model=None,
            num_train_epochs=5,
            train_batch_size=128,
            learning_rate=5e-4,
            weight_decay=0.05,
            pad_crop=2,
            result=NOT_MEASURED,
        ),
    )
}

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
    if name not in RECIPES:
        raise HfFmnistError(f"Unknown --recipe {name!r}; choose one of: {', '.join(RECIPES)} (see train.py --help).")
    return RECIPES[name]


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
