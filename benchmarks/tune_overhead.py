"""What a search costs per trial: `hf-fmnist tune` trials against standalone `train.py` runs with the same settings,
in the same run, on the same machine (issue 23: a trial may be at most 10% slower than the standalone run).

Both sides train exactly the same thing: the search space fixes the learning rate to the recipe's own (one choice),
so every trial's recipe file equals the recipe; the standalone runs take the first trial's recipe file and the
trial's flags (:func:`hf_fmnist.training.tune.trial_config`: the held-out share, an evaluation after every epoch).
Sides alternate (standalone, trial, standalone, trial, ...) so that a machine that speeds up or slows down during
the run affects both alike. Printed per side: the median training seconds (``train_runtime``: optimizer steps only)
and the median wall seconds of a whole run (a standalone run: the process, data decoding, the final test evaluation
and the model folder; a trial: everything between Optuna starting and finishing it, data decoded once per process).

    python benchmarks/tune_overhead.py --recipe cpu-5min --repeats 3 --output_dir /tmp/tune-overhead

Run it on a quiet machine; with cpu-5min it takes about (2 × repeats) × the recipe's 5 minutes. A tiny check:
``--recipe FILE --max_train_samples 2000 --repeats 1``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def standalone(args, recipe_file: Path, folder: Path) -> tuple[float, float]:
    """One `train.py` run with a trial's settings: (training seconds, wall seconds)."""
    from hf_fmnist.training.tune import TuneArgs, trial_config

    config = trial_config(_tune_args(TuneArgs, args, folder.parent), recipe_file, folder)
    flags = ["--output_dir", config.output_dir, "--recipe", str(recipe_file), "--dataset", config.dataset]
    flags += ["--seed", str(config.seed), "--validation_split_percentage", str(config.validation_split_percentage)]
    flags += ["--eval_last_epochs", "0", "--per_device_eval_batch_size", str(config.per_device_eval_batch_size)]
    for name in ("data_dir", "max_train_samples", "cpu_threads"):
        if getattr(config, name) is not None:
            flags += [f"--{name}", str(getattr(config, name))]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hf_fmnist.cli", "train", *flags], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    return json.loads((folder / "all_results.json").read_text())["train_runtime"], wall


def trials(args, out: Path, count: int) -> list[tuple[float, float]]:
    """``count`` trials more of one study in ``out`` (one process per call, as a user's): (training, wall) each."""
    import optuna

    from hf_fmnist.core import recipes

    space = out.parent / "fixed_space.json"
    space.write_text(json.dumps({"learning_rate": {"choices": [recipes.get(args.recipe).learning_rate]}}))
    done = _finished(args, out)
    command = [sys.executable, "-m", "hf_fmnist.cli", "tune", "--output_dir", str(out), "--recipe", args.recipe]
    command += ["--space", str(space), "--pruner", "none", "--n_trials", str(done + count), "--seed", str(args.seed)]
    command += ["--dataset", args.dataset, "--validation_split_percentage", str(args.validation_split_percentage)]
    for name in ("data_dir", "max_train_samples", "cpu_threads"):
        if getattr(args, name) is not None:
            command += [f"--{name}", str(getattr(args, name))]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    study = optuna.load_study(study_name=_study_name(args), storage=f"sqlite:///{out / 'study.db'}")
    new = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE][done:]
    return [(t.user_attrs["train_runtime"], (t.datetime_complete - t.datetime_start).total_seconds()) for t in new]


def _study_name(args) -> str:
    from hf_fmnist.core import recipes

    return f"hf_fmnist-{recipes.get(args.recipe).name}"  # tune's default


def _finished(args, out: Path) -> int:
    if not (out / "study.db").exists():
        return 0
    import optuna

    study = optuna.load_study(study_name=_study_name(args), storage=f"sqlite:///{out / 'study.db'}")
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def _tune_args(kind, args, out: Path):
    return kind(
        output_dir=str(out),
        recipe=args.recipe,
        dataset=args.dataset,
        data_dir=args.data_dir,
        seed=args.seed,
        max_train_samples=args.max_train_samples,
        validation_split_percentage=args.validation_split_percentage,
        cpu_threads=args.cpu_threads,
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", required=True, help="a new folder for the search and the standalone runs")
    p.add_argument("--recipe", default="cpu-5min")
    p.add_argument("--repeats", type=int, default=3, help="runs per side")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data_dir")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max_train_samples", type=int)
    p.add_argument("--validation_split_percentage", type=int, default=10)
    p.add_argument("--cpu_threads", type=int)
    args = p.parse_args(argv)
    root = Path(args.output_dir)
    root.mkdir(parents=True, exist_ok=False)  # a new folder: the runs of another measurement would mix in
    out = root / "search"
    side: dict[str, list[tuple[float, float]]] = {"standalone": [], "trial": []}
    for i in range(args.repeats):
        side["trial"] += trials(args, out, 1)  # the first call also writes trial_0000.json, the standalone recipe
        side["standalone"].append(standalone(args, out / "trials" / "trial_0000.json", root / f"standalone_{i}"))
    medians = {name: [statistics.median(v[k] for v in runs) for k in (0, 1)] for name, runs in side.items()}
    for name, (training, wall) in medians.items():
        print(f"{name:>10}: training {training:8.2f} s  whole run {wall:8.2f} s  ({args.repeats} runs, median)")
    ratio = medians["trial"][0] / medians["standalone"][0]
    print(f"trial / standalone training time: {ratio:.3f} ({'within' if ratio <= 1.10 else 'over'} the 10% allowed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
