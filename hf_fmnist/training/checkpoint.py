"""Resumable checkpoints that cannot run code: safetensors for tensors, JSON for everything else, no pickle.

``accelerator.save_state``/``load_state`` unpickle ``custom_checkpoint_*.pkl``, ``random_states_*.pkl`` and
``optimizer.bin`` with ``weights_only=False``: a checkpoint folder from a stranger could run any command on resume.
A checkpoint here is a folder ``step_N/`` or ``epoch_N/`` holding

- ``model.safetensors``: the unwrapped model's weights;
- ``optimizer.safetensors``: the optimizer's tensors, its hyper-parameters as JSON in the file's metadata;
- ``rng_state_{rank}.safetensors``: each process's torch generator states (dropout, stochastic depth);
- ``trainer_state.json``: step, images seen, history, gradient-scaler state, and the sha256 of every other file.
  It is written last, so it marks a complete checkpoint.

The learning-rate schedule is a pure function of the step, so it is re-derived, not stored. Loading checks the format,
every file's digest, every tensor's name and shape, every saved number (a forged one fails at load, not
after hours of training); anything else is one :class:`CheckpointError` line.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import atomic
from ..core.card import MAX_RESUMES, STOP_SIGNALS, resume_problem
from ..errors import HfFmnistError, one_line, printable
from ..image_limits import check_safetensors_header
from .accelerator import agree

FORMAT = "hf_fmnist-checkpoint"
VERSION = 1
STATE_FILE = "trainer_state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
PREFIXES = ("step_", "epoch_")
MAX_STATE_BYTES = 16 << 20  # trainer_state.json holds a few numbers and the history: far below this
MAX_COUNT = 2**53  # images seen, seconds: beyond any real run, and where floats stop counting exactly


class CheckpointError(HfFmnistError):
    """A checkpoint folder is damaged, incomplete or was not written by hf_fmnist."""

    def __init__(self, folder, problem: str):
        super().__init__(
            f"checkpoint {folder} is damaged or was not written by hf_fmnist ({problem}); resume from another "
            f"checkpoint (--resume_from_checkpoint FOLDER) or start over without --resume_from_checkpoint."
        )


@dataclass
class TrainState:
    """Progress that must survive a restart."""

    step: int = 0  # optimizer steps taken
    images_seen: int = 0  # training images processed, all processes
    train_seconds: float = 0.0  # wall time spent training (excluding evaluation), summed over restarts
    history: list = field(default_factory=list)  # one dict per evaluation
    # each time the run was resumed: the step, how many processes wrote the checkpoint and resumed it, and the signal
    # that stopped the run there (None when it resumed from a checkpoint it had simply written), in order
    resumes: list = field(default_factory=list)
    stopped_by: str | None = None  # the signal this checkpoint was written on (set by the loop before its stop save)
    # set by load(), not saved from here (save() writes the live accelerator's): how many processes wrote the
    # checkpoint this run resumed from, None without a resume (or for a checkpoint that does not say)
    written_by_processes: int | None = None

    def to_json(self) -> dict:
        return {
            "step": self.step,
            "images_seen": self.images_seen,
            "train_seconds": self.train_seconds,
            "history": self.history,
            "resumes": self.resumes,
            "stopped_by": self.stopped_by,
        }

    @classmethod
    def from_json(cls, saved: dict, folder, max_steps: int | None = None) -> TrainState:
        """The state in ``saved``, every value checked: a forged one must fail here, not hours into training.

        ``max_steps``: the resuming run's length; a step beyond it would have the schedule re-derived for as many
        steps (10**15 hangs) and can never be trained from.
        """
        checks: dict[str, type | tuple[type, ...]] = {
            "step": int,
            "images_seen": int,
            "train_seconds": (int, float),
            "history": list,
        }
        for key, kind in checks.items():
            value = saved.get(key)
            if (
                not isinstance(value, kind)
                or isinstance(value, bool)
                or (isinstance(value, (int, float)) and not (math.isfinite(value) and 0 <= value <= MAX_COUNT))
            ):
                raise CheckpointError(folder, f"{STATE_FILE}: {key!r} is {value!r}")
        step = saved["step"]
        if max_steps is not None and step > max_steps:
            raise HfFmnistError(
                f"checkpoint {folder} is at step {step:,}, beyond this run's {max_steps:,} training steps; resume it "
                f"with a larger --num_train_epochs or --max_train_steps, or from an earlier checkpoint."
            )
        for i, entry in enumerate(saved["history"]):
            problem = _history_problem(entry, step)
            if problem:
                raise CheckpointError(folder, f"{STATE_FILE}: history entry {i} {problem}")
        resumes, stopped_by = saved.get("resumes", []), saved.get("stopped_by")
        if not isinstance(resumes, list) or len(resumes) > MAX_RESUMES:
            raise CheckpointError(folder, f"{STATE_FILE}: 'resumes' is not a list of at most {MAX_RESUMES} entries")
        for i, entry in enumerate(resumes):
            problem = resume_problem(entry, step)
            if problem:
                raise CheckpointError(folder, f"{STATE_FILE}: resumes entry {i} {problem}")
        if stopped_by is not None and stopped_by not in STOP_SIGNALS:
            raise CheckpointError(folder, f"{STATE_FILE}: 'stopped_by' is {printable(repr(stopped_by))[:40]}")
        return cls(
            step=step,
            images_seen=saved["images_seen"],
            train_seconds=float(saved["train_seconds"]),
            history=list(saved["history"]),
            resumes=list(resumes),
            stopped_by=stopped_by,
        )

    def resumed(self, num_processes: int) -> None:
        """Record a resume from this (just loaded) state on ``num_processes`` processes."""
        self.resumes.append(
            {
                "step": self.step,
                "written_by_processes": self.written_by_processes,
                "num_processes": num_processes,
                "stopped_by": self.stopped_by,
            }
        )
        self.stopped_by = None


# What the loop's end_epoch records per epoch; the plots and the model card read them once training has ended, so a
# forged entry must be refused at load (a KeyError then would lose the whole run). Value: may it be NaN, its range.
HISTORY_KEYS: dict[str, tuple[bool, float, float]] = {
    "epoch": (False, 1, math.inf),
    "step": (False, 0, math.inf),  # at most the checkpoint's own step, checked below
    "train_loss": (True, 0, math.inf),  # NaN when an epoch ran no step
    "eval_accuracy": (False, 0, 1),
    "eval_top5_accuracy": (False, 0, 1),
    "validation_accuracy": (False, 0, 1),  # --validation_split_percentage: the epochs evaluate the held-out share
    "validation_top5_accuracy": (False, 0, 1),
}
HISTORY_REQUIRED = ("epoch", "step", "train_loss")  # what every epoch records; accuracy only where it was evaluated


def _history_problem(entry, step: int) -> str | None:
    """What is wrong with one saved history entry, or None."""
    if not isinstance(entry, dict):
        return f"is {type(entry).__name__}, not an object"
    unknown = sorted(set(entry) - set(HISTORY_KEYS))
    missing = [key for key in HISTORY_REQUIRED if key not in entry]
    if unknown or missing:
        return f"has unknown keys {unknown[:3]} / lacks {missing}"
    for key, value in entry.items():
        nan_ok, low, high = HISTORY_KEYS[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key in ("epoch", "step") and not isinstance(value, int):
            number = False
        if not number or not ((nan_ok and math.isnan(value)) or (math.isfinite(value) and low <= value <= high)):
            return f"has {key!r} = {value!r}"
    if entry["step"] > step:
        return f"has 'step' = {entry['step']!r}, after the checkpoint's own step {step}"
    return None


def is_checkpoint_name(name: str) -> bool:
    prefix = next((p for p in PREFIXES if name.startswith(p)), None)
    return prefix is not None and name[len(prefix) :].isdigit()


def read_state_file(folder: Path) -> dict:
    """``trainer_state.json`` of ``folder``, checked to be one of ours; :class:`CheckpointError` otherwise."""
    path = folder / STATE_FILE
    try:
        if path.is_symlink() or not path.is_file():
            raise CheckpointError(folder, f"no regular {STATE_FILE}")
        if path.stat().st_size > MAX_STATE_BYTES:
            raise CheckpointError(folder, f"{STATE_FILE} is {path.stat().st_size:,} bytes")
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:  # RecursionError: nesting 10**5 deep
        raise CheckpointError(folder, f"{STATE_FILE}: {type(e).__name__}: {one_line(e, 120)}") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise CheckpointError(folder, f"{STATE_FILE} does not say format {FORMAT!r}")
    if saved.get("version") != VERSION:
        raise CheckpointError(
            folder, f"{STATE_FILE} has version {saved.get('version')!r}, this hf_fmnist reads {VERSION}"
        )
    if not isinstance(saved.get("files"), dict):
        raise CheckpointError(folder, f"{STATE_FILE} lists no files")
    return saved


def foreign_files(folder: Path) -> list[str]:
    """What in a checkpoint-named folder hf_fmnist did not write; [] for a complete checkpoint of ours.

    A folder without ``trainer_state.json`` is all foreign (ours only ever appear complete, by rename); one whose
    ``trainer_state.json`` is damaged raises :class:`CheckpointError`, which says so more usefully.
    """
    if folder.is_symlink():
        return [f"{folder.name} (a link)"]
    if not folder.is_dir():
        return [folder.name]
    if not (folder / STATE_FILE).exists():
        return sorted(p.name for p in folder.iterdir()) or [f"{folder.name}/ without {STATE_FILE}"]
    listed = set(read_state_file(folder)["files"]) | {STATE_FILE}
    return sorted(p.name for p in folder.iterdir() if p.name not in listed or p.is_symlink() or not p.is_file())


def is_ours(folder: Path) -> bool:
    """A complete checkpoint of ours holding only the files it lists: the only kind of folder we ever delete."""
    try:
        return not foreign_files(folder)
    except CheckpointError:
        return False


def find_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders under ``output_dir``, oldest first (by optimizer step).

    Folders without ``trainer_state.json`` are unfinished (or not checkpoints at all) and skipped; one whose
    ``trainer_state.json`` is damaged is an error, not a silent fall-back to an older state.
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        if path.is_dir() and not path.is_symlink() and is_checkpoint_name(path.name) and (path / STATE_FILE).exists():
            saved = read_state_file(path)
            step = saved.get("step")
            if not isinstance(step, int) or isinstance(step, bool):
                raise CheckpointError(path, f"{STATE_FILE}: 'step' is {step!r}")
            found.append((step, path.name, path))
    return [p for *_, p in sorted(found)]


def save(accelerator, model, optimizer, state: TrainState, output_dir: str | os.PathLike, name: str) -> Path:
    """Write checkpoint ``output_dir/name`` atomically: a crash never leaves a half checkpoint under its final name.

    The main process writes every file: the other processes send it their generator states, so a checkpoint is
    written by one machine, into one folder (which every machine must see to resume: :func:`check_shared_storage`).
    ``trainer_state.json`` is written last, then the folder is renamed into place (:func:`atomic.replace_dir`); an
    existing folder of that name is replaced only if it is a checkpoint of ours. A full disk or a refusal is one
    :class:`HfFmnistError` line on every process (they agree in one small collective), with the temp folder removed
    and the previous checkpoint of that name intact.
    """
    from accelerate.utils import gather_object

    rng_states = gather_object([_rng_tensors()]) if accelerator.num_processes > 1 else [_rng_tensors()]
    final = Path(output_dir) / name
    problem = None
    if accelerator.is_main_process:
        try:
            _write(accelerator, model, optimizer, state, final, rng_states)
        except HfFmnistError as e:
            problem = str(e)
    agree(accelerator, problem)
    return final


def _write(accelerator, model, optimizer, state: TrainState, final: Path, rng_states: list) -> None:
    from safetensors.torch import save_file

    if final.exists() and not is_ours(final):
        raise HfFmnistError(
            f"{final} exists and is not a checkpoint written by hf_fmnist; move it away (training "
            f"writes its checkpoints as step_N/ and epoch_N/)."
        )
    tmp = final.with_name(f".{final.name}.partial")
    _remove_partial(tmp)
    with atomic.writing(final):
        tmp.mkdir()
    try:

        def put(file: str, tensors: dict, **kw) -> None:
            with atomic.writing(final / file):  # safetensors' error does not name its file
                save_file(tensors, tmp / file, **kw)

        for rank, tensors in enumerate(rng_states):
            put(f"rng_state_{rank}.safetensors", tensors)
        model = accelerator.unwrap_model(model, keep_torch_compile=False)
        put(MODEL_FILE, {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
        tensors, metadata = _flatten_optimizer(optimizer.state_dict())
        put(OPTIMIZER_FILE, tensors, metadata=metadata)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        scaler = accelerator.scaler.state_dict() if getattr(accelerator, "scaler", None) is not None else None
        saved = {
            "format": FORMAT,
            "version": VERSION,
            **state.to_json(),
            "num_processes": accelerator.num_processes,
            "gradient_accumulation_steps": getattr(accelerator, "gradient_accumulation_steps", 1),
            "scaler": scaler,
            "files": files,
        }
        with atomic.writing(final / STATE_FILE):
            (tmp / STATE_FILE).write_text(json.dumps(saved, indent=1) + "\n")
        atomic.replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # ours: created above, holding only what we wrote
        raise


def check_same_everywhere(accelerator, folder: Path | None) -> None:
    """Refuse, on every process, a resume that the processes do not agree on (call it on all of them).

    Each machine resolves ``--resume_from_checkpoint`` on its own disk: without shared storage one may find
    ``step_8/`` and another nothing (it would start over, out of step). One collective of a few bytes.
    """
    if accelerator.num_processes == 1:
        return
    import socket

    from accelerate.utils import gather_object

    mine = None
    if folder is not None:
        try:
            mine = (Path(folder).name, _sha256(Path(folder) / STATE_FILE))
        except OSError:
            mine = (Path(folder).name, "unreadable")
    seen = gather_object([(accelerator.process_index, socket.gethostname(), mine)])
    if len({entry[2] for entry in seen}) > 1:
        main = seen[0]
        other = next(entry for entry in seen if entry[2] != main[2])
        raise HfFmnistError(
            f"the processes do not see the same checkpoint to resume from: process 0 on {main[1]} has "
            f"{_describe(main[2])} in {Path(folder or '').parent}, process {other[0]} on {other[1]} has "
            f"{_describe(other[2])}. Every machine must read the same checkpoint folder: put --output_dir on "
            "storage all machines share (see docs/clusters.md)."
        )


def _describe(seen) -> str:
    return "no checkpoint" if seen is None else f"{seen[0]} (trainer_state.json sha256 {seen[1][:12]})"


SHARED_TOKEN_PREFIX = ".hf_fmnist-shared-"


def check_shared_storage(accelerator, folder: str | os.PathLike, wait_s: float = 5.0) -> None:
    """Refuse at start, with one line on every process, when not every process sees the main process's ``folder``.

    The main process writes the model, card and checkpoints into ``--output_dir``, and every process reads the
    checkpoint back on resume: machines that do not share that folder would train, then fail to resume. The main
    process writes a token file into ``folder`` (or, before it exists, into its nearest existing parent: a folder
    created there later is on the same filesystem); every process looks for it, for up to ``wait_s`` seconds (network
    filesystems may show a new file late); the token is removed. Two small collectives; nothing for one process.
    """
    if accelerator.num_processes == 1:
        return
    import socket
    import time
    import uuid

    from accelerate.utils import broadcast_object_list, gather_object

    where, token, problem = Path(os.path.abspath(folder)), uuid.uuid4().hex, None
    if accelerator.is_main_process:
        while not where.exists() and where != where.parent:
            where = where.parent
        try:
            atomic.write_text(where / f"{SHARED_TOKEN_PREFIX}{token}", token)
        except HfFmnistError as e:
            problem = str(e)
        except OSError as e:
            problem = f"cannot write into {where} ({e.strerror or e}); choose an --output_dir you can write to."
    where, token, problem = broadcast_object_list([str(where), token, problem], from_process=0)
    if problem is not None:
        raise HfFmnistError(problem)
    path = Path(where) / f"{SHARED_TOKEN_PREFIX}{token}"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            sees = path.read_text() == token
        except OSError:
            sees = False
        if sees or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    seen = gather_object([(accelerator.process_index, socket.gethostname(), sees)])
    if accelerator.is_main_process:
        path.unlink(missing_ok=True)
    blind = [entry for entry in seen if not entry[2]]
    if blind:
        rank, host, _ = blind[0]
        raise HfFmnistError(
            f"--output_dir {folder} is not on storage all machines share: process {rank} on {host} cannot see the "
            f"file process 0 on {seen[0][1]} wrote into {where}. Process 0 writes the model, card and checkpoints, "
            "and every process reads the checkpoint back on resume; put --output_dir on a filesystem every machine "
            "mounts (NFS, Lustre, ...), see docs/clusters.md."
        )


def load(folder: Path, accelerator, model, optimizer, scheduler, max_steps: int | None = None) -> TrainState:
    """Restore model, optimizer, generators and schedule from ``folder``; returns the saved :class:`TrainState`.

    ``max_steps``: the resuming run's number of optimizer steps; a checkpoint beyond it is refused.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    if accelerator.num_processes > 1:  # a machine without the main process's disk: say so, not "damaged"
        _check_present(folder, [STATE_FILE], accelerator)
    saved = read_state_file(folder)
    state = TrainState.from_json(saved, folder, max_steps)
    state.written_by_processes = _check_processes(folder, saved, accelerator)
    _check_scaler(folder, saved.get("scaler"))
    _check_present(folder, saved["files"], accelerator)
    _check_digests(folder, saved["files"])
    for name in saved["files"]:  # a forged header, digest updated, is refused before safetensors parses it
        if name.endswith(".safetensors"):
            check_safetensors_header(folder / name, f"checkpoint {folder}: {name}")
    # safetensors takes "cpu", "cuda:0"..., not "cpu:0": what Accelerate names the CPU of a process that a launcher
    # gave a LOCAL_RANK (torchrun, accelerate launch, several machines)
    device = "cpu" if torch.device(accelerator.device).type == "cpu" else str(accelerator.device)
    try:
        weights = load_file(folder / MODEL_FILE, device=device)
        with safe_open(folder / OPTIMIZER_FILE, framework="pt", device=device) as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        rng_file = folder / f"rng_state_{accelerator.process_index}.safetensors"
        rng = load_file(rng_file) if rng_file.name in saved["files"] else None
    except (OSError, SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(folder, f"{type(e).__name__}: {e}") from None
    target = accelerator.unwrap_model(model, keep_torch_compile=False)  # stock keys, no _orig_mod. prefix
    try:
        _check_shapes(target.state_dict(), weights, MODEL_FILE)
        target.load_state_dict(weights)
        # the parameters' shapes, by the index the optimizer's state_dict gives them (in group order)
        shapes = [tuple(p.shape) for g in optimizer.param_groups for p in g["params"]]
        optimizer.load_state_dict(_unflatten_optimizer(tensors, metadata, optimizer.state_dict(), shapes))
        if saved.get("scaler") is not None and getattr(accelerator, "scaler", None) is not None:
            accelerator.scaler.load_state_dict(saved["scaler"])
        if rng is not None:
            _set_rng(rng)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(folder, str(e).splitlines()[0]) from None
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": re-deriving, not training
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(state.step):
            scheduler.step()
    return state


def resumed_line(folder, state: TrainState, num_processes: int) -> str:
    """The log line of a resume: ``Resumed from F at step S (written by N processes, now M)``."""
    written = state.written_by_processes
    return (
        f"Resumed from {printable(str(folder))} at step {state.step} (written by {_processes(written)}, "
        f"now {num_processes})"
    )


def _processes(n: int | None) -> str:
    return "an unknown number of processes" if n is None else f"{n} process{'es' if n != 1 else ''}"


def _check_processes(folder: Path, saved: dict, accelerator) -> int | None:
    """The checkpoint's process count (any works: data order and augmentation are drawn per global batch), and its
    gradient accumulation, which must be this run's. None for a checkpoint that does not say."""
    for key in ("num_processes", "gradient_accumulation_steps"):
        value = saved.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**20):
            raise CheckpointError(folder, f"{STATE_FILE}: {key!r} is {value!r}")
    then, now = saved.get("gradient_accumulation_steps"), getattr(accelerator, "gradient_accumulation_steps", 1)
    if then is not None and then != now:
        raise HfFmnistError(
            f"checkpoint {folder} was written with --gradient_accumulation_steps {then}, this run has {now}: "
            f"BatchNorm statistics and each process's micro-batches depend on it, so the run would not continue "
            f"the one it resumes. Resume with --gradient_accumulation_steps {then} (any number of processes works), "
            "or start over without --resume_from_checkpoint."
        )
    return saved.get("num_processes")


