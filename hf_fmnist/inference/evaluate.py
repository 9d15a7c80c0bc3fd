"""``hf-fmnist evaluate``: metrics and plots for any image-classification model on a Fashion-MNIST split.

>>> report = evaluate_model("out")                                   # a training output folder   # doctest: +SKIP
>>> report = evaluate_model("someone/fmnist-vit", dataset="out/fm")  # a Hub model, an export    # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import HfFmnistError, listing, one_line, printable

if TYPE_CHECKING:
    from ..core.loader import DeviceLoader

RESULTS_FILE = "eval_results.json"
PREDICTIONS_FILE = "predictions.csv"  # every image's label, prediction, confidence, loss and logits
PAIRS_FILE = "confused_pairs.csv"
# everything evaluate writes; predictions.png is the grid of the top losses (the most confident mistakes)
OUTPUT_FILES = (
    RESULTS_FILE,
    "confusion_matrix.png",
    "predictions.png",
    "reliability_diagram.png",
    PREDICTIONS_FILE,
    PAIRS_FILE,
)
TOP_PAIRS = 10  # confused pairs printed and saved
TOP_LOSSES = 40  # mistakes in predictions.png


def load_for_inference(model_ref: str, token: str | None = None):
    """``(model, image_processor, class names)`` of a model folder or Hub id, on the best device, in eval mode."""
    import torch
    from transformers import AutoModelForImageClassification

    from ..core.models import bounded_load_report, load_config, load_image_processor, remote_code_refusal

    config = load_config(model_ref, token, repr(model_ref))  # every gate, before transformers reads a weight
    try:
        with bounded_load_report():
            model = AutoModelForImageClassification.from_pretrained(
                model_ref, config=config, token=token, trust_remote_code=False
            )
    except Exception as e:  # OSError (missing), ValueError (not a classifier), HTTP errors
        raise remote_code_refusal(e, repr(model_ref)) or HfFmnistError(
            f"Cannot load model {model_ref!r} ({type(e).__name__}: {one_line(e)}); pass a folder written by "
            f"`train.py` or a Hub model id."
        ) from None
    processor = load_image_processor(model_ref, token=token)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device, memory_format=torch.channels_last).eval()
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return model, processor, names


def evaluate_model(
    model_ref: str,
    dataset: str | None = None,
    *,
    split: str | None = None,
    output_dir: str | os.PathLike | None = None,
    batch_size: int = 1000,
    max_eval_samples: int | None = None,
    data_dir: str | None = None,
) -> dict:
    """Evaluate ``model_ref`` on a split (default: test); write ``eval_results.json`` and plots to ``output_dir``."""
    import torch

    # atomic and ownership are imported here, not at the top: a generated Space copies this module without them
    from .. import atomic, ownership, plots
    from ..core import metrics
    from ..core.loader import DeviceLoader, Preprocess
    from ..core.models import check_output_apart, inference_activation_bytes
    from ..data.tensors import eval_split_of, find_columns, load_arrays, local_root, open_dataset
    from ..image_limits import fit_batch

    if output_dir is not None:  # the default folder (evaluation/ in a training output) is the model's own
        check_output_apart(output_dir, "--output-dir", model=model_ref, dataset=dataset)
    model, processor, model_names = load_for_inference(model_ref)
    ds = open_dataset(dataset, data_dir=data_dir)
    split = split or eval_split_of(ds)
    if split is None or split not in ds:
        raise HfFmnistError(f"Split {printable(str(split))!r} not found; this dataset has {listing(ds)}.")
    names = list(ds[split].features[find_columns(ds[split].features)[1]].names)
    if names != model_names:
        raise HfFmnistError(
            f"The model's {len(model_names):,} classes ({listing(model_names)}) differ from the dataset's "
            f"{len(names):,} ({listing(names)}); evaluate on the dataset it was trained for."
        )
    rows = ds[split] if max_eval_samples is None else ds[split].select(range(min(max_eval_samples, len(ds[split]))))
    images, labels = load_arrays(split, rows, root=local_root(dataset))  # only the rows evaluated are decoded
    device = next(model.parameters()).device
    preprocess = Preprocess.from_processor(processor, model.config.num_channels)
    # a batch is held at the stored images' size (as floats) before it is resized to the model's: count the larger
    size = (max(preprocess.size[0], images.shape[1]), max(preprocess.size[1], images.shape[2]))
    working = inference_activation_bytes(model.config, preprocess.channels, preprocess.size)
    loader = DeviceLoader(
        torch.tensor(images, device=device),
        torch.tensor(labels, device=device),
        batch_size=fit_batch(batch_size, preprocess.channels, size, working),  # within the memory budget
        train=False,
        preprocess=preprocess,
    )
    logits, got_labels = evaluate_logits(model, loader)
    report = metrics.compute(logits, got_labels, names)
    report.update(metrics.calibration_and_mistakes(logits, got_labels, names, top=TOP_PAIRS))
    out = Path(output_dir) if output_dir else default_output_dir(model_ref)
    check_output_dir(out, given=output_dir is not None)
    results = {
        "model": model_ref,
        "dataset": dataset or "fashion_mnist",
        "split": split,
        **{f"eval_{k}": v for k, v in report.items()},
    }
    # All three files are written into a temp folder inside ``out``, then renamed into place (renames need no
    # space): a full disk is one NoSpaceError line, and an earlier evaluation there stays whole, never half replaced.
    with atomic.writing(out):
        out.mkdir(parents=True, exist_ok=True)
        ownership.mark(out, ownership.EVALUATION)
        staging = Path(tempfile.mkdtemp(prefix=".evaluate-", suffix=".tmp", dir=out))
    try:
        with atomic.writing(out, staging=staging):
            atomic.write_text(staging / RESULTS_FILE, json.dumps(results, indent=2) + "\n")
            plots.confusion_matrix(np.asarray(report["confusion_matrix"]), names, staging / OUTPUT_FILES[1])
            plots.top_losses_grid(
                images,
                got_labels,
                metrics.softmax(logits),
                metrics.top_losses(logits, got_labels, TOP_LOSSES),
                names,
                staging / OUTPUT_FILES[2],
                split=split,
            )
            plots.reliability_diagram(
                report["calibration_bins"], staging / OUTPUT_FILES[3], split=split, ece=report["ece"]
            )
            atomic.write_text(staging / PREDICTIONS_FILE, predictions_csv(logits, got_labels))
            atomic.write_text(staging / PAIRS_FILE, pairs_csv(report["confused_pairs"]))
        for name in OUTPUT_FILES:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    results["output_dir"] = str(out)
    return results


def predictions_csv(logits: np.ndarray, labels: np.ndarray) -> str:
    """One row per image, in dataset order: index, label, prediction, confidence, loss, then the float32 logits
    (9 significant digits: they read back bit for bit), so ECE and the top losses can be recomputed from the file."""
    from ..core.metrics import per_image_loss, softmax

    probs, loss = softmax(logits), per_image_loss(logits, labels)
    head = ["index", "label", "prediction", "confidence", "loss"] + [f"logit_{k}" for k in range(logits.shape[1])]
    lines = [",".join(head)]
    for i, (row, label) in enumerate(zip(np.asarray(logits, dtype=np.float32), labels.tolist())):
        values = ",".join(f"{v:.9g}" for v in row.tolist())
        lines.append(f"{i},{label},{int(row.argmax())},{probs[i].max():.9g},{loss[i]:.9g},{values}")
    return "\n".join(lines) + "\n"


def pairs_csv(pairs: list[dict]) -> str:
    """The most confused pairs as CSV: true class, predicted class, images, images of the true class."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true", "predicted", "count", "of_true_class"])
    for p in pairs:
        writer.writerow([p["true"], p["predicted"], p["count"], p["of"]])
    return buffer.getvalue()


