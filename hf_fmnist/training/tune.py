"""``hf-fmnist tune``: a hyperparameter search with Optuna, on a held-out share of the training split.

Each trial is a run of :func:`hf_fmnist.training.loop.train` (the loop ``train.py`` runs) from a recipe file written
for it (``trials/trial_N.json``: the base recipe with the trial's values), on the training split minus a seeded,
class-stratified share that every trial is scored on; the test split is never opened (the dataset needs none). The
data is decoded and put on the device once per process (:class:`DataCache`). Every evaluated epoch is reported to
Optuna, whose pruner stops weak trials; a trial whose loss is not finite is recorded as failed, and the search goes on.

The study lives in ``OUTPUT_DIR/study.db`` (SQLite) unless ``--storage URL`` names a shared database; running the same
command again resumes it. The best trial becomes ``OUTPUT_DIR/best_recipe.json``, which ``train.py --recipe FILE``
takes; the command that retrains it on the whole training split and reports test accuracy is printed at the end.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import atomic, ownership
from ..core import recipes
from ..core.config import REPORTERS, FlagParser, TrainConfig
from ..errors import HfFmnistError, error_line, one_line
from . import space as search_space
from .loop import Data, Diverged, Evaluation, Run, load_data, train
from .preemption import EXIT_PREEMPTED, Preempted, StopSignals
from .tune_report import TrialProgress, format_table, table, write_plots, write_table

TUNE_OUTPUT = "tune-output"  # the ownership marker of a tune output folder
STUDY_FILE = "study.db"
BEST_RECIPE = "best_recipe.json"
PRUNERS = ("median", "hyperband", "none")
ATTR = "hf_fmnist"  # the study's user attribute recording what it searches: a resumed study must search the same


@dataclass(frozen=True)
class TuneArgs:
    output_dir: str
    recipe: str = "cpu-5min"
    n_trials: int | None = None
    timeout: float | None = None
    space: str | None = None
    storage: str | None = None
    study_name: str | None = None
    pruner: str = "median"
    validation_split_percentage: int = 10
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    seed: int = 42
    max_train_samples: int | None = None
    per_device_eval_batch_size: int = 1000
    cpu_threads: int | None = None
    report_to: str | None = None

    def __post_init__(self) -> None:
        if self.n_trials is not None and self.n_trials < 1:
            raise HfFmnistError(f"--n_trials must be a positive number of trials, not {self.n_trials}.")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise HfFmnistError(f"--timeout must be a positive number of seconds, not {self.timeout}.")
        if not 0 < self.validation_split_percentage < 100:
            raise HfFmnistError(f"--validation_split_percentage must be 1-99, not {self.validation_split_percentage}.")
        if self.pruner not in PRUNERS:
            raise HfFmnistError(f"--pruner {self.pruner!r} is not one of {', '.join(PRUNERS)}.")
        for reporter in (self.report_to or "tensorboard").split(","):
            if reporter.strip() not in REPORTERS:
                raise HfFmnistError(f"--report_to {reporter.strip()!r} is not one of {', '.join(REPORTERS)}.")

    @property
    def trials_wanted(self) -> int | None:
        """Finished trials (complete or pruned) the study should hold; 20 when neither a count nor a budget is given."""
        return self.n_trials if self.n_trials is not None or self.timeout is not None else 20


class DataCache:
    """The training split and its held-out share, decoded and on the device once per process for every trial."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.value: Data | None = None
        self.loads = 0  # how often the data was decoded and moved (the tests and the benchmark read it)

    def get(self, config: TrainConfig, accelerator) -> Data:
        key = (config.dataset, config.data_dir, config.max_train_samples, config.validation_split_percentage,
               config.seed, str(accelerator.device))  # fmt: skip
        if key != self.key or self.value is None:
            self.value, self.key = load_data(config, accelerator, test=False), key
            self.loads += 1
        return self.value