def _check_present(folder: Path, files, accelerator) -> None:
    """Every listed file is there: one missing on this machine means it reads another copy of the folder."""
    import socket

    missing = sorted(str(name) for name in files if not os.path.lexists(folder / str(name)))
    if missing:
        raise HfFmnistError(
            f"checkpoint {folder} lacks {', '.join(missing[:3])} on {socket.gethostname()} (process "
            f"{accelerator.process_index} of {accelerator.num_processes}): this machine does not see the folder "
            "the main process wrote. Put --output_dir on storage all machines share (see docs/clusters.md), or "
            "resume from a complete checkpoint."
        )


SCALER_KEYS = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")


def _check_scaler(folder: Path, scaler) -> None:
    """The fp16 gradient scaler's state: numbers only (GradScaler takes anything and fails at the first step)."""
    if scaler is None:
        return
    if not isinstance(scaler, dict) or not set(scaler) <= set(SCALER_KEYS):
        raise CheckpointError(folder, f"{STATE_FILE}: 'scaler' is not a gradient scaler's state")
    for key, value in scaler.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise CheckpointError(folder, f"{STATE_FILE}: 'scaler' has {key!r} = {value!r}")


def _check_digests(folder: Path, files: dict) -> None:
    for name, digest in files.items():
        path = folder / str(name)
        if "/" in str(name) or name in (".", "..") or path.is_symlink() or not path.is_file():
            raise CheckpointError(folder, f"{name} is missing or not a regular file")
        if _sha256(path) != digest:
            raise CheckpointError(folder, f"{name} does not match its sha256 in {STATE_FILE}")
    for required in (MODEL_FILE, OPTIMIZER_FILE):
        if required not in files:
            raise CheckpointError(folder, f"{STATE_FILE} lists no {required}")


