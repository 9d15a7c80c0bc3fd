"""``hf-fmnist export --format onnx``: the model as ``onnx/model.onnx``, verified with onnxruntime before it is kept.

The layout is the one transformers.js and Optimum read: ``onnx/model.onnx`` next to ``config.json`` and
``preprocessor_config.json`` (in the model folder itself by default). Input ``pixel_values`` (batch, channels, height,
width; the batch size is dynamic), output ``logits``. The graph comes from ``torch.onnx.export(dynamo=False)``
(TorchScript tracing): for these stock RegNet/ViT/PVTv2 classes it gives a plain, static graph that onnxruntime runs
as is, in seconds. Why not the others: optimum-onnx 0.1 requires transformers < 4.58 (we need >= 5); torch's newer
``dynamo=True`` exporter also handles the cnn and vit presets (same logits to 1e-6) but took 40-47 s per export
here against 5-6 s (2 busy cores): worth switching to when torch drops the TorchScript exporter, which it already
calls legacy.

The file is written under a temporary name, then checked on the whole test split (the model's own preprocessing,
onnxruntime CPU against PyTorch): only when the top-1 class agrees on at least :data:`MIN_AGREEMENT` of the images is
it renamed to ``model.onnx``. A failed export leaves nothing behind.

>>> report = export_onnx("out/model")          # doctest: +SKIP
>>> report["agreement"], report["max_abs_diff"]  # doctest: +SKIP
(1.0, 2.1e-06)
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from ..errors import HfFmnistError, printable

ONNX_DIR = "onnx"
ONNX_FILE = "model.onnx"
MIN_AGREEMENT = 0.999  # fraction of test images with the same top-1 class as PyTorch
OPSET = 17  # LayerNorm and everything RegNet/ViT need; supported by onnxruntime >= 1.14 and transformers.js
MARK = "hf_fmnist.export"  # metadata key: an existing model.onnx carrying it is ours to replace
SIDECARS = ("config.json", "preprocessor_config.json")
BATCH = 500  # images per forward pass when verifying


def export_onnx(
    model_dir: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    *,
    data_dir: str | None = None,
    max_samples: int | None = None,
    log=print,
) -> dict:
    """Export, verify and keep ``OUTPUT/onnx/model.onnx``; returns the verification numbers and the path."""
    from ..extras import require

    for module in ("onnx", "onnxruntime"):
        require(module, extra="onnx", command="export")
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise HfFmnistError(f"{model_dir} has no config.json: pass a model folder written by train.py.")
    out = Path(output_dir) if output_dir is not None else model_dir
    target = out / ONNX_DIR / ONNX_FILE
    _check_replaceable(target)
    model, processor, _ = _load(model_dir)
    _check_sidecars(model_dir, out)

    work = out / ONNX_DIR / f".export-{uuid.uuid4().hex[:8]}"
    created = [d for d in (out, out / ONNX_DIR) if not d.exists()]  # removed again if the export fails
    work.mkdir(parents=True)
    try:
        _export_graph(
            model, work / ONNX_FILE, model.config.num_channels, _input_size(processor, model.config.num_channels)
        )
        _mark(work / ONNX_FILE)
        report = verify(model, processor, work / ONNX_FILE, data_dir=data_dir, max_samples=max_samples)
        log(
            f"onnxruntime vs PyTorch on {report['images']:,} test images: top-1 agreement {report['agreement']:.4%}, "
            f"max |logit diff| {report['max_abs_diff']:.3g}"
        )
        if report["agreement"] < MIN_AGREEMENT:
            raise HfFmnistError(
                f"The ONNX export of {model_dir} agrees with PyTorch on only {report['agreement']:.2%} of the test "
                f"images (needed: {MIN_AGREEMENT:.1%}); nothing was written. Report this with the model's config.json."
            )
        for name in SIDECARS:  # the layout transformers.js and Optimum read
            if (model_dir / name).is_file() and not (out / name).is_file():
                shutil.copyfile(model_dir / name, out / name)
        os.replace(work / ONNX_FILE, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not target.exists():
            for folder in reversed(created):
                shutil.rmtree(folder, ignore_errors=True)
    return {**report, "path": str(target), "size": target.stat().st_size}


def _load(model_dir: Path):
    import torch

    from .evaluate import load_for_inference

    model, processor, names = load_for_inference(str(model_dir))
    # Exported on the CPU in float32 and the default memory layout: the graph must not depend on where we ran.
    model = model.to("cpu", dtype=torch.float32, memory_format=torch.contiguous_format).eval()
    return model, processor, names


def _input_size(processor, channels: int) -> tuple[int, int]:
    from ..core.loader import Preprocess

    pre = Preprocess.from_processor(processor, channels)
    return pre.crop or pre.size


def _logits_only(model):
    """``model(pixel_values).logits`` as a plain module: the ONNX graph gets one named output, no ModelOutput."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return self.model(pixel_values=pixel_values).logits

    return Logits().eval()