class SearchTrial:
    """What one Optuna trial adds to :func:`train` (:class:`hf_fmnist.training.loop.Trial`)."""

    def __init__(self, trial, cache: DataCache):
        self.trial, self.cache = trial, cache

    def data(self, config: TrainConfig, accelerator) -> Data:
        return self.cache.get(config, accelerator)

    def report(self, run: Run, epoch: int, loss: float, evaluation: Evaluation | None) -> None:
        import optuna

        if not math.isfinite(loss):
            raise Diverged(f"Trial {self.trial.number} diverged: training loss {loss} after epoch {epoch + 1}")
        if evaluation is None:
            return
        self.trial.report(evaluation.report["accuracy"], epoch + 1)
        last = epoch + 1 >= run.settings.num_train_epochs  # a finished trial is complete, whatever its rank
        if not last and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")


# --- the search --------------------------------------------------------------------------------------------------


def tune(args: TuneArgs, signals: StopSignals | None = None) -> dict:
    """Run (or resume) the search; returns a summary (best trial, recipe file, table, plots)."""
    _optuna()  # the extra, checked before anything is read
    base = recipes.get(args.recipe)
    if base.model is None:
        raise HfFmnistError(f"--recipe {args.recipe} fine-tunes a checkpoint; tune a recipe that trains a preset.")
    space = search_space.load(args.space, base) if args.space else search_space.default_space(base)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # one trial per process; processes would race for trials
        raise HfFmnistError(
            "hf-fmnist tune runs each trial in one process; start it without torchrun/accelerate launch (several "
            "workers share a study through --storage instead)."
        )
    out = Path(args.output_dir)
    check_output_dir(out)
    with atomic.writing(out):
        out.mkdir(parents=True, exist_ok=True)
        held = ownership.lock(out, "--output_dir")
        ownership.mark(out, TUNE_OUTPUT)
    if args.report_to and {"trackio", "all"} & {r.strip() for r in args.report_to.split(",")}:
        # trackio keeps one store per process: the search's, under its output folder, holds every trial's run;
        # like a training run's tracker folder, it is never written through a link
        atomic.check_no_links_below(out, out / "runs", "Tracker folder")
        os.environ.setdefault("TRACKIO_DIR", str((out / "runs" / "trackio").absolute()))
    try:
        study = open_study(args, base, space, out)
        return search(args, base, space, study, out, signals)
    finally:
        ownership.unlock(held)


def open_study(args: TuneArgs, base: recipes.Recipe, space: list, out: Path):
    """The study, new or resumed: the same recipe, space and held-out share, else one line (nothing changed)."""
    optuna = _optuna()
    name = args.study_name or f"hf_fmnist-{base.name}"
    storage = make_storage(args.storage, out)
    wanted = {
        "recipe": recipes.to_dict(base),
        "space": search_space.describe(space),
        "validation_split_percentage": args.validation_split_percentage,
        "seed": args.seed,
    }
    existing = {s.study_name: s for s in storage.get_all_studies()}
    if name in existing:
        found = existing[name].user_attrs.get(ATTR)
        if found != json.loads(json.dumps(wanted)):
            what = [
                k for k in wanted if not isinstance(found, dict) or found.get(k) != json.loads(json.dumps(wanted[k]))
            ]
            raise HfFmnistError(
                f"Study {name!r} in {describe_storage(args.storage, out)} searches another "
                f"{', '.join(what) or 'setting'} than this command; resume it with the same --recipe, --space, "
                f"--validation_split_percentage and --seed, or pass another --study_name or --output_dir."
            )
    study = _retry_race(
        lambda: optuna.create_study(
            study_name=name,
            storage=storage,
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=args.seed),
            pruner=make_pruner(args.pruner),
            load_if_exists=True,
        )
    )
    if name not in existing:
        _retry_race(lambda: study.set_user_attr(ATTR, wanted))
        if study.user_attrs.get(ATTR) != json.loads(json.dumps(wanted)):  # another worker created it otherwise
            raise HfFmnistError(
                f"Study {name!r} in {describe_storage(args.storage, out)} was just created by another worker with "
                f"other settings; start every worker with the same --recipe, --space, --validation_split_percentage "
                f"and --seed."
            )
    if args.storage is None:  # the output folder is locked: a trial still "running" here was cut off by a crash
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    return study


