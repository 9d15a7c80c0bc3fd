"""Benchmark: CPU inference throughput of an exported model, onnxruntime (fp32, int8, fp16) vs PyTorch, in one run.

The ways to classify the 10,000 test images with the same model folder:

- ``pipeline``: ``transformers.pipeline("image-classification")`` on PIL images (what a model card's Usage shows):
  per-image preprocessing by the image processor, batched forward passes;
- ``pytorch``: the model's forward on tensors already preprocessed (``hf_fmnist.core.loader.Preprocess``), batches of
  ``--batch-size``: the model alone;
- ``onnxruntime``: ``onnx/model.onnx`` (``hf-fmnist export``) through onnxruntime's CPU provider, the same tensors;
- ``onnxruntime int8`` and ``onnxruntime fp16``: ``onnx/model_quantized.onnx`` and ``onnx/model_fp16.onnx``, the same
  tensors (float32 in, as transformers.js feeds them), when the export wrote them.

Every onnxruntime session and PyTorch use ``--threads`` threads (default 2: the issue's 2-core setting), so the
ratios compare the files, not the thread pools. The issue's aim: int8 at 1.5x fp32 or more.

Preprocessing is timed for ``pipeline`` only (it is part of that path); the other two get identical float inputs.
Each measurement is repeated; best, median and spread are printed. Run it on a quiet machine.

Usage: ``python benchmarks/onnx_throughput.py --model out/model [--repeats 3] [--pipeline-images 2000] [--threads 2]``
(export first: ``hf-fmnist export --model out/model``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

FILES = {"onnxruntime": "model.onnx", "onnxruntime int8": "model_quantized.onnx", "onnxruntime fp16": "model_fp16.onnx"}


def time_pytorch(model, pixels: torch.Tensor, batch: int) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(pixels), batch):
            model(pixel_values=pixels[i : i + batch])
    return len(pixels) / (time.perf_counter() - start)


def time_onnx(session, pixels: np.ndarray, batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(pixels), batch):
        session.run(["logits"], {"pixel_values": pixels[i : i + batch]})
    return len(pixels) / (time.perf_counter() - start)


def time_pipeline(classify, images: list, batch: int) -> float:
    start = time.perf_counter()
    classify(images, batch_size=batch, top_k=1)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a model folder with onnx/model.onnx (hf-fmnist export)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass, all three paths")
    parser.add_argument("--images", type=int, default=10_000, help="test images for pytorch and onnxruntime")
    parser.add_argument("--pipeline-images", type=int, default=2_000, help="test images for the (slow) pipeline")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of PyTorch and every session")
    args = parser.parse_args()

    import onnxruntime as ort
    from PIL import Image
    from transformers import AutoModelForImageClassification, pipeline

    import hf_fmnist
    from hf_fmnist.core.loader import Preprocess
    from hf_fmnist.core.models import load_image_processor

    onnx_file = Path(args.model) / "onnx" / "model.onnx"
    if not onnx_file.is_file():
        raise SystemExit(f"error: {onnx_file} not found; run `hf-fmnist export --model {args.model}` first.")
    torch.set_num_threads(args.threads)
    model = AutoModelForImageClassification.from_pretrained(args.model, trust_remote_code=False).eval()
    processor = load_image_processor(args.model)
    images, _ = hf_fmnist.load_tensors("test")
    images = images[: args.images]
    pixels = Preprocess.from_processor(processor, model.config.num_channels)(images).contiguous()
    pixels_np = pixels.numpy()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    sessions = {
        label: ort.InferenceSession(str(onnx_file.with_name(name)), options, providers=["CPUExecutionProvider"])
        for label, name in FILES.items()
        if onnx_file.with_name(name).is_file()
    }
    classify = pipeline("image-classification", model=model, image_processor=processor, device="cpu")
    pil = [Image.fromarray(a) for a in images[: args.pipeline_images].numpy()]

    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, {args.model}, torch {torch.__version__} ({torch.get_num_threads()} "
        f"threads), onnxruntime {ort.__version__}, {os.cpu_count()} CPUs, batch {args.batch_size}"
    )
    time_pytorch(model, pixels[: args.batch_size], args.batch_size)  # warm-up: first calls allocate
    for session in sessions.values():
        time_onnx(session, pixels_np[: args.batch_size], args.batch_size)
    results: dict[str, list[float]] = {"pipeline (PIL images)": [], "pytorch forward": []}
    results.update({label: [] for label in sessions})
    for _ in range(args.repeats):  # interleaved, so a noisy moment hits every path alike
        results["pipeline (PIL images)"].append(time_pipeline(classify, pil, args.batch_size))
        results["pytorch forward"].append(time_pytorch(model, pixels, args.batch_size))
        for label, session in sessions.items():
            results[label].append(time_onnx(session, pixels_np, args.batch_size))
    for name, rates in results.items():
        print(
            f"  {name:<22} best {max(rates):>10,.0f} img/s, median {statistics.median(rates):>10,.0f} "
            f"(spread {min(rates):,.0f}-{max(rates):,.0f}, n={len(rates)})"
        )
    onnx, torch_rate = statistics.median(results["onnxruntime"]), statistics.median(results["pytorch forward"])
    print(
        f"  median ratio onnxruntime / pytorch forward {onnx / torch_rate:.2f}x, "
        f"onnxruntime / pipeline {onnx / statistics.median(results['pipeline (PIL images)']):.1f}x"
    )
    for label in ("onnxruntime int8", "onnxruntime fp16"):
        if label in results:
            print(f"  median ratio {label} / onnxruntime (fp32) {statistics.median(results[label]) / onnx:.2f}x")


if __name__ == "__main__":
    main()
