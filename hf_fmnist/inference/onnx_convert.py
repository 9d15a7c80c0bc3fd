"""The native half of ``hf-fmnist export``: ONNX conversion, int8 quantisation, fp16 conversion and verification.

It runs in a child process (``python -m hf_fmnist.inference.onnx_convert SPEC``), started by
:func:`hf_fmnist.inference.onnx.export_onnx` after every gate has passed. Tracing, quantisation and onnxruntime's
sessions spend long stretches in native code, where a Python signal handler never runs: in a child, SIGTERM and Ctrl-C
end the work at once (the parent terminates it, then removes its temp folder), whatever native call is running.

The child writes into the staging folder it is given, and nothing else: ``model.onnx`` (fp32, traced),
``model_quantized.onnx`` (int8, static QDQ: per-channel int8 weights, uint8 activations calibrated with MinMax on
:data:`CALIBRATION_IMAGES` images of the training split; which ops: :data:`QUANTIZED_OPS_CNN`),
``model_fp16.onnx`` (float16 weights and arithmetic, float32 ``pixel_values`` in and ``logits`` out:
transformers.js hands every model its processor's float32 pixels, whatever the dtype, and onnxruntime-node rejects
a float32 tensor for a float16 input), and ``.report.json``: counts only, judged by the parent. A user error is one
``error:`` line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np

from ..errors import HfFmnistError

OPSET = 17  # LayerNorm and everything RegNet/ViT need; supported by onnxruntime >= 1.14 and transformers.js
MARK = "hf_fmnist.export"  # metadata key: an existing ONNX file carrying it is ours to replace
FILES = {"fp32": "model.onnx", "int8": "model_quantized.onnx", "fp16": "model_fp16.onnx"}
BATCH = 500  # images per forward pass when verifying
CALIBRATION_IMAGES = 500  # training images the int8 activation ranges are calibrated on
CALIBRATION_BATCH = 50
CALIBRATION_SEED = 0  # which training images: the same ones on every export of a model
# What is quantised. A convolutional net: the arithmetic and what lets onnxruntime fuse it into integer kernels (a
# Relu or a residual Add between two Convs; else each Conv runs in float between DequantizeLinear and QuantizeLinear).
# A transformer (a graph with Softmax): the matrix products only; its residual Adds, norms, softmax and GELU stay
# float, which keeps its accuracy (quantising the Adds too cost a random-init ViT 62 of 1,000 top-1 agreements).
QUANTIZED_OPS_CNN = ["Conv", "MatMul", "Gemm", "Relu", "Add", "GlobalAveragePool"]
QUANTIZED_OPS_TRANSFORMER = ["Conv", "MatMul", "Gemm"]


def run(spec: dict) -> dict:
    """Everything the spec asks for, into ``spec["staging"]``; returns the counts (see :func:`verify`)."""
    import torch

    from .evaluate import load_for_inference

    staging = Path(spec["staging"])
    model, processor, _ = load_for_inference(spec["model_dir"])
    # Exported on the CPU in float32 and the default memory layout: the graph must not depend on where we ran.
    model = model.to("cpu", dtype=torch.float32, memory_format=torch.contiguous_format).eval()
    check_finite_weights(model, spec["model_dir"])
    preprocess = _preprocess(processor, model.config.num_channels)
    size = preprocess.crop or preprocess.size
    export_graph(model, staging / FILES["fp32"], model.config.num_channels, size)
    if "int8" in spec["dtypes"]:
        quantize_int8(staging / FILES["fp32"], staging / FILES["int8"], preprocess, spec.get("data_dir"))
    if "fp16" in spec["dtypes"]:
        to_fp16(staging / FILES["fp32"], staging / FILES["fp16"])
    for name in (FILES[d] for d in spec["dtypes"]):
        mark(staging / name)
    return verify(model, preprocess, staging, spec["dtypes"], data_dir=spec.get("data_dir"), count=spec["count"])


def check_finite_weights(model, where: str) -> None:
    """Refuse a model with a NaN or infinite weight (or buffer): its export would compute NaN, and agree with it."""
    import torch

    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise HfFmnistError(
                f"{where}: weight {name} holds {bad:,} non-finite value(s) (NaN or inf); nothing was exported. "
                f"Train the model again (a diverged run writes such weights)."
            )


def _preprocess(processor, channels: int):
    from ..core.loader import Preprocess

    return Preprocess.from_processor(processor, channels)


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


def export_graph(model, path: Path, channels: int, size: tuple[int, int]) -> None:
    """``torch.onnx.export(dynamo=False)`` (TorchScript tracing): a plain static graph for these stock classes."""
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


def calibration_pixels(preprocess, data_dir: str | None) -> np.ndarray:
    """:data:`CALIBRATION_IMAGES` training images (a seeded choice), preprocessed as the model expects."""
    from ..data.tensors import load_tensors

    images, _ = load_tensors("train", data_dir=data_dir)
    picks = np.sort(np.random.default_rng(CALIBRATION_SEED).choice(len(images), CALIBRATION_IMAGES, replace=False))
    return preprocess(images[picks]).contiguous().numpy()


def quantize_int8(fp32: Path, target: Path, preprocess, data_dir: str | None) -> None:
    """Static QDQ quantisation: per-channel int8 weights and uint8 activations, the classic U8S8 pairing onnxruntime
    runs fastest on x86 and ARM; ``quantize_dynamic`` alone leaves a convolutional net's Conv layers in float."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    pixels = calibration_pixels(preprocess, data_dir)
    unshared = target.with_name(".unshared.onnx")
    ops = _unshare_initializers(fp32, unshared)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(range(0, len(pixels), CALIBRATION_BATCH))

        def get_next(self):
            start = next(self.batches, None)
            return None if start is None else {"pixel_values": pixels[start : start + CALIBRATION_BATCH]}

    try:
        quantize_static(
            str(unshared),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=QUANTIZED_OPS_TRANSFORMER if "Softmax" in ops else QUANTIZED_OPS_CNN,
            # No CalibMaxIntermediateOutputs: onnxruntime 1.32 drops (not folds) the batches it clears. Memory stays
            # small anyway: the calibrator keeps each batch's ReduceMin/ReduceMax outputs, not the activations.
        )
    except Exception as e:  # onnxruntime's calibrator and quantizer raise anything from ValueError to RuntimeError
        from ..errors import one_line

        raise HfFmnistError(
            f"int8 calibration of the ONNX export failed ({type(e).__name__}: {one_line(e)[:300]}); nothing was "
            f"written. Export without it: --dtypes fp32,fp16."
        ) from None
    finally:
        unshared.unlink(missing_ok=True)


