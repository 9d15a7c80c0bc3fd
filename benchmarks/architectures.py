"""Benchmark: which architecture learns Fashion-MNIST fastest on this CPU: today's presets against the candidates
transformers.js runs, side by side in one run, under the same time budget.

For each preset (by default the convolutional ones: ``cnn`` as it is today, ``resnet``, ``convnext``; or
``--presets pvt pvt1`` for the transformers), in the same run and on the same machine:

1. **Speed**: a short probe (``--probe_images`` training images, one epoch, through ``train.py``) gives its training
   images/s, read from the run's ``all_results.json`` (``train_samples_per_second``: training steps only).
2. **Accuracy in the budget**: a full run of the recipe (``--recipe``, its schedule, augmentation and initialisation
   tricks) with as many epochs as that speed fits into ``--budget`` seconds of training, holding out
   ``--validation_split_percentage`` of the training split. Accuracy is the *validation* split's after the last epoch
   (the test split is never used to choose); the run's own images/s and wall time are reported beside it.

The presets run in a rotating order per seed (cnn, resnet, convnext; then resnet, convnext, cnn; ...) so that a
machine that slows down over the run does not favour one of them. ``--calib`` runs the calibration workload before
and after the whole run: a comparison is only fair where the two figures agree. Results are appended to
``--results`` (JSON) and printed as a Markdown table for docs/benchmarks.md.

Usage (on an otherwise idle 2-core machine; about presets × seeds × (budget + 1 min) of wall time)::

    python benchmarks/architectures.py --budget 300 --seeds 42 0 --calib ../shared/calib.py
    python benchmarks/architectures.py --presets pvt pvt1 vit --recipe cpu-vit-15min --budget 900
    python benchmarks/architectures.py --budget 20 --probe_images 1024 --max_train_samples 2048   # a quick check
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_IMAGES = 60_000


def calibrate(script: str | None) -> float | None:
    """The calibration workload's figure in seconds (None without ``--calib``)."""
    if not script:
        return None
    out = subprocess.run([sys.executable, script], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def train(preset: str, recipe: str, seed: int, flags: list[str]) -> dict:
    """One ``train.py`` run of ``preset`` with ``recipe``; its ``all_results.json`` and the wall time."""
    with tempfile.TemporaryDirectory(prefix="hf_fmnist-arch-") as tmp:
        out = Path(tmp) / "model"
        cmd = [sys.executable, str(ROOT / "train.py"), "--recipe", recipe, "--model_name_or_path", preset]
        cmd += ["--output_dir", str(out), "--seed", str(seed), *flags]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"{preset}: train.py failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        results = json.loads((out / "all_results.json").read_text())
    return {**results, "wall_s": round(wall, 1)}


def held_out_accuracy(results: dict) -> float:
    """The validation accuracy of the last evaluated epoch (never the test split's)."""
    scored = [e for e in results["history"] if "validation_accuracy" in e]
    if not scored:
        sys.exit("no validation accuracy in the run's history: pass --validation_split_percentage")
    return scored[-1]["validation_accuracy"]


def run_preset(preset: str, args, seed: int) -> dict:
    common = ["--validation_split_percentage", str(args.validation_split_percentage)]
    if args.max_train_samples:
        common += ["--max_train_samples", str(args.max_train_samples)]
    probe = train(
        preset,
        args.recipe,
        seed,
        [*common, "--num_train_epochs", "1", "--max_train_samples", str(args.probe_images), "--eval_last_epochs", "1"],
    )
    speed = probe["train_samples_per_second"]
    images = probe["train_samples"] if args.max_train_samples else _train_split(args)
    epochs = max(1, math.floor(args.budget * speed / images))
    full = train(preset, args.recipe, seed, [*common, "--num_train_epochs", str(epochs), "--eval_last_epochs", "1"])
    row = {
        "preset": preset,
        "model_type": _model_type(preset),
        "parameters": full["num_parameters"],
        "seed": seed,
        "probe_images_per_s": speed,
        "epochs": epochs,
        "train_images": full["train_samples"],
        "images_per_s": full["train_samples_per_second"],
        "train_s": full["train_runtime"],
        "wall_s": full["wall_s"],
        "validation_accuracy": held_out_accuracy(full),
    }
    print(
        f"  {preset:9s} seed {seed}: {row['images_per_s']:,.0f} images/s, {epochs} epochs in {row['train_s']:.0f} s "
        f"of training ({row['wall_s']:.0f} s wall): validation accuracy {row['validation_accuracy']:.2%}",
        flush=True,
    )
    return row


def _train_split(args) -> int:
    return TRAIN_IMAGES - round(TRAIN_IMAGES * args.validation_split_percentage / 100)


def _model_type(preset: str) -> str:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from hf_fmnist.core.models import create_model

    return create_model(preset).config.model_type


def rotated(presets: list[str], turn: int) -> list[str]:
    """The presets in the order of ``turn``: each goes first once every ``len(presets)`` seeds.

    >>> rotated(["cnn", "resnet", "convnext"], 1)
    ['resnet', 'convnext', 'cnn']
    """
    shift = turn % len(presets)
    return presets[shift:] + presets[:shift]


def markdown(rows: list[dict], header: dict) -> str:
    lines = [
        f"Budget {header['budget_s']:.0f} s of training per run, recipe {header['recipe']}, validation split "
        f"{header['validation_split_percentage']}% of the training images; calib.py before/after: "
        f"{header['calib_before_s']} / {header['calib_after_s']} s.",
        "",
        "| preset | type | parameters | seed | images/s | epochs | training (s) | wall (s) | validation accuracy |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['model_type']} | {r['parameters']:,} | {r['seed']} | {r['images_per_s']:,.0f} "
            f"| {r['epochs']} | {r['train_s']:.0f} | {r['wall_s']:.0f} | {r['validation_accuracy']:.2%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["cnn", "resnet", "convnext"])
    parser.add_argument("--recipe", default="cpu-5min", help="schedule and tricks every preset trains with")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of training per preset and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--validation_split_percentage", type=int, default=10)
    parser.add_argument("--probe_images", type=int, default=10_240, help="training images the speed probe runs")
    parser.add_argument("--max_train_samples", type=int, help="train on only the first N images (quick checks)")
    parser.add_argument("--calib", help="path to the calibration workload (calib.py), run before and after")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "architectures.json")
    args = parser.parse_args()

    before = calibrate(args.calib)
    rows = []
    for turn, seed in enumerate(args.seeds):
        for preset in rotated(args.presets, turn):
            rows.append(run_preset(preset, args, seed))
    after = calibrate(args.calib)
    header = {
        "date": dt.date.today().isoformat(),
        "recipe": args.recipe,
        "budget_s": args.budget,
        "validation_split_percentage": args.validation_split_percentage,
        "max_train_samples": args.max_train_samples,
        "calib_before_s": before,
        "calib_after_s": after,
    }
    records = json.loads(args.results.read_text()) if args.results.exists() else []
    records.append({**header, "rows": rows})
    args.results.write_text(json.dumps(records, indent=1) + "\n")
    print(markdown(rows, header))


if __name__ == "__main__":
    main()
