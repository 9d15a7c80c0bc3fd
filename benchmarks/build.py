"""Benchmark: building Fashion-MNIST, ours (ArrowBasedBuilder + bulk PNG encoding) vs the classic per-example builder.

Three comparisons, each against its reference in the same run, repeated; best, median and spread are printed:

1. in-process ``download_and_prepare`` into a fresh cache: ours vs :class:`ClassicFashionMnist`;
2. whole processes, start to exit, each writing the Hub-ready export folder:
   ``hf-fmnist build`` vs a process that builds with the classic builder and writes the same export;
3. the one-time decode of the train + test split into the uint8 tensor view: ours vs PIL per image.

Usage: ``python benchmarks/build.py [--repeats 3] [--data-dir RAW]``. Goal: ratios ≤ 0.25; decode ≤ 5 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def stats(times: list[float]) -> str:
    spread = f"{min(times):.2f}-{max(times):.2f}"
    return f"best {min(times):.2f} s, median {statistics.median(times):.2f} s (spread {spread}, n={len(times)})"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def prepare(builder_cls, data_dir, **kwargs) -> None:
    with tempfile.TemporaryDirectory() as cache:
        kw = {"data_dir": data_dir} if data_dir else {}
        builder = builder_cls(cache_dir=cache, **kw, **kwargs)
        builder.download_and_prepare()


def bench_in_process(repeats: int, data_dir) -> tuple[list[float], list[float]]:
    import datasets
    from classic_builder import ClassicFashionMnist

    from hf_fmnist.dataset_script.hf_fmnist import FashionMnist

    datasets.disable_progress_bars()
    ours, classic = [], []
    for _ in range(repeats):  # interleaved, so drifting machine load hits both alike
        classic.append(timed(lambda: prepare(ClassicFashionMnist, data_dir)))
        ours.append(timed(lambda: prepare(FashionMnist, data_dir)))
    return ours, classic


def run_classic_export(output_dir: str, data_dir) -> None:
    """The classic builder's counterpart of ``hf-fmnist build``: build, then write the same export folder."""
    from classic_builder import ClassicFashionMnist

    from hf_fmnist.data.export import write_export

    kw = {"data_dir": data_dir} if data_dir else {}
    builder = ClassicFashionMnist(**kw)
    builder.download_and_prepare()
    out = Path(output_dir)
    out.mkdir(parents=True)
    write_export(builder.as_dataset(), out)


def bench_processes(repeats: int, data_dir) -> tuple[list[float], list[float]]:
    hf_fmnist_cli = Path(sys.executable).with_name("hf-fmnist")
    extra = ["--data-dir", data_dir] if data_dir else []
    ours, classic = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "HF_DATASETS_CACHE": f"{tmp}/cache", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
            cmd = [sys.executable, __file__, "--classic-export", f"{tmp}/classic", *extra]
            classic.append(
                timed(lambda cmd=cmd, env=env: subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL))
            )
            shutil.rmtree(f"{tmp}/cache")
            cmd = [str(hf_fmnist_cli), "build", "--output-dir", f"{tmp}/ours", *extra]
            ours.append(
                timed(lambda cmd=cmd, env=env: subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL))
            )
    return ours, classic


def bench_decode(repeats: int, data_dir) -> tuple[list[float], list[float]]:
    import io

    import numpy as np
    from PIL import Image

    from hf_fmnist.data.builder import load_dataset
    from hf_fmnist.data.tensors import decode

    dataset = load_dataset(data_dir)
    ours, reference = [], []

    def pil_decode():
        for ds in dataset.values():
            blobs = ds.data.column("image").combine_chunks().field("bytes").to_pylist()
            np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in blobs])

    for _ in range(repeats):
        reference.append(timed(pil_decode))
        ours.append(timed(lambda: [decode(ds) for ds in dataset.values()]))
    return ours, reference


def report(name: str, ours: list[float], reference: list[float], ref_name: str) -> None:
    print(f"{name}")
    print(f"  {ref_name:<22} {stats(reference)}")
    print(f"  {'ours':<22} {stats(ours)}")
    print(
        f"  ratio ours/{ref_name} (best/best) = {min(ours) / min(reference):.3f}, "
        f"(median/median) = {statistics.median(ours) / statistics.median(reference):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir")
    parser.add_argument("--classic-export", help=argparse.SUPPRESS)  # internal: the classic whole-process run
    parser.add_argument("--only", choices=["in-process", "processes", "decode"])
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    if args.classic_export:
        run_classic_export(args.classic_export, args.data_dir)
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
    if args.only in (None, "in-process"):
        report("1. download_and_prepare, fresh cache", *bench_in_process(args.repeats, args.data_dir), "classic")
    if args.only in (None, "processes"):
        report("2. whole process to a Hub-ready folder", *bench_processes(args.repeats, args.data_dir), "classic")
    if args.only in (None, "decode"):
        report("3. decode train+test into the uint8 view", *bench_decode(args.repeats, args.data_dir), "PIL")


if __name__ == "__main__":
    main()
