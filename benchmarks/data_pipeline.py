"""Benchmark: training-data throughput, ours vs the transformers-example pipeline, in one run.

Reference (as ``run_image_classification_no_trainer.py`` feeds a model): the ``Image`` column decoded per sample
by ``datasets``, per-sample transforms (RGB, pad-and-crop, horizontal flip, to tensor, normalise) applied through
``set_transform``, batched by a ``DataLoader`` with 0 and 2 workers. Ours: :class:`hf_fmnist.core.loader.DeviceLoader`
over the uint8 tensor view, the same augmentations applied in bulk. Both produce normalised 3×28×28 float batches of
256 images; nothing is trained, so this measures the input pipeline alone.

Usage: ``python benchmarks/data_pipeline.py [--repeats 3] [--reference-images 10240]``. Goal: ratio ≥ 20.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np
import torch

BATCH = 256
MEAN, STD = 0.2860, 0.3530


def reference_loader(dataset, workers: int):
    from PIL import ImageOps

    def transform(batch):
        images = []
        for image in batch["image"]:
            image = image.convert("RGB")
            image = ImageOps.expand(image, border=2, fill=0)
            dx, dy = random.randint(0, 4), random.randint(0, 4)
            image = image.crop((dx, dy, dx + 28, dy + 28))
            if random.random() < 0.5:
                image = ImageOps.mirror(image)
            x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
            images.append((x - MEAN) / STD)
        return {"pixel_values": images, "labels": batch["label"]}

    def collate(examples):
        return torch.stack([e["pixel_values"] for e in examples]), torch.tensor([e["labels"] for e in examples])

    ds = dataset.with_transform(transform)
    return torch.utils.data.DataLoader(
        ds, batch_size=BATCH, shuffle=True, num_workers=workers, collate_fn=collate, persistent_workers=False
    )


def time_reference(dataset, workers: int, images: int) -> float:
    loader = reference_loader(dataset, workers)
    seen, start = 0, time.perf_counter()
    for x, _ in loader:
        seen += len(x)
        if seen >= images:
            break
    return seen / (time.perf_counter() - start)


def time_ours(images_u8: torch.Tensor, labels: torch.Tensor, epoch: int) -> float:
    from hf_fmnist.core.loader import DeviceLoader, Preprocess

    pre = Preprocess(channels=3, size=(28, 28), crop=None, mean=(MEAN,) * 3, std=(STD,) * 3)
    loader = DeviceLoader(
        images_u8, labels, batch_size=BATCH, preprocess=pre, seed=0, train=True, pad_crop=2, hflip=True
    )
    seen, start = 0, time.perf_counter()
    for x, _ in loader.epoch(epoch):
        seen += len(x)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-images", type=int, default=10_240, help="images per reference measurement")
    args = parser.parse_args()

    import hf_fmnist

    dataset = hf_fmnist.load_dataset()["train"]
    images, labels = hf_fmnist.load_tensors("train")
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    results = {"reference, 0 workers": [], "reference, 2 workers": [], "ours (DeviceLoader, CPU)": []}
    for r in range(args.repeats):
        results["reference, 0 workers"].append(time_reference(dataset, 0, args.reference_images))
        results["reference, 2 workers"].append(time_reference(dataset, 2, args.reference_images))
        results["ours (DeviceLoader, CPU)"].append(time_ours(images, labels, r))
    for name, rates in results.items():
        print(
            f"  {name:<26} best {max(rates):>10,.0f} img/s, median {statistics.median(rates):>10,.0f} "
            f"(spread {min(rates):,.0f}-{max(rates):,.0f}, n={len(rates)})"
        )
    best_reference = max(max(results["reference, 0 workers"]), max(results["reference, 2 workers"]))
    ours = results["ours (DeviceLoader, CPU)"]
    print(
        f"  ratio ours / best reference: best {max(ours) / best_reference:.1f}x, "
        f"median {statistics.median(ours) / best_reference:.1f}x"
    )


if __name__ == "__main__":
    main()