def make_storage(url: str | None, out: Path):
    """Optuna's RDB storage: ``url``, or SQLite in the output folder. One line if it cannot be opened."""
    optuna = _optuna()
    target = url or f"sqlite:///{(out / STUDY_FILE).absolute()}"
    # Shared storage: a worker that dies leaves its trial "running"; the heartbeat lets the others mark it failed.
    heartbeat = {} if url is None else {"heartbeat_interval": 30, "grace_period": 120}
    try:
        with warnings.catch_warnings():  # the heartbeat is "experimental" (since Optuna 2.9)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _retry_race(
                lambda: optuna.storages.RDBStorage(target, engine_kwargs=_engine_kwargs(target), **heartbeat)
            )
    except Exception as e:  # sqlalchemy and the drivers raise many types for a URL that cannot connect
        raise HfFmnistError(
            f"--storage {describe_storage(url, out)} cannot be opened ({type(e).__name__}: {one_line(e, 200)}); "
            f"check the URL, the server and its credentials."
        ) from None


def _retry_race(action, tries: int = 5):
    """``action()``, again after a moment when it lost a race with another worker creating the same rows or tables
    (workers started together on a new database both create Optuna's tables, its study and its attributes)."""
    from sqlalchemy.exc import IntegrityError

    for attempt in range(tries):
        try:
            return action()
        except IntegrityError:
            if attempt == tries - 1:
                raise
            time.sleep(0.5 + attempt)


def _engine_kwargs(url: str) -> dict:
    """Fail fast on a server that does not answer, instead of waiting for the driver's default timeout."""
    return {"connect_args": {"connect_timeout": 10}} if url.startswith("postgresql") else {}


def describe_storage(url: str | None, out: Path) -> str:
    """The storage for a message, its password hidden."""
    if url is None:
        return str(out / STUDY_FILE)
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: say so without echoing what may be a secret
        return "(not a database URL)"


def make_pruner(name: str):
    """median: stop a trial whose accuracy after an epoch is below the median of earlier trials' at that epoch
    (after 2 trials and 1 epoch); hyperband: successive halving over the epochs; none: run every trial out."""
    optuna = _optuna()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    return optuna.pruners.NopPruner()


def search(args: TuneArgs, base: recipes.Recipe, space: list, study, out: Path, signals: StopSignals | None) -> dict:
    optuna = _optuna()
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    wanted = args.trials_wanted
    cache = DataCache()
    # an earlier search's trials/ (or anything below it) swapped for a link would take each trial's files elsewhere
    atomic.check_no_links_below(out, out / "trials", "Trial folder")
    (out / "trials").mkdir(exist_ok=True)
    progress = TrialProgress(study, wanted, done)

    def objective(trial) -> float:
        return run_trial(args, base, space, trial, cache, out, signals)

    failed = []

    def after(study, trial) -> None:
        if trial.state in finished:
            progress.update(study)
        else:  # failed trials do not count towards --n_trials, but as many failures as trials wanted end the search
            failed.append(trial.number)
            if len(failed) >= (wanted or 20):
                study.stop()
        if signals is not None and signals.received:  # a signal between trials: stop before the next one
            study.stop()

    callbacks = [after]
    if wanted is not None:
        callbacks.append(optuna.study.MaxTrialsCallback(wanted, states=finished))
    start = time.perf_counter()
    try:
        if wanted is None or done < wanted:
            study.optimize(
                objective,
                n_trials=None,  # MaxTrialsCallback counts the study's finished trials, those of other workers too
                timeout=args.timeout,
                catch=(Diverged,),  # the loop's check of the loss and weights: a failed trial, the search goes on
                callbacks=callbacks,
            )
    finally:
        progress.close()
    if signals is not None and signals.received:
        raise Preempted(signals.received, 0, out)
    summary = summarise(args, base, space, study, out, time.perf_counter() - start)
    summary["data_loads"] = cache.loads  # 1 when any trial ran: the data is decoded once per process
    return summary


