"""The trackers ``--report_to`` names: Accelerate's, each an optional extra, each writing its local files under the
run's output folder (``OUTPUT_DIR/runs``), so that what one run writes stays in one folder.

=============  ====================  =========================================================================
name           extra                 where its local files go
=============  ====================  =========================================================================
tensorboard    (installed)           OUTPUT_DIR/runs/hf_fmnist/ (event files; what ``--push_to_hub`` publishes)
trackio        hf_fmnist[trackio]    $TRACKIO_DIR if set, else OUTPUT_DIR/runs/trackio/ (its SQLite store; one
                                     store per process, fixed when trackio is first imported)
wandb          hf_fmnist[wandb]      OUTPUT_DIR/runs/wandb/ (``WANDB_MODE=offline`` keeps it off the network)
mlflow         hf_fmnist[mlflow]     $MLFLOW_TRACKING_URI if set, else a SQLite store OUTPUT_DIR/runs/mlflow/
                                     mlflow.db (MLflow 3 refuses its old file store), artifacts beside it
aim            hf_fmnist[aim]        OUTPUT_DIR/runs/ (its repository)
dvclive        hf_fmnist[dvclive]    OUTPUT_DIR/runs/dvclive/
comet_ml       hf_fmnist[comet_ml]   Comet's servers (an online service; nothing kept locally by us)
clearml        hf_fmnist[clearml]    ClearML's server (an online service; its cache is ~/.clearml)
=============  ====================  =========================================================================

``all`` is every tracker above whose extra is installed (as Accelerate's ``log_with="all"``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from ..core.config import TRACKERS, TrainConfig
from ..errors import HfFmnistError

# The module each tracker imports (tensorboard: torch's writer needs the tensorboard package)
MODULES = {
    "tensorboard": "tensorboard",
    "trackio": "trackio",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "comet_ml": "comet_ml",
    "aim": "aim",
    "clearml": "clearml",
    "dvclive": "dvclive",
}
assert set(MODULES) == set(TRACKERS)


def installed(name: str) -> bool:
    return importlib.util.find_spec(MODULES[name]) is not None


def chosen(config: TrainConfig) -> list[str]:
    """The trackers ``--report_to`` names, each installed, else one line naming the extra that installs it."""
    names = [n.strip() for n in config.report_to.split(",")]
    if "all" in names:
        return [n for n in TRACKERS if installed(n)]
    for name in names:
        if not installed(name):
            extra = "" if name == "tensorboard" else f'pip install "hf_fmnist[{name}]"'
            raise HfFmnistError(
                f"--report_to {name} needs the '{name}' extra ({MODULES[name]} is not installed): "
                f"{extra or 'pip install tensorboard'}"
            )
    return names


def runs_dir(config: TrainConfig) -> Path:
    return Path(config.output_dir) / "runs"


def prepare(config: TrainConfig) -> list[str]:
    """The trackers to pass to ``Accelerator(log_with=...)``, with their local stores pointed under
    ``OUTPUT_DIR/runs`` where only the environment can say so (before the tracker is imported)."""
    names = chosen(config)
    runs = runs_dir(config)
    if "trackio" in names:
        wanted = os.environ.setdefault("TRACKIO_DIR", str((runs / "trackio").absolute()))
        module = sys.modules.get("trackio.utils")
        if module is not None and Path(module.TRACKIO_DIR) != Path(wanted):  # fixed at its import
            raise HfFmnistError(
                f"--report_to trackio: this process already opened trackio's store at {module.TRACKIO_DIR}, not "
                f"{wanted}; run each training in its own process (train.py, hf-fmnist tune), or set TRACKIO_DIR."
            )
    if "mlflow" in names and not os.environ.get("MLFLOW_TRACKING_URI"):
        import mlflow

        # MLflow 3 refuses its old file store; its SQLite store is a file too, created when the run starts
        mlflow.set_tracking_uri(f"sqlite:///{(runs / 'mlflow' / 'mlflow.db').absolute()}")
    return names


def init_kwargs(config: TrainConfig) -> dict:
    """``Accelerator.init_trackers(init_kwargs=...)``: each run named after its output folder, local files under
    ``OUTPUT_DIR/runs``."""
    runs, name = runs_dir(config), Path(config.output_dir).name or "run"
    if "mlflow" in chosen(config):  # called once the output folder is written: its store's folder may be made now
        (runs / "mlflow").mkdir(parents=True, exist_ok=True)
    return {
        "trackio": {"name": name},
        "wandb": {"dir": str(runs), "name": name},
        "mlflow": {"run_name": name, "logging_dir": str((runs / "mlflow" / "artifacts").absolute())},
        "dvclive": {"dir": str(runs / "dvclive")},
    }