def _check_shapes(expected: dict, got: dict, file: str) -> None:
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{file}: missing {missing[:3]}, unexpected {unexpected[:3]}: another model's checkpoint")
    for key, tensor in expected.items():
        if tuple(got[key].shape) != tuple(tensor.shape) or got[key].dtype != tensor.dtype:
            raise ValueError(
                f"{file}: {key} is {got[key].dtype} {tuple(got[key].shape)}, the model has "
                f"{tensor.dtype} {tuple(tensor.shape)}"
            )


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """An optimizer ``state_dict`` as safetensors tensors plus JSON metadata (hyper-parameters, scalar state)."""
    tensors, scalars = {}, {}
    for index, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": json.dumps(state_dict["param_groups"]), "scalars": json.dumps(scalars)}


def _unflatten_optimizer(tensors: dict, metadata: dict, current: dict, shapes: list | None = None) -> dict:
    """The inverse of :func:`_flatten_optimizer`, checked against the optimizer it is loaded into.

    ``shapes``: each parameter's shape, by index. The optimizer itself checks almost nothing on load: a state tensor
    of another shape or a hyper-parameter of another type fails only at the first step, as a traceback.
    """
    try:
        groups = json.loads(metadata["param_groups"])
        scalars = json.loads(metadata.get("scalars", "{}"))
    except (KeyError, ValueError, RecursionError) as e:
        raise ValueError(f"{OPTIMIZER_FILE}: unreadable metadata ({type(e).__name__})") from None
    params = [p for g in current["param_groups"] for p in g["params"]]
    if not (
        isinstance(groups, list)
        and len(groups) == len(current["param_groups"])
        and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)
        and [p for g in groups for p in g["params"]] == params
        and isinstance(scalars, dict)
    ):
        raise ValueError(f"{OPTIMIZER_FILE}: its parameter groups do not match this model's optimizer")
    for saved, now in zip(groups, current["param_groups"]):
        if set(saved) != set(now):
            raise ValueError(f"{OPTIMIZER_FILE}: hyper-parameters {sorted(set(saved) ^ set(now))} differ")
        for key, value in saved.items():
            if key != "params" and not _same_kind(value, now[key]):
                raise ValueError(
                    f"{OPTIMIZER_FILE}: hyper-parameter {key!r} is {value!r}, this optimizer has {now[key]!r}"
                )
    state: dict[int, dict] = {}
    for name, tensor in tensors.items():
        _, index, key = name.split(".", 2)
        if not index.isdigit() or int(index) not in params:
            raise ValueError(f"{OPTIMIZER_FILE}: state for unknown parameter {index}")
        if shapes is not None:
            _check_state_tensor(name, key, tensor, shapes[params.index(int(index))])
        state.setdefault(int(index), {})[key] = tensor
    for name, value in scalars.items():
        index, _, key = name.partition(".")
        if (
            not index.isdigit()
            or int(index) not in params
            or not isinstance(value, (int, float, bool, type(None)))
            or (isinstance(value, float) and not math.isfinite(value))
        ):
            raise ValueError(f"{OPTIMIZER_FILE}: bad scalar state {name}")
        state.setdefault(int(index), {})[key] = value
    if shapes is not None:
        _check_state_keys(state, groups)
    return {"state": state, "param_groups": groups}