def _unshare_initializers(fp32: Path, target: Path) -> set[str]:
    """A copy of the graph in which no weight feeds two layers. The TorchScript exporter keeps one copy of equal
    initializers (the zero biases BatchNorm folding leaves, say) and hands it on through ``Identity`` nodes; the
    quantizer then gives such a shared bias one scale, which cannot be each Conv's input × weight scale, and
    onnxruntime leaves those Convs in float between DequantizeLinear and QuantizeLinear (slower than fp32). Returns
    the graph's op types."""
    import onnx

    model = onnx.load(str(fp32))
    weights = {t.name: t for t in model.graph.initializer}
    keep = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in weights:
            copy = onnx.TensorProto()
            copy.CopyFrom(weights[node.input[0]])
            copy.name = node.output[0]
            model.graph.initializer.append(copy)
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    onnx.save(model, str(target))
    return {node.op_type for node in keep}


def to_fp16(fp32: Path, target: Path) -> None:
    """float16 weights and arithmetic with float32 inputs and outputs (``keep_io_types``), as transformers.js's own
    fp16 conversions are: its processors give float32 ``pixel_values`` for every dtype."""
    import onnx
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    onnx.save(model, str(target))


def mark(path: Path) -> None:
    """Record in the file that hf_fmnist wrote it (so a later export may replace it, and nothing else's)."""
    import onnx

    from .. import __version__

    graph = onnx.load(str(path))
    onnx.helper.set_model_props(graph, {MARK: __version__})
    onnx.save(graph, str(path))