def pair_lines(pairs: list[dict]) -> list[str]:
    """``Shirt → T-shirt/top: 123 of 1,000`` per pair (names escaped: they come from the model's files)."""
    return [f"{printable(p['true'])} → {printable(p['predicted'])}: {p['count']:,} of {p['of']:,}" for p in pairs]


def evaluate_logits(model, loader: DeviceLoader, accelerator=None) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of every evaluation image exactly once, in dataset order, whatever the process count.

    Always in float32 and eager: under mixed precision Accelerate wraps the model's forward in autocast, but the
    accuracy we print and publish must be the saved fp32 model's, which is what ``pipeline`` computes.
    """
    import torch

    model.eval()
    forward = model if accelerator is None else accelerator.unwrap_model(model, keep_torch_compile=False)
    if "forward" in vars(forward):
        # Under mixed precision Accelerate sets an autocast wrapper as the instance's ``forward``; the class's own
        # is the plain float32 one. (``unwrap_model(keep_fp32_wrapper=False)`` would strip the wrapper for good,
        # ending mixed precision for the rest of training.) tests/test_precision.py pins this.
        forward = functools.partial(type(forward).forward, forward)
    all_logits, all_labels, all_index = [], [], []
    with torch.inference_mode():
        for x, y, index in loader.epoch(0):
            logits = forward(pixel_values=x).logits.float()
            if accelerator is not None:
                logits, y, index = accelerator.gather_for_metrics((logits, y, index))
            all_logits.append(logits.cpu())
            all_labels.append(y.cpu())
            all_index.append(index.cpu())
    index = torch.cat(all_index)
    keep = index >= 0  # drop the padding that kept processes in step
    order = torch.argsort(index[keep])
    return torch.cat(all_logits)[keep][order].numpy(), torch.cat(all_labels)[keep][order].numpy()


def check_output_dir(out: Path, *, given: bool) -> None:
    """Write only into a new or empty folder, or one an earlier ``evaluate`` wrote: never over a user's files.

    The default folder lies inside the model folder, which may be a stranger's: there it must be a real folder,
    not a link leading elsewhere (a folder the user names with ``--output-dir`` may be a link: their choice).
    """
    from .. import ownership

    flag = "--output-dir" if given else "the default output folder"
    if not given and out.is_symlink():
        raise HfFmnistError(
            f"{flag} {out} is a link inside the model folder, and evaluate writes only where it was told; pass "
            "--output-dir NEW_FOLDER."
        )
    ownership.check_is_folder(out, flag)
    found = ownership.entries(out) if out.exists() else []
    if found and not ownership.is_marked(out, ownership.EVALUATION):
        raise HfFmnistError(
            f"{flag} {out} holds files that `hf-fmnist evaluate` did not write "
            f"({ownership.describe(ownership.entries(out))}); pass --output-dir with a new or empty folder."
        )


def default_output_dir(model_ref: str) -> Path:
    """``<model folder>/evaluation`` for a local model; ``./evaluation-<name>`` for a Hub id."""
    if Path(model_ref).is_dir():
        return Path(model_ref) / "evaluation"
    return Path(f"evaluation-{re.sub(r'[^A-Za-z0-9._-]+', '_', model_ref)}")


def format_report(results: dict) -> str:
    # names and paths come from the model's and the dataset's files: printed escaped, they cannot rewrite the terminal
    lines = [
        f"{printable(results['model'])} on {printable(results['dataset'])} [{printable(results['split'])}], "
        f"{results['eval_samples']:,} images",
        f"  accuracy        {results['eval_accuracy']:.4f}",
        f"  top-5 accuracy  {results['eval_top5_accuracy']:.4f}",
        f"  macro-F1        {results['eval_macro_f1']:.4f}",
        "  per class:",
    ]
    per_class = {printable(name): value for name, value in results["eval_per_class_accuracy"].items()}
    width = max(len(n) for n in per_class)
    for name, value in per_class.items():
        lines.append(f"    {name:<{width}}  {'n/a' if value is None else f'{value:.4f}'}")
    lines.insert(
        4,
        f"  ECE             {results['eval_ece']:.4f}  ({results['eval_ece_bins']} equal-width confidence bins)",
    )
    lines.insert(5, f"  NLL             {results['eval_nll']:.4f}  (nats per image)")
    lines.append("  most confused pairs (true → predicted: images):")
    lines.extend(f"    {line}" for line in pair_lines(results["eval_confused_pairs"]) or ["none: no mistakes"])
    lines.append(
        f"Saved {', '.join(OUTPUT_FILES)} in {printable(results['output_dir'])} "
        "(predictions.png: the most confident mistakes)"
    )
    return "\n".join(lines)
