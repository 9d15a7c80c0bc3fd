"""The model card, rendered from ``model_card/model_card.md`` through huggingface_hub's ``ModelCard``.

A card is rendered for the repo it goes to: usage snippets, title, model-index ``name`` and widget URLs quote the
real repo id. A model folder holds a card for local use (its snippets load the folder itself); a push renders
the card for its repo into what is uploaded (:func:`render_model_card`), leaving the folder as it is. Rendering
is deterministic, so re-pushing the same folder to the same repo uploads the same bytes.

The model-index claims a result on the Fashion-MNIST ``test`` split only when training recorded that all 10,000
evaluated images and labels are the original release's, byte for byte (``eval_dataset_verified`` in
``all_results.json``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..data.card import LOCAL, template_path

FASHION_MNIST = "zalando-datasets/fashion_mnist"  # the canonical Hub copy, which model-index results point to
DEMO_START, DEMO_END = "<!-- hf_fmnist:demo -->", "<!-- /hf_fmnist:demo -->"
RESULTS_FILE = "all_results.json"  # the model folder's metrics, which its card shows
EXAMPLES_DIR = "examples"  # test images published with the model for the Hub's widget
MAX_README_BYTES = 1 << 20  # a remote card larger than this is not searched for a demo block
ONNX_TAGS = ["onnx", "transformers.js"]  # where `hf-fmnist export` wrote onnx/ files the card lists


def render_model_card(
    folder,
    *,
    repo_id: str | None = None,
    endpoint: str | None = None,
    demo: str | None = None,
    local_name: str | None = None,
) -> str:
    """The ``README.md`` of a model folder, rendered from the files training left there.

    Reads ``all_results.json``, ``training_config.json``, ``config.json``, ``preprocessor_config.json`` and
    ``examples/*.png`` only (no model code runs), so a push renders the card again for its repo. ``repo_id``: the
    repo the card is for (title, model-index ``name``, snippets, widget); None for the local card, whose snippets
    load the folder itself. ``endpoint``: the Hub the widget's image URLs point to. ``demo``: a block (between
    :data:`DEMO_START` and :data:`DEMO_END`) kept after the usage section. ``local_name``: the local card's title
    (default: the folder's name).
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from ..dataset_script.hf_fmnist import CITATION
    from . import export_record
    from .config import CONFIG_FILE, TrainConfig
    from .loader import Preprocess
    from .models import check_config_sizes, load_image_processor

    folder = Path(folder)
    results = check_results(_read_json(folder / RESULTS_FILE), folder / RESULTS_FILE)
    saved = check_saved_parts(_read_json(folder / CONFIG_FILE), folder / CONFIG_FILE)
    check_config_sizes(folder / "config.json")  # id2label: class indices to names, as transformers reads it
    check_weights_file(folder)  # a card must not claim the accuracy of a model whose weights are NaN
    model_config = _read_json(folder / "config.json")
    config = TrainConfig.load(folder)
    sources = saved.get("sources") or config.sources()  # folders trained before sources were saved: guessed
    config = dataclasses.replace(config, **config.public_dict())  # such folders hold local paths too
    resolved = saved.get("resolved", {})
    model_name = repo_id.split("/")[-1] if repo_id else local_name or _folder_name(folder)
    claim = _evaluation_claim(results, config, sources)
    examples = sorted(p.name for p in (folder / EXAMPLES_DIR).glob("*.png"))
    onnx_record = export_record.read_record(folder)  # `hf-fmnist export`'s files and what was measured on them
    onnx_rows = export_record.card_rows(onnx_record)
    id2label = {int(k): v for k, v in model_config.get("id2label", {}).items()}
    card_data = ModelCardData(
        model_name=model_name,
        license="mit",
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["image-classification", "fashion-mnist", "hf_fmnist", *(ONNX_TAGS if onnx_rows else [])],
        datasets=_training_datasets(results, config, sources),
        metrics=["accuracy", "f1"],
        base_model=config.model_name_or_path if sources["model_name_or_path"] == "hub" else None,
        eval_results=[
            EvalResult(
                **claim["where"],
                metric_type="accuracy",
                metric_name="Accuracy",
                metric_value=round(results["eval_accuracy"], 4),
            ),
            EvalResult(
                **claim["where"],
                metric_type="f1",
                metric_name="Macro F1",
                metric_value=round(results["eval_macro_f1"], 4),
                metric_config="macro",
            ),
        ]
        if claim["where"]
        else None,
        widget=[
            {
                "src": f"{endpoint.rstrip('/')}/{repo_id}/resolve/main/{EXAMPLES_DIR}/{name}",
                "example_title": _example_title(name, id2label),
            }
            for name in examples
        ]
        if repo_id and endpoint and examples
        else None,
    )
    channels = model_config.get("num_channels", 3)
    pre = Preprocess.from_processor(load_image_processor(str(folder)), channels)
    steps_per_epoch = results.get("steps_per_epoch") or resolved.get("steps_per_epoch")
    recipe = {
        k: resolved[k]
        for k in (
            "max_train_steps",
            "steps_per_epoch",
            "per_device_train_batch_size",
            "learning_rate",
            "weight_decay",
            "num_warmup_steps",
            "pad_crop",
            "optimizer",  # described by the code that builds it (training/optim.py)
        )
        if k in resolved
    }
    recipe.update(
        lr_scheduler_type=config.lr_scheduler_type,
        label_smoothing=config.label_smoothing,
        hflip=config.hflip,
        random_erasing=config.random_erasing,
        zero_init_residual=config.zero_init_residual,
        pca_stem=config.pca_stem,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        seed=config.seed,
    )
    recipe.update({k: v for k, v in resolved.items() if k in recipe or k in ("recipe", "mixed_precision")})
    return str(
        ModelCard.from_template(
            card_data,
            template_path=template_path("model_card.md"),
            model_name=model_name,
            model_ref=repo_id or LOCAL,
            dataset_url=f"https://huggingface.co/datasets/{FASHION_MNIST}",
            architecture=(model_config.get("architectures") or ["?"])[0],
            num_parameters=results.get("num_parameters"),
            base_model=_base_model_text(config, sources),
            r=results,
            claim=claim,
            epochs=_epochs_text(results, steps_per_epoch),
            steps_per_epoch=steps_per_epoch,
            size=f"{pre.size[1]}×{pre.size[0]}",
            mean=", ".join(f"{m:.4f}" for m in pre.mean),
            std=", ".join(f"{s:.4f}" for s in pre.std),
            recipe=recipe,
            command_line=_command_line(config),
            demo=demo,
            onnx_rows=onnx_rows,
            onnx_images=onnx_record["images"] if onnx_record else None,
            transformers_js=export_record.snippet(repo_id or LOCAL) if onnx_rows else None,
            citation=CITATION.strip(),
        )
    )


def check_weights_file(folder: Path) -> None:
    """The card writer's gate on the weights it describes (every ``*.safetensors`` of ``folder``): a bounded header
    and finite values (:func:`hf_fmnist.core.finite.check_finite_weights`), one line otherwise."""
    from safetensors import SafetensorError

    from ..errors import HfFmnistError, one_line
    from ..image_limits import check_safetensors_header
    from .finite import check_finite_weights

    for path in sorted(folder.glob("*.safetensors")):
        check_safetensors_header(path)
        try:
            check_finite_weights(path, str(path))
        except (OSError, SafetensorError) as e:
            raise HfFmnistError(f"{path}: cannot read the weights ({one_line(e, 150)}).") from None


def demo_block(readme: str | None) -> str | None:
    """The demo block (:data:`DEMO_START` ... :data:`DEMO_END`) of a remote card, if it holds one."""
    if not readme:
        return None
    start = readme.find(DEMO_START)
    end = readme.find(DEMO_END, start + len(DEMO_START))
    if start < 0 or end < 0:
        return None
    return readme[start : end + len(DEMO_END)]


def _evaluation_claim(results: dict, config, sources: dict) -> dict:
    """What the evaluation may claim: ``where`` (the model-index's task and dataset, or None) and ``text``.

    The Fashion-MNIST test split is claimed only for all 10,000 test images verified byte for byte; a full split of
    another Hub dataset is named as that dataset's; anything else (a subset, a local folder, modified data) gets no
    model-index result, and the card's text says what was evaluated.
    """
    split, n = results["eval_split"], results["eval_samples"]
    task = {"task_type": "image-classification", "task_name": "Image Classification"}
    if results.get("eval_dataset_verified") is True:
        return {
            "where": {**task, "dataset_type": FASHION_MNIST, "dataset_name": "Fashion-MNIST", "dataset_split": "test"},
            "verified": True,
            "text": f"all {n:,} images of the Fashion-MNIST `test` split (checked byte for byte against the "
            f"original release)",
        }
    what = {
        "builtin": "Fashion-MNIST as built by `hf_fmnist`",
        "local": f"a local dataset folder (`{config.dataset}`)",
        "hub": f"the Hub dataset `{config.dataset}`",
    }[sources["dataset"]]
    text = (
        f"{n:,} images of the `{split}` split of {what}, which are not the 10,000 original Fashion-MNIST test "
        f"images (a subset, or data that differs from the original release)"
    )
    if sources["dataset"] == "hub" and config.max_eval_samples is None:
        return {
            "where": {
                **task,
                "dataset_type": config.dataset,
                "dataset_name": config.dataset.split("/")[-1],
                "dataset_split": split,
            },
            "verified": False,
            "text": text + "; the model-index names that dataset and split",
        }
    return {"where": None, "verified": False, "text": text + "; so the model-index reports no result"}


def _training_datasets(results: dict, config, sources: dict) -> list[str] | None:
    """The ``datasets:`` metadata: Fashion-MNIST when the training images were verified, else a Hub id or none."""
    if results.get("train_dataset_verified") is True:
        return [FASHION_MNIST]
    if sources["dataset"] == "hub":
        return [config.dataset]
    return None


def _base_model_text(config, sources: dict) -> str | None:
    kind = sources["model_name_or_path"]
    if kind == "hub":
        return f"`{config.model_name_or_path}`"
    if kind == "local":  # only the folder's name: the path of the training machine is nobody's business
        return f"a local checkpoint (`{config.model_name_or_path}`)"
    return None


def _epochs_text(results: dict, steps_per_epoch: int | None) -> str:
    """Epochs that ran, as a number ("2", "0.5"): steps over steps per epoch, not the planned count."""
    if not steps_per_epoch:
        return str(results.get("epochs", "?"))
    epochs = results["train_steps"] / steps_per_epoch
    return f"{epochs:.0f}" if epochs == int(epochs) else f"{epochs:.2f}".rstrip("0")


def _example_title(name: str, id2label: dict[int, str]) -> str:
    """``3_dress.png`` → the class name of label 3."""
    label = name.split("_", 1)[0]
    return id2label.get(int(label), name) if label.isascii() and label.isdigit() else name  # not '²'


def _folder_name(folder: Path) -> str:
    return folder.resolve().name or "model"


# The fields of all_results.json (written by training) that a card shows, and what each must be: a later field the
# card uses is added here. Optional fields may be absent or null.
_FRACTION, _COUNT, _SPLIT, _AMOUNT = "a number from 0 to 1", "a whole number of at least 0", "a split name", "a number"
_PER_CLASS = "an object of class names to numbers from 0 to 1 or null"
_RESUMES = "a list of resume records (step, written_by_processes, num_processes, stopped_by)"
_PAIRS = "a list of at most 100 confused pairs (true, predicted, count, of)"
RESULTS_SCHEMA: dict[str, tuple[str, bool]] = {  # field -> (what it must be, optional)
    "eval_accuracy": (_FRACTION, False),
    "eval_macro_f1": (_FRACTION, False),
    "eval_top5_accuracy": (_FRACTION, True),
    "eval_split": (_SPLIT, False),
    "eval_samples": (_COUNT, False),
    "train_steps": (_COUNT, True),
    "steps_per_epoch": (_COUNT, True),
    "num_parameters": (_COUNT, True),
    "epochs": (_AMOUNT, True),
    "eval_per_class_accuracy": (_PER_CLASS, True),
    "eval_ece": (_FRACTION, True),
    "eval_ece_bins": (_COUNT, True),
    "eval_nll": (_AMOUNT, True),
    "eval_confused_pairs": (_PAIRS, True),
    "num_processes": (_COUNT, False),
    "train_samples": (_COUNT, False),
    "train_runtime": (_AMOUNT, False),
    "train_samples_per_second": (_AMOUNT, False),
    "validation_split_percentage": (_AMOUNT, True),
    "validation_samples": (_COUNT, True),
    "validation_accuracy": (_FRACTION, True),
    "resumes": (_RESUMES, True),
}
# A resume record: training's checkpoint state and all_results.json hold a list of them (checked by the same rule on
# both read-backs), the card shows them
STOP_SIGNALS = ("SIGTERM", "SIGUSR1")
MAX_RESUMES = 10_000


def resume_problem(entry, step: int | None = None) -> str | None:
    """What is wrong with one resume record, or None; ``step``: the latest step it may name."""
    from ..errors import printable

    if not isinstance(entry, dict) or set(entry) != {"step", "written_by_processes", "num_processes", "stopped_by"}:
        return "is not an object of step, written_by_processes, num_processes and stopped_by"
    for key in ("step", "written_by_processes", "num_processes"):
        value = entry[key]
        if value is None and key == "written_by_processes":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**53:
            return f"has {key!r} = {printable(repr(value))[:40]}"
    if step is not None and entry["step"] > step:
        return f"has 'step' = {entry['step']}, after the checkpoint's own step {step}"
    if entry["stopped_by"] is not None and entry["stopped_by"] not in STOP_SIGNALS:
        return f"has 'stopped_by' = {printable(repr(entry['stopped_by']))[:40]}"
    return None


# training_config.json's parts the card reads besides the flags (checked by core.config.check_saved)
SOURCE_KINDS = ("preset", "local", "hub", "builtin")


def _is_kind(value, kind: str) -> bool:
    import math

    if kind == _SPLIT:
        return isinstance(value, str) and 0 < len(value) <= 100
    if kind == _RESUMES:
        return isinstance(value, list) and len(value) <= MAX_RESUMES and not any(map(resume_problem, value))
    if kind == _PAIRS:
        return isinstance(value, list) and len(value) <= 100 and all(map(_is_pair, value))
    if kind == _PER_CLASS:
        # null: a class absent from the evaluated images (metrics.classification_report); the card shows "n/a"
        return isinstance(value, dict) and all(v is None or _is_kind(v, _FRACTION) for v in value.values())
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return False
    return {_FRACTION: value <= 1, _COUNT: isinstance(value, int), _AMOUNT: True}[kind]


def _is_pair(entry) -> bool:
    """One confused pair of ``all_results.json`` (``core.metrics.most_confused_pairs``): names of sane length and
    counts, no more than the class's images."""
    if not isinstance(entry, dict) or set(entry) != {"true", "predicted", "count", "of"}:
        return False
    names_ok = all(isinstance(entry[k], str) and 0 < len(entry[k]) <= 100 for k in ("true", "predicted"))
    counts_ok = all(_is_kind(entry[k], _COUNT) for k in ("count", "of"))
    return names_ok and counts_ok and entry["count"] <= entry["of"]


def check_results(results, path: Path) -> dict:
    """``results`` (``all_results.json``) if every field a card shows has its type; else one line naming the field."""
    from ..errors import HfFmnistError, printable

    if not isinstance(results, dict):
        raise HfFmnistError(f"{path}: holds a JSON {type(results).__name__}, not an object of results; refused.")
    for name, (kind, optional) in RESULTS_SCHEMA.items():
        value = results.get(name)
        if (value is None and optional) or _is_kind(value, kind):
            continue
        shown = "missing" if name not in results else printable(json.dumps(value))[:60]
        raise HfFmnistError(f"{path}: field {name!r} must be {kind}, not {shown}; refused.")
    return results


def check_saved_parts(saved, path: Path) -> dict:
    """``training_config.json`` if its ``sources`` and ``resolved`` are what the card reads; else one line."""
    from ..errors import HfFmnistError

    if not isinstance(saved, dict):
        raise HfFmnistError(f"{path}: holds a JSON {type(saved).__name__}, not a training config; refused.")
    sources, resolved = saved.get("sources"), saved.get("resolved", {})
    if sources and not (
        isinstance(sources, dict)
        and {"dataset", "model_name_or_path"} <= set(sources)
        and all(v in SOURCE_KINDS for v in sources.values())
    ):
        raise HfFmnistError(
            f"{path}: field 'sources' must map dataset and model_name_or_path to one of "
            f"{', '.join(SOURCE_KINDS)}; refused."
        )
    if not isinstance(resolved, dict):
        raise HfFmnistError(f"{path}: field 'resolved' must be an object; refused.")
    return saved


def _read_json(path: Path) -> dict:
    from ..errors import HfFmnistError

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise HfFmnistError(
            f"{path}: cannot read it ({type(e).__name__}: {str(e)[:120]}); pass a folder written by `train.py`."
        ) from None


def _command_line(config) -> str:
    """The non-default flags of ``config`` (as published: local folders by name), secrets left out."""
    skip = {
        "output_dir",
        "hub_token",
        "data_dir",
        "resume_from_checkpoint",
        "push_to_hub",
        "hub_model_id",
        "hub_private",
    }
    parts = ["--output_dir out"]
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in skip or value == f.default:
            continue
        if isinstance(value, bool):
            parts.append(f"--{f.name}" if value else f"--no-{f.name}")
        else:
            parts.append(f"--{f.name} {value}")
    return " ".join(parts)