def _same_kind(saved, now) -> bool:
    """Whether a saved hyper-parameter can stand in for the live one: same JSON type, numbers finite and >= 0."""
    if isinstance(now, bool) or now is None:  # flags; foreach/fused may be None (auto) or a bool
        return saved is None or isinstance(saved, bool)
    if isinstance(now, (int, float)):
        return isinstance(saved, (int, float)) and not isinstance(saved, bool) and math.isfinite(saved) and saved >= 0
    if isinstance(now, (list, tuple)):  # betas: JSON gives a list for the tuple
        return isinstance(saved, list) and len(saved) == len(now) and all(map(_same_kind, saved, now))
    return type(saved) is type(now)


def _check_state_tensor(name: str, key: str, tensor: torch.Tensor, shape: tuple) -> None:
    """Adam's per-parameter state: a scalar ``step``, moments of the parameter's shape; all finite."""
    expected = () if key == "step" else shape
    if tuple(tensor.shape) != expected:
        raise ValueError(f"{OPTIMIZER_FILE}: {name} has shape {tuple(tensor.shape)}, its parameter needs {expected}")
    if tensor.is_complex() or not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{OPTIMIZER_FILE}: {name} holds values that are not finite")
    if (key == "step" or key.endswith("_sq")) and bool((tensor < 0).any()):  # sqrt of a negative: NaN weights
        raise ValueError(f"{OPTIMIZER_FILE}: {name} holds negative values")


def _check_state_keys(state: dict[int, dict], groups: list) -> None:
    """Every parameter with state has the same entries: Adam's, when the groups are Adam's (it reads them all)."""
    kinds = {tuple(sorted(entries)) for entries in state.values()}
    expected = None
    if all("betas" in g and "amsgrad" in g for g in groups):
        amsgrad = any(g["amsgrad"] for g in groups)
        expected = tuple(sorted(("step", "exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ())))
    if len(kinds) > 1 or (expected is not None and kinds and kinds != {expected}):
        raise ValueError(f"{OPTIMIZER_FILE}: its per-parameter state holds {sorted(kinds)[:2]}, not Adam's")


def _rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    return tensors


def _set_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["cpu"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(t for t in tensors if t.startswith("cuda."))]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _remove_partial(folder: Path) -> None:
    """Remove a temp folder of ours left by a crash: only if it holds nothing but checkpoint files."""
    if not folder.exists():
        return
    ours = {MODEL_FILE, OPTIMIZER_FILE, STATE_FILE}
    entries = list(folder.iterdir()) if folder.is_dir() and not folder.is_symlink() else None
    if entries is None or any(
        not p.is_file()
        or p.is_symlink()
        or not (p.name in ours or (p.name.startswith("rng_state_") and p.name.endswith(".safetensors")))
        for p in entries
    ):
        raise HfFmnistError(f"{folder} holds files hf_fmnist did not write; move it away and run again.")
    shutil.rmtree(folder)