def top1(logits: np.ndarray) -> np.ndarray:
    """The top-1 class of each row, -1 where a logit is NaN or infinite: it agrees with nothing, and is never right."""
    classes = logits.argmax(1)
    classes[~np.isfinite(logits).all(1)] = -1
    return classes


def verify(model, preprocess, staging: Path, dtypes, *, data_dir: str | None, count: int | None) -> dict:
    """Each file through onnxruntime (CPU) on the test images, against PyTorch and against the labels.

    Counts, not fractions: ``images``; ``pytorch_correct``; for each dtype ``correct`` and ``agree_fp32`` (same
    top-1 as the fp32 file); for fp32 also ``agree_pytorch`` and ``max_abs_diff``. A non-finite logit counts as a
    disagreement and a wrong answer (:func:`top1`); a model whose own logits are non-finite is refused.
    """
    import onnxruntime as ort
    import torch

    from ..core.models import inference_activation_bytes
    from ..data.tensors import load_tensors
    from ..image_limits import fit_batch

    images, labels = load_tensors("test", data_dir=data_dir)
    images, labels = images[:count], labels[:count].numpy()
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False  # the arena keeps its peak for the session's life, outside any budget
    sessions = {
        d: ort.InferenceSession(str(staging / FILES[d]), options, providers=["CPUExecutionProvider"]) for d in dtypes
    }
    # PyTorch and each session run the batch: their working memory per image together, within the budget
    working = (1 + len(dtypes)) * inference_activation_bytes(model.config, preprocess.channels, preprocess.size)
    batch = fit_batch(BATCH, preprocess.channels, preprocess.size, working)
    found: dict[str, list[np.ndarray]] = {d: [] for d in ["pytorch", *dtypes]}
    max_diff = 0.0
    for start in range(0, len(images), batch):
        pixels = preprocess(images[start : start + batch]).contiguous()
        with torch.inference_mode():
            expected = model(pixel_values=pixels).logits.float().numpy()
        found["pytorch"].append(top1(expected))
        for d, session in sessions.items():
            got = session.run(["logits"], {"pixel_values": pixels.numpy()})[0].astype(np.float32)
            found[d].append(top1(got))
            if d == "fp32":
                with np.errstate(invalid="ignore"):
                    diff = np.abs(got - expected)
                max_diff = max(max_diff, float(np.nanmax(diff)) if np.isfinite(diff).all() else float("inf"))
    classes = {d: np.concatenate(v) for d, v in found.items()}
    if (classes["pytorch"] < 0).any():
        raise HfFmnistError(
            f"{model.name_or_path}: PyTorch gives non-finite logits on {int((classes['pytorch'] < 0).sum()):,} of "
            f"{len(labels):,} test images; nothing was exported. Train the model again."
        )
    files: dict[str, dict] = {}
    for d in dtypes:
        files[d] = {
            "file": FILES[d],
            "correct": int((classes[d] == labels).sum()),
            "agree_fp32": int((classes[d] == classes["fp32"]).sum()),
        }
    files["fp32"].update(agree_pytorch=int((classes["fp32"] == classes["pytorch"]).sum()), max_abs_diff=max_diff)
    return {"images": len(labels), "pytorch_correct": int((classes["pytorch"] == labels).sum()), "dtypes": files}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from ..atomic import writing

    spec = json.loads(Path(argv[0]).read_text())
    staging = Path(spec["staging"])
    try:
        with writing(staging.parent / "onnx", staging=staging):  # a full disk: one line naming the final file
            report = run(spec)
    except HfFmnistError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    Path(spec["staging"], ".report.json").write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    # through the imported module, not this __main__ copy of it: one module object, whatever patched it at start-up
    from hf_fmnist.inference.onnx_convert import main as _main

    sys.exit(_main())
