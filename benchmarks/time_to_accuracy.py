"""Benchmark: wall-clock time from before Python starts to each printed test accuracy, per recipe and seed.

Runs ``accelerate launch --num_processes 1 train.py --recipe NAME --output_dir DIR [--seed S] [ARGS...]`` as the
project's time-to-accuracy check does: the clock starts before the command (so Python start-up, imports, data
loading, model creation and every evaluation count), and every ``epoch N/M ... test accuracy X% (10,000 images)``
line is timestamped as it is printed. Then the saved folder is scored again through the stock
``pipeline("image-classification")`` on the PIL test images, so the published model is checked to be the one that
was measured. The machine's speed is measured before and after with a calibration workload (``--calib``), and each
budget is scaled by (calibration / 5.45 s), the speed at which the recipes' time budgets hold.

Results are appended to a JSON file (``--results``, default ``docs/time_to_accuracy.json``) and ``--plot`` draws
``docs/time_to_accuracy.png`` from it: test accuracy against wall clock for every run of each recipe as it is now
defined (each record keeps the recipe's settings; runs of an earlier definition stay in the file as history), scaled
to the reference speed by its calibration, with the peers' points measured on this machine class.

Usage::

    python benchmarks/time_to_accuracy.py --recipe cpu-5min --seeds 42 0 1 --calib ../shared/calib.py
    python benchmarks/time_to_accuracy.py --recipe cpu-15min --seeds 42 0
    python benchmarks/time_to_accuracy.py --plot                 # only redraw the figure from the JSON
    python benchmarks/time_to_accuracy.py --recipe cpu-5min -- --num_train_epochs 7   # extra train.py flags

Never run it while anything else computes on the machine: it measures time.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"epoch (\d+)/(\d+).*test accuracy ([\d.]+)% \(([\d,]+) images\)")
REFERENCE_CALIB_S = 5.45  # the recipes' time budgets hold where calib.py prints this
# Target accuracy (%) and budget (s) per recipe: what each recipe was built to reach.
TARGETS = {"cpu-5min": (93.0, 300.0), "cpu-15min": (94.0, 900.0), "cpu-vit-15min": (90.0, 900.0)}
# Peers measured on this machine class: (label, minutes, accuracy %).
PEERS = [
    ("Ultralytics YOLO11n-cls, from scratch", 14.7, 82.9),
    ("transformers example, 1.8M ViT", 15.3, 71.4),
]


def recipe_settings(name: str) -> dict | None:
    """The recipe's definition as it is now (every field but its prose), as JSON would store it; None if unknown.

    Stored with each run, so that the tables and the plot show only runs of a recipe as it is defined today: a
    recipe that is retuned keeps its name, and its earlier runs stay in the JSON file as history.
    """
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from hf_fmnist.core import recipes

    if name not in recipes.RECIPES:
        return None
    fields = dataclasses.asdict(recipes.RECIPES[name])
    return json.loads(json.dumps({k: v for k, v in fields.items() if k not in ("tuned_for", "result")}))


def current(records: list[dict]) -> list[dict]:
    """The records of each recipe as it is now defined, run without extra flags.

    A record without stored settings, or of a recipe that no longer exists (whose settings are None), is history.
    """
    return [
        r
        for r in records
        if not r.get("extra_args")
        and r.get("recipe_settings") is not None
        and r["recipe_settings"] == recipe_settings(r["recipe"])
    ]


def calibrate(script: str | None) -> float | None:
    """The calibration workload's figure in seconds (None without ``--calib``)."""
    if not script:
        return None
    out = subprocess.run([sys.executable, script], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def run_recipe(recipe: str, seed: int | None, extra: list[str], launcher: list[str]) -> dict:
    """One timed run; returns its printed accuracy lines, final results and the pipeline's accuracy."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model"
        cmd = [*launcher, str(ROOT / "train.py"), "--recipe", recipe, "--output_dir", str(out), *extra]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        print("$", " ".join(cmd[len(launcher) - 3 :]), flush=True)
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        points = []
        for line in proc.stdout:
            match = LINE.search(line)
            if match:
                elapsed = time.perf_counter() - start
                epoch, accuracy, images = int(match.group(1)), float(match.group(3)), match.group(4)
                points.append({"epoch": epoch, "seconds": round(elapsed, 1), "accuracy": accuracy, "images": images})
                print(f"  {elapsed:7.1f} s  epoch {epoch}/{match.group(2)}  {accuracy:.2f}% ({images} images)")
        if proc.wait() != 0:
            sys.exit(f"training failed with exit status {proc.returncode}")
        total = time.perf_counter() - start
        results = json.loads((out / "all_results.json").read_text())
        pipeline_accuracy = score_with_pipeline(out)
    print(
        f"  exit after {total:.1f} s; all_results.json {results['eval_accuracy']:.2%}; "
        f"pipeline on the PIL test images {pipeline_accuracy:.2%}",
        flush=True,
    )
    return {
        "points": points,
        "exit_s": round(total, 1),
        "all_results_accuracy": results["eval_accuracy"],
        "pipeline_accuracy": pipeline_accuracy,
    }


def score_with_pipeline(folder: Path) -> float:
    """Accuracy of the saved folder through stock ``pipeline("image-classification")`` on the 10,000 PIL images."""
    code = (
        "import sys, transformers\n"
        "from hf_fmnist.data.tensors import open_dataset\n"
        "test = open_dataset('fashion_mnist')['test']\n"
        "clf = transformers.pipeline('image-classification', model=sys.argv[1], trust_remote_code=False,\n"
        "                            device='cpu')\n"
        "names = test.features['label'].names\n"
        "out = clf(list(test['image']), top_k=1, batch_size=500)\n"
        "print(sum(o[0]['label'] == names[y] for o, y in zip(out, test['label'])) / len(test))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return float(result.stdout.strip().splitlines()[-1])


def first_reaching(points: list[dict], accuracy: float) -> dict | None:
    return next((p for p in points if p["accuracy"] >= accuracy), None)


def summarise(recipe: str, runs: list[dict]) -> None:
    """Per seed: when the target was first printed (scaled budget), final accuracy; then mean ± std over seeds."""
    target, budget = TARGETS.get(recipe, (None, None))
    for run in runs:
        scale = run["calib_s"] / REFERENCE_CALIB_S if run.get("calib_s") else 1.0
        final = run["points"][-1]
        line = f"{recipe} seed {run['seed']}: final {final['accuracy']:.2f}% at {final['seconds']:.1f} s"
        if target is not None:
            hit = first_reaching(run["points"], target)
            allowed = budget * scale
            line += (
                f"; {target:.1f}% first printed at {hit['seconds']:.1f} s (budget {allowed:.0f} s at calib "
                f"{run.get('calib_s') or REFERENCE_CALIB_S:.2f} s: {'met' if hit['seconds'] <= allowed else 'MISSED'})"
                if hit
                else f"; {target:.1f}% NOT reached"
            )
        print(line)
    finals = [r["all_results_accuracy"] * 100 for r in runs]
    if len(finals) > 1:
        print(
            f"{recipe}: mean {statistics.mean(finals):.2f}% ± {statistics.stdev(finals):.2f} over {len(finals)} seeds"
        )


def markdown(records: list[dict]) -> str:
    """One table per recipe for docs/benchmarks.md: every printed line of every run, raw and at the reference speed."""
    lines = []
    for recipe in dict.fromkeys(r["recipe"] for r in records):
        runs = [r for r in records if r["recipe"] == recipe]
        target, budget = TARGETS.get(recipe, (None, None))
        lines += [
            f"`{recipe}`"
            + (f" (target {target:.1f}% within {budget:.0f} s at the reference speed):" if target else ":")
        ]
        lines += [
            "",
            "| seed | calib (s) | epoch: seconds (at reference speed) → accuracy | pipeline | target first printed |",
        ]
        lines += ["|---|---|---|---|---|"]
        for run in runs:
            scale = REFERENCE_CALIB_S / run["calib_s"] if run.get("calib_s") else 1.0
            cells = "; ".join(
                f"{p['epoch']}: {p['seconds']:.0f} ({p['seconds'] * scale:.0f}) → {p['accuracy']:.2f}%"
                for p in run["points"]
            )
            hit = first_reaching(run["points"], target) if target else None
            verdict = (
                f"{hit['seconds']:.0f} s ({hit['seconds'] * scale:.0f} s; ratio {hit['seconds'] * scale / budget:.2f})"
                if hit
                else "not reached"
            )
            calib = f"{run['calib_before_s']:.2f} / {run['calib_after_s']:.2f}" if run.get("calib_s") else "-"
            lines.append(f"| {run['seed']} | {calib} | {cells} | {run['pipeline_accuracy']:.2%} | {verdict} |")
        finals = [r["all_results_accuracy"] * 100 for r in runs]
        if len(finals) > 1:
            lines += [
                "",
                f"Final accuracy over {len(finals)} seeds: mean {statistics.mean(finals):.2f}% ± "
                f"{statistics.stdev(finals):.2f} (sample std), range {min(finals):.2f}-{max(finals):.2f}%.",
            ]
        lines.append("")
    return "\n".join(lines)


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colors = {"cpu-5min": "tab:blue", "cpu-15min": "tab:green", "cpu-vit-15min": "tab:purple"}
    labelled = set()
    for record in records:
        recipe = record["recipe"]
        scale = REFERENCE_CALIB_S / record["calib_s"] if record.get("calib_s") else 1.0
        minutes = [p["seconds"] * scale / 60 for p in record["points"]]
        accuracy = [p["accuracy"] for p in record["points"]]
        label = None if recipe in labelled else f"hf_fmnist --recipe {recipe}"
        labelled.add(recipe)
        ax.plot(minutes, accuracy, "o-", ms=3, lw=1.2, alpha=0.8, color=colors.get(recipe), label=label)
    for recipe, (target, budget) in TARGETS.items():
        if recipe in labelled:
            ax.plot([budget / 60], [target], "*", ms=12, color=colors[recipe], mec="k", mew=0.6)
    for name, minutes, accuracy in PEERS:
        ax.plot([minutes], [accuracy], "s", ms=7, color="tab:red")
        ax.annotate(name, (minutes, accuracy), textcoords="offset points", xytext=(-8, 8), ha="right", fontsize=8)
    ax.set_xlabel(
        "wall clock from the command's start, minutes at the reference speed (calib.py 5.45 s)\n"
        "imports, data loading and every evaluation included"
    )
    ax.set_ylabel("test accuracy, 10,000 images (%)")
    ax.set_ylim(70, 95.5)
    ax.set_xlim(0, 17)
    ax.grid(alpha=0.3)
    ax.set_title("Fashion-MNIST on a 2-core CPU: time to accuracy (stars: the recipes' targets)")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", help="the recipe to run")
    parser.add_argument("--seeds", type=int, nargs="*", default=[None], help="seeds (default: the recipe's, 42)")
    parser.add_argument("--calib", help="path to the calibration workload (calib.py), run before and after")
    parser.add_argument("--launcher", choices=["accelerate", "python"], default="accelerate")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "time_to_accuracy.json")
    parser.add_argument("--plot", action="store_true", help="draw docs/time_to_accuracy.png from --results")
    parser.add_argument("--markdown", action="store_true", help="print the tables for docs/benchmarks.md")
    parser.add_argument("train_args", nargs="*", help="extra train.py flags, after --")
    args = parser.parse_args()
    exe = Path(sys.executable)
    launcher = (
        [str(exe.with_name("accelerate")), "launch", "--num_processes", "1"]
        if args.launcher == "accelerate"
        else [str(exe)]
    )
    records = json.loads(args.results.read_text()) if args.results.exists() else []
    if args.recipe:
        runs, settings = [], recipe_settings(args.recipe)  # the definition the runs start with
        after = calibrate(args.calib)
        for seed in args.seeds:
            before = after  # one calibration between two runs serves both
            run = run_recipe(args.recipe, seed, args.train_args, launcher)
            after = calibrate(args.calib)
            calib = (before + after) / 2 if before and after else None
            run.update(
                recipe=args.recipe,
                seed=42 if seed is None else seed,
                extra_args=args.train_args,
                recipe_settings=settings,
                date=dt.date.today().isoformat(),
                calib_before_s=before,
                calib_after_s=after,
                calib_s=calib,
            )
            runs.append(run)
            records.append(run)
            args.results.write_text(json.dumps(records, indent=1) + "\n")
        summarise(args.recipe, runs)
    if args.markdown:
        print(markdown(current(records)))
    if args.plot:
        plot(current(records), args.results.with_suffix(".png"))


if __name__ == "__main__":
    main()