def _export_graph(model, path: Path, channels: int, size: tuple[int, int]) -> None:
    import warnings

    import torch

    example = torch.zeros(2, channels, *size)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about Python-side shape checks, constant for a fixed size
        torch.onnx.export(
            _logits_only(model),
            (example,),
            str(path),
            input_names=["pixel_values"],
            output_names=["logits"],
            dynamic_axes={"pixel_values": {0: "batch_size"}, "logits": {0: "batch_size"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _mark(path: Path) -> None:
    """Record in the file that hf_fmnist wrote it (so a later export may replace it, and nothing else's)."""
    import onnx

    from .. import __version__

    graph = onnx.load(str(path))
    onnx.helper.set_model_props(graph, {MARK: __version__})
    onnx.save(graph, str(path))


def _is_ours(path: Path) -> bool:
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception:  # unreadable or not ONNX: certainly not ours
        return False
    return any(prop.key == MARK for prop in graph.metadata_props)


def _check_replaceable(target: Path) -> None:
    """Write only into a real ``onnx/`` folder, replacing only a ``model.onnx`` of ours.

    A model folder from a stranger may hold ``onnx`` as a link to a folder of the user's (or ``model.onnx`` as a
    link to a file of theirs): writing through it would put our files, or replace theirs, outside the folder.
    """
    for path in (target.parent, target):
        if path.is_symlink():
            raise HfFmnistError(
                f"{path} is a link (to {printable(os.readlink(path))}); `hf-fmnist export` writes only into the "
                f"folder itself: remove the link, or pass --output DIR."
            )
    if target.parent.exists() and not target.parent.is_dir():
        raise HfFmnistError(f"{target.parent} exists and is not a folder; move it away or pass --output DIR.")
    if target.exists() and not _is_ours(target):
        raise HfFmnistError(
            f"{target} exists and was not written by `hf-fmnist export`; move it away or pass --output DIR."
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


def verify(model, processor, onnx_path: Path, *, data_dir: str | None = None, max_samples: int | None = None) -> dict:
    """Top-1 agreement and max |logit difference| of onnxruntime (CPU) vs the PyTorch model on the real test split."""
    import onnxruntime as ort
    import torch

    from ..core.loader import Preprocess
    from ..core.models import inference_activation_bytes
    from ..data.tensors import load_tensors
    from ..image_limits import fit_batch

    images, _ = load_tensors("test", data_dir=data_dir)
    images = images[:max_samples]
    preprocess = Preprocess.from_processor(processor, model.config.num_channels)
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False  # the arena keeps its peak for the session's life, outside any budget
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    agree, max_diff = 0, 0.0
    # PyTorch and onnxruntime each run the batch: twice the model's working memory per image, within the budget
    working = 2 * inference_activation_bytes(model.config, preprocess.channels, preprocess.size)
    batch = fit_batch(BATCH, preprocess.channels, preprocess.size, working)
    for start in range(0, len(images), batch):
        pixels = preprocess(images[start : start + batch]).contiguous()
        with torch.inference_mode():
            expected = model(pixel_values=pixels).logits.float().numpy()
        got = session.run(["logits"], {"pixel_values": pixels.numpy()})[0]
        agree += int((got.argmax(1) == expected.argmax(1)).sum())
        max_diff = max(max_diff, float(np.abs(got - expected).max()))
    return {"images": len(images), "agreement": agree / len(images), "max_abs_diff": max_diff}


def format_report(report: dict) -> str:
    return (
        f"Wrote {report['path']} ({report['size'] / 1e6:.2f} MB): same top-1 class as PyTorch on "
        f"{report['agreement']:.2%} of {report['images']:,} test images, max |logit diff| {report['max_abs_diff']:.3g}"
    )
