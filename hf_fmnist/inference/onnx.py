"""``hf-fmnist export --format onnx``: ``onnx/model.onnx`` (fp32), ``onnx/model_quantized.onnx`` (int8) and
``onnx/model_fp16.onnx`` (fp16), each verified with onnxruntime before any is kept, and ``onnx/export.json``.

The layout is the one transformers.js and Optimum read: ``onnx/`` next to ``config.json`` and
``preprocessor_config.json`` (in the model folder itself by default). Input ``pixel_values`` (batch, channels, height,
width; the batch size is dynamic; float32 in every file), output ``logits`` (float32). transformers.js loads
``model.onnx`` for dtype fp32 (Node's default), ``model_quantized.onnx`` for q8 (the browser's default) and
``model_fp16.onnx`` for fp16. The graph comes from ``torch.onnx.export(dynamo=False)`` (TorchScript tracing): for
these stock classes it gives a plain, static graph that onnxruntime runs as is. Why not the others: optimum-onnx 0.1
requires transformers < 4.58 (we need >= 5); torch's newer ``dynamo=True`` exporter took 40-47 s per export here
against 5-6 s (2 busy cores). The conversion itself is :mod:`.onnx_convert`.

Order: every gate first, in this process (the model folder's files and config as evaluate and predict check them,
the memory budget for one image of the model's size, what ``onnx/`` holds now); then the native work in a child
process, into a temp folder, so that SIGTERM and Ctrl-C end it at once (exit 143/130, temp folder removed); then the
counts are judged here, on the test images (all 10,000 unless ``max_samples``):

- fp32: the same top-1 class as PyTorch on at least :data:`MIN_AGREEMENT` of 10,000 images (9,990);
- int8 and fp16: lose at most :data:`MAX_LOSS` images of accuracy per 10,000 against PyTorch's: 30 (0.3 points)
  and 5 (0.05 points). A non-finite logit agrees with nothing and is never right.

Only when all pass is the whole ``onnx/`` folder swapped in (:func:`hf_fmnist.atomic.replace_dir`): an earlier
export's files, fp16 or int8 ones included, never survive next to a new model.onnx, and a refused export leaves
what was there before untouched. An existing ``onnx/`` is replaced only if every file in it is one an earlier
``hf-fmnist export`` wrote.

>>> report = export_onnx("out/model")                # doctest: +SKIP
>>> report["dtypes"]["int8"]["correct"], report["images"]  # doctest: +SKIP
(9301, 10000)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..core.export_record import DTYPES, FILES, FORMAT, RECORD
from ..errors import HfFmnistError, printable

ONNX_DIR = "onnx"
ONNX_FILE = FILES["fp32"]
MIN_AGREEMENT = 9_990  # of 10,000 test images: the fp32 file's top-1 class is PyTorch's
MAX_LOSS = {"int8": 30, "fp16": 5}  # test images of accuracy lost against PyTorch, per 10,000 (0.3 and 0.05 points)
PER = 10_000
SIDECARS = ("config.json", "preprocessor_config.json")
STOP_GRACE_S = 3  # a terminated child gets this long before it is killed


def export_onnx(
    model_dir: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    *,
    data_dir: str | None = None,
    max_samples: int | None = None,
    dtypes: tuple[str, ...] = DTYPES,
    for_browser: bool = False,
    log=print,
) -> dict:
    """Export, verify and keep ``OUTPUT/onnx/``; returns the measured counts (the record) and the path.

    ``for_browser``: refuse, before any work, a model whose type transformers.js cannot run (it would export and
    verify fine in onnxruntime, then fail in the browser with "Unsupported model type")."""
    from .. import atomic
    from ..core.export_record import weights_digest
    from ..extras import require

    for module in ("onnx", "onnxruntime"):
        require(module, extra="onnx", command="export")
    if "fp16" in dtypes:
        require("onnxconverter_common", extra="onnx", command="export")
    dtypes = tuple(d for d in DTYPES if d in dtypes or d == "fp32")
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise HfFmnistError(f"{model_dir} has no config.json: pass a model folder written by train.py.")
    out = Path(output_dir) if output_dir is not None else model_dir
    target = out / ONNX_DIR
    _check_replaceable(target)
    check_gates(str(model_dir))
    if for_browser:
        check_transformers_js(str(model_dir))
    _check_sidecars(model_dir, out)
    digest = weights_digest(model_dir)

    created = [d for d in (out,) if not d.exists()]  # removed again if the export fails
    with atomic.writing(out):
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".onnx-", suffix=".tmp", dir=out))
    try:
        with atomic.writing(target, staging=staging):
            report = _convert(model_dir, staging, dtypes, data_dir=data_dir, max_samples=max_samples)
        log(_summary(report))
        _judge(report, model_dir)
        record = {"format": FORMAT, "weights_sha256": digest, **report}
        atomic.write_text(staging / "export.json", json.dumps(record, indent=2) + "\n")
        for name in SIDECARS:  # the layout transformers.js and Optimum read
            if (model_dir / name).is_file() and not (out / name).is_file():
                atomic.write_bytes(out / name, (model_dir / name).read_bytes())
        if target.exists() and not _same_weights(target, digest):
            log(f"Replacing {printable(str(target))}, which an older model's export left")
        atomic.replace_dir(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not target.exists():
            for folder in reversed(created):
                shutil.rmtree(folder, ignore_errors=True)
    return {**record, "path": str(target / ONNX_FILE), "size": (target / ONNX_FILE).stat().st_size}


def check_gates(model_ref: str) -> None:
    """The gates evaluate and predict pass, before any weight is read: the folder and its config
    (``load_config``), and the memory budget for one image of the model's own size and working memory (a ViT of
    1M tokens is refused here in seconds, instead of running for minutes in a native op)."""
    from ..core.loader import Preprocess
    from ..core.models import inference_activation_bytes, load_config, load_image_processor
    from ..image_limits import fit_batch

    config = load_config(model_ref, None, repr(model_ref))
    pre = Preprocess.from_processor(load_image_processor(model_ref), config.num_channels)
    size = pre.crop or pre.size
    # the trace runs 2 images; verification runs PyTorch and up to three sessions on each batch
    working = 4 * inference_activation_bytes(config, pre.channels, size)
    if fit_batch(2, pre.channels, size, working) < 2:
        fit_batch(1, pre.channels, size, 2 * working)  # one line naming the sizes, if not even that fits


def check_transformers_js(model_ref: str) -> None:
    """One line when transformers.js (the pinned 4.3.1) has no class for the model's type."""
    from ..core.models import TRANSFORMERS_JS_TYPES, load_config

    model_type = load_config(model_ref, None, repr(model_ref)).model_type
    if model_type not in TRANSFORMERS_JS_TYPES:
        raise HfFmnistError(
            f"{printable(model_ref)} is a {printable(str(model_type))} model, which transformers.js 4.3.1 cannot run "
            f"(it runs {', '.join(sorted(TRANSFORMERS_JS_TYPES))}): train a preset of one of those types "
            "(--model_name_or_path resnet, convnext, vit or pvt1), or drop --for-browser."
        )