def run_trial(
    args: TuneArgs, base: recipes.Recipe, space: list, trial, cache: DataCache, out: Path, signals=None
) -> float:
    """One trial: its recipe file, then :func:`train` on the held-out split; its held-out accuracy. A stop signal
    that came before training started cuts the trial off here (training heeds the ones that come later)."""
    values = {p.name: p.suggest(trial) for p in space}
    trial.set_user_attr("values", values)
    recipe = search_space.apply(
        base, f"trial-{trial.number}", values, f"trial {trial.number} of a search from {base.name}"
    )
    recipe_file = atomic.write_text(
        out / "trials" / f"trial_{trial.number:04d}.json", json.dumps(recipes.to_dict(recipe), indent=2) + "\n"
    )
    config = trial_config(args, recipe_file, out / "trials" / f"trial_{trial.number:04d}")
    if signals is not None and signals.received:
        raise Preempted(signals.received, 0, out)
    results = train(config, SearchTrial(trial, cache))
    assert results is not None  # one process
    trial.set_user_attr("train_runtime", results["train_runtime"])
    return float(results["validation_accuracy"])


def trial_config(args: TuneArgs, recipe_file: Path, folder: Path) -> TrainConfig:
    """The ``train.py`` settings of a trial: its recipe file, the data, the held-out share, an evaluation after every
    epoch (for the pruner), and the trackers; ``benchmarks/tune_overhead.py`` runs the same standalone."""
    return TrainConfig(
        output_dir=str(folder),
        recipe=str(recipe_file),
        dataset=args.dataset,
        data_dir=args.data_dir,
        seed=args.seed,
        max_train_samples=args.max_train_samples,
        per_device_eval_batch_size=args.per_device_eval_batch_size,
        validation_split_percentage=args.validation_split_percentage,
        eval_last_epochs=0,
        cpu_threads=args.cpu_threads,
        with_tracking=args.report_to is not None,
        report_to=args.report_to or "tensorboard",
    )


def check_output_dir(out: Path) -> None:
    """A new or empty folder, or one that `hf-fmnist tune` wrote before."""
    ownership.check_writable_by(
        out, "--output_dir", TUNE_OUTPUT, "hf-fmnist tune", resume=", or the folder of the search to resume"
    )


# --- what users see ----------------------------------------------------------------------------------------------


def summarise(args: TuneArgs, base: recipes.Recipe, space: list, study, out: Path, seconds: float) -> dict:
    optuna = _optuna()
    rows = table(study)
    csv_path, json_path = write_table(rows, out)
    plots = write_plots(study, out)
    print(format_table(rows))
    print(f"Trials: {csv_path} and {json_path}; plots: {', '.join(p.name for p in plots) or 'none yet'}")
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    summary: dict = {"trials": rows, "plots": plots, "best": None, "recipe": None, "seconds": seconds}
    if not complete:
        print("No trial completed yet, so no recipe was written; run the same command again to go on.")
        return summary
    best = study.best_trial
    finished = len(
        study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    )
    recipe = search_space.apply(
        base,
        f"tuned-{base.name}",
        best.user_attrs["values"],
        f"hf-fmnist tune from {base.name}: trial {best.number} of {finished}, held-out accuracy {best.value:.4f} on "
        f"{args.validation_split_percentage}% of the training split (seed {args.seed})",
    )
    path = atomic.write_text(out / BEST_RECIPE, json.dumps(recipes.to_dict(recipe), indent=2) + "\n")
    command = retrain_command(args, path, out)
    print(f"Best: trial {best.number}, held-out accuracy {best.value:.2%}. Recipe: {path}")
    print(f"Retrain it on the whole training split and report test accuracy:\n  {command}")
    summary.update(best=best.number, value=best.value, recipe=path, command=command)
    return summary


