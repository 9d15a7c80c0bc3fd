"""What ``hf-fmnist tune`` shows of a study: a bar over trials, the table of trials (printed, CSV and JSON) and
Optuna's matplotlib plots. Only called with Optuna installed (:mod:`hf_fmnist.training.tune` checks the extra)."""

from __future__ import annotations

import csv
import io
import json
import sys
import warnings
from pathlib import Path

from .. import atomic


class TrialProgress:
    """A bar over trials with the best held-out accuracy so far."""

    def __init__(self, study, total: int | None, initial: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, unit="trial", desc="tune", file=sys.stderr, position=0)
        self._best(study)

    def _best(self, study) -> None:
        best = best_value(study)
        if best is not None:
            self.bar.set_postfix(best_validation_accuracy=f"{best:.2%}", refresh=True)

    def update(self, study) -> None:
        self.bar.update(1)
        self._best(study)

    def close(self) -> None:
        self.bar.close()


def best_value(study) -> float | None:
    import optuna

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max((t.value for t in done), default=None)


def table(study) -> list[dict]:
    """Every trial, best first: complete ones by held-out accuracy, then pruned ones by their last, then the rest."""
    import optuna

    order = {optuna.trial.TrialState.COMPLETE: 0, optuna.trial.TrialState.PRUNED: 1}
    rows = []
    for t in study.get_trials(deepcopy=False):
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        value = t.value if t.state == optuna.trial.TrialState.COMPLETE else last
        duration = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "validation_accuracy": value,
                "epochs": max(t.intermediate_values) if t.intermediate_values else 0,
                "seconds": None if duration is None else round(duration, 1),
                **{k: v for k, v in sorted(t.user_attrs.get("values", {}).items())},
            }
        )
    rows.sort(
        key=lambda r: (
            order.get(optuna.trial.TrialState[r["state"].upper()], 2),
            -(r["validation_accuracy"] or 0),
            r["trial"],
        )
    )
    return rows


def write_table(rows: list[dict], out: Path) -> tuple[Path, Path]:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()})
    return (
        atomic.write_text(out / "trials.csv", text.getvalue()),
        atomic.write_text(out / "trials.json", json.dumps(rows, indent=2) + "\n"),
    )


def format_table(rows: list[dict], limit: int = 10) -> str:
    params = [
        k
        for k in dict.fromkeys(k for r in rows for k in r)
        if k not in ("trial", "state", "validation_accuracy", "epochs", "seconds")
    ]
    lines = [f"{'trial':>5}  {'state':<8}  {'val. acc.':>9}  {'epochs':>6}  " + "  ".join(params)]
    for r in rows[:limit]:
        acc = "" if r["validation_accuracy"] is None else f"{r['validation_accuracy']:.2%}"
        shown = "  ".join(_short(r.get(p)) for p in params)
        lines.append(f"{r['trial']:>5}  {r['state']:<8}  {acc:>9}  {r['epochs']:>6}  {shown}")
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more in trials.csv")
    return "\n".join(lines)


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)


PLOTS = {
    "optimization_history.png": "plot_optimization_history",
    "param_importances.png": "plot_param_importances",
    "parallel_coordinate.png": "plot_parallel_coordinate",
    "slice.png": "plot_slice",
}


def write_plots(study, out: Path) -> list[Path]:
    """Optuna's matplotlib plots; those that need more complete trials than there are are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import optuna
    import optuna.visualization.matplotlib as vis

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    written = []
    for name, function in PLOTS.items():
        if len(complete) < (1 if name == "optimization_history.png" else 2):
            continue
        try:
            with warnings.catch_warnings():  # "experimental" (since Optuna 2.2) and matplotlib's axis-limit notes
                warnings.simplefilter("ignore")
                axes = getattr(vis, function)(study)
        except (ValueError, RuntimeError):  # e.g. importances of parameters that never varied
            plt.close("all")
            continue
        figure = np.asarray(axes).flat[0].figure
        written.append(atomic.write_with(out / name, lambda tmp, f=figure: f.savefig(tmp, format="png", dpi=100)))
        plt.close(figure)
    return written