def _convert(model_dir: Path, staging: Path, dtypes, *, data_dir, max_samples) -> dict:
    """Run :mod:`.onnx_convert` in a child process; on any exception here (SIGTERM's ``Terminated``, Ctrl-C's
    ``KeyboardInterrupt``) the child is terminated, and killed if it lingers, before the caller's cleanup runs."""
    spec = {
        "model_dir": str(model_dir),
        "staging": str(staging),
        "dtypes": list(dtypes),
        "data_dir": data_dir,
        "count": max_samples,
    }
    spec_file = staging / ".spec.json"
    spec_file.write_text(json.dumps(spec))
    with open(staging / ".child.log", "wb") as stderr:
        # the child's temp files (onnxruntime's calibration model among them) go inside staging: a killed child's are
        # removed with it
        (staging / ".tmp").mkdir()
        env = {**os.environ, "TMPDIR": str(staging / ".tmp")}
        child = subprocess.Popen(
            [sys.executable, "-m", "hf_fmnist.inference.onnx_convert", str(spec_file)], stderr=stderr, env=env
        )
        try:
            status = child.wait()
        except BaseException:
            child.terminate()
            try:
                child.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            raise
    log = (staging / ".child.log").read_bytes()[-4000:].decode("utf-8", "replace")
    for name in (".spec.json", ".child.log"):
        (staging / name).unlink()
    shutil.rmtree(staging / ".tmp")
    errors = [line for line in log.splitlines() if line.startswith("error: ")]
    if status == 2 and errors:
        raise HfFmnistError(errors[-1].removeprefix("error: "))
    if status != 0:
        raise RuntimeError(f"the ONNX conversion exited with status {status}:\n{log}")  # a bug: keep its trace
    report_file = staging / ".report.json"
    report = json.loads(report_file.read_text())
    report_file.unlink()
    return report


def _allowed(per_10000: int, images: int) -> int:
    """``per_10000`` scaled to ``images`` test images, rounded down (the check is never looser than stated)."""
    return per_10000 * images // PER


def _judge(report: dict, model_dir: Path) -> None:
    """Refuse (nothing kept) an fp32 file that disagrees with PyTorch, or an int8/fp16 file that loses too much."""
    images, reference = report["images"], report["pytorch_correct"]
    fp32 = report["dtypes"]["fp32"]
    if fp32["agree_pytorch"] < images - _allowed(PER - MIN_AGREEMENT, images):
        raise HfFmnistError(
            f"The ONNX export of {printable(str(model_dir))} agrees with PyTorch on only {fp32['agree_pytorch']:,} of "
            f"{images:,} test images (needed: {images - _allowed(PER - MIN_AGREEMENT, images):,}); nothing was "
            f"written. Report this with the model's config.json."
        )
    for dtype, per in MAX_LOSS.items():
        if dtype in report["dtypes"] and reference - report["dtypes"][dtype]["correct"] > _allowed(per, images):
            lost = reference - report["dtypes"][dtype]["correct"]
            raise HfFmnistError(
                f"The {dtype} ONNX file of {printable(str(model_dir))} gets {lost:,} fewer of {images:,} test images "
                f"right than PyTorch (allowed: {_allowed(per, images):,}, {per} per {PER:,}); nothing was written. "
                f"Export without it: --dtypes {','.join(d for d in report['dtypes'] if d != dtype)}."
            )


def _summary(report: dict) -> str:
    images = report["images"]
    parts = [
        f"{dtype} {entry['correct']:,} right, {entry['agree_fp32']:,} agree with fp32"
        for dtype, entry in report["dtypes"].items()
    ]
    fp32 = report["dtypes"]["fp32"]
    return (
        f"onnxruntime on {images:,} test images (PyTorch: {report['pytorch_correct']:,} right): "
        f"fp32 agrees with PyTorch on {fp32['agree_pytorch']:,}, max |logit diff| {fp32['max_abs_diff']:.3g}; "
        + "; ".join(parts)
    )


def _same_weights(target: Path, digest: str) -> bool:
    from ..core.export_record import read_record

    try:
        record = read_record(target.parent)
    except HfFmnistError:
        return False
    return record is not None and record["weights_sha256"] == digest


def _is_ours(path: Path) -> bool:
    import onnx

    from .onnx_convert import MARK

    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception:  # unreadable or not ONNX: certainly not ours
        return False
    return any(prop.key == MARK for prop in graph.metadata_props)


def _check_replaceable(target: Path) -> None:
    """Write only into a real ``onnx/`` folder, replacing it only when everything in it is ours.

    A model folder from a stranger may hold ``onnx`` as a link to a folder of the user's (or ``model.onnx`` as a
    link to a file of theirs): writing through it would put our files, or replace theirs, outside the folder. The
    whole folder is swapped, so anything in it we did not write (a user's notes, someone else's model.onnx) would be
    lost: refused instead.
    """
    if target.is_symlink():
        raise HfFmnistError(
            f"{printable(str(target))} is a link (to {printable(os.readlink(target))}); `hf-fmnist export` writes "
            "only into the folder itself: remove the link, or pass --output DIR."
        )
    if not target.exists():
        return
    if not target.is_dir():
        raise HfFmnistError(f"{printable(str(target))} exists and is not a folder; move it away or pass --output DIR.")
    ours = set(FILES.values()) | {Path(RECORD).name}
    for entry in sorted(target.iterdir()):
        if entry.name.startswith(".onnx-") or entry.name.startswith(".export-"):
            continue  # a temp folder of an export that was killed: ours, and replaced with the folder
        if entry.is_symlink():
            raise HfFmnistError(
                f"{printable(str(entry))} is a link (to {printable(os.readlink(entry))}); `hf-fmnist export` never "
                f"writes through one and replaces the whole {target.name}/ folder: remove it, or pass --output DIR."
            )
        if not entry.is_file() or entry.name not in ours:
            raise HfFmnistError(
                f"{printable(str(entry))} was not written by `hf-fmnist export`, and the export replaces the whole "
                f"{target.name}/ folder; move it away or pass --output DIR."
            )
        if entry.suffix == ".onnx" and not _is_ours(entry):
            raise HfFmnistError(
                f"{printable(str(entry))} exists and was not written by `hf-fmnist export`; move it away or pass "
                f"--output DIR."
            )


def _check_sidecars(model_dir: Path, out: Path) -> None:
    """``--output DIR`` gets the model's config files; a different one already there is not overwritten."""
    if out.resolve() == model_dir.resolve():
        return
    for name in SIDECARS:
        mine, theirs = model_dir / name, out / name
        if theirs.is_symlink():  # copyfile would write through it (a dangling one, into wherever it points)
            raise HfFmnistError(f"{theirs} is a link; pass an empty or new --output folder.")
        if mine.is_file() and theirs.is_file() and mine.read_bytes() != theirs.read_bytes():
            raise HfFmnistError(f"{theirs} exists and differs from {mine}; pass an empty or new --output folder.")


def format_report(report: dict) -> str:
    files = ", ".join(f"onnx/{entry['file']}" for entry in report["dtypes"].values())
    return f"Wrote {files} and {RECORD} in {printable(str(Path(report['path']).parent.parent))}"