def retrain_command(args: TuneArgs, recipe_file: Path, out: Path) -> str:
    import shlex

    parts = [
        "hf-fmnist",
        "train",
        "--recipe",
        str(recipe_file),
        "--output_dir",
        str(out / "retrain"),
        "--seed",
        str(args.seed),
    ]
    if args.dataset != TrainConfig.__dataclass_fields__["dataset"].default:
        parts += ["--dataset", args.dataset]
    if args.data_dir:
        parts += ["--data_dir", args.data_dir]
    if args.max_train_samples:
        parts += ["--max_train_samples", str(args.max_train_samples)]
    return shlex.join(parts)


# --- the command -------------------------------------------------------------------------------------------------


def parser() -> FlagParser:
    p = FlagParser(
        prog="hf-fmnist tune",
        description="Search training settings with Optuna (TPE, seeded) on a held-out share of the training split; "
        "the test split is never read. Writes the best settings as a recipe file for train.py --recipe.",
    )
    p.add_argument(
        "--output_dir", required=True, help="folder for the study (study.db), trials, table, plots and recipe"
    )
    p.add_argument("--recipe", default="cpu-5min", help="the recipe to start from: a name or a JSON recipe file")
    p.add_argument(
        "--n_trials",
        type=int,
        help="finished (complete or pruned) trials the study should hold; default 20 without --timeout",
    )
    p.add_argument(
        "--timeout", type=float, help="stop starting trials after this many seconds (the running one finishes)"
    )
    p.add_argument("--space", help="a YAML or JSON search-space file (default: the recipe's, see docs/training.md)")
    p.add_argument(
        "--storage",
        help="an Optuna RDB URL (postgresql://..., sqlite:///...) to share the study; default: OUTPUT_DIR/study.db",
    )
    p.add_argument("--study_name", help="default: hf_fmnist-RECIPE")
    p.add_argument("--pruner", default="median", help=f"{', '.join(PRUNERS)} (see docs/training.md)")
    p.add_argument(
        "--validation_split_percentage",
        type=int,
        default=10,
        help="held-out share of the training split (stratified; the same cut for every trial)",
    )
    p.add_argument("--dataset", default="fashion_mnist", help="as train.py's; only its training split is read")
    p.add_argument("--data_dir", help="as train.py's")
    p.add_argument("--seed", type=int, default=42, help="the sampler's, every trial's, and the held-out cut's seed")
    p.add_argument("--max_train_samples", type=int, help="use only the first N training images (quick searches, tests)")
    p.add_argument("--per_device_eval_batch_size", type=int, default=1000, help="as train.py's")
    p.add_argument("--cpu_threads", type=int, help="as train.py's")
    p.add_argument("--report_to", help=f"log each trial as a run to these trackers: {', '.join(REPORTERS)}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hf-fmnist tune``: user errors one line (exit 2); stopped by SIGTERM/SIGUSR1, the trial in
    progress is recorded as failed and the status is 75 (run the same command again to resume)."""
    try:
        args = TuneArgs(**vars(parser().parse_args(argv)))
        with StopSignals() as signals:
            summary = tune(args, signals)
    except HfFmnistError as e:
        print(error_line(e), file=sys.stderr)
        return 2
    except Preempted as e:
        print(f"Stopped by {e.signal_name}: the trial in progress is recorded as failed, finished trials are kept "
              f"in the study; run the same command again to go on.", file=sys.stderr)  # fmt: skip
        return EXIT_PREEMPTED
    return 0 if summary["best"] is not None else 1


def _optuna():
    from ..extras import require

    optuna = require("optuna", extra="tune", command="tune")
    # the bar and the table say what happens; a failed trial is a row of the table, and an error that ends the search
    # is one line from main(): Optuna's own warning would print its traceback first
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna
