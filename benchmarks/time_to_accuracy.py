"""Benchmark: wall-clock time from process start to each printed test accuracy, for a training command.

Starts ``accelerate launch train.py --output_dir DIR [ARGS...]`` (or ``--launcher python``), timestamps every
``epoch ... test accuracy X%`` line against the moment the process was started, and reports when each target was
first reached, with the ratio of that time to the target's time budget (≤ 1 meets the goal).

Usage::

    python benchmarks/time_to_accuracy.py --target 92.0:300 -- --num_train_epochs 7 --pad_crop 0
    python benchmarks/time_to_accuracy.py --target 93.0:900

Targets are ``ACCURACY_PERCENT:SECONDS``; everything after ``--`` goes to train.py.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"epoch (\d+)/(\d+).*test accuracy ([\d.]+)%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", action="append", default=[], help="ACCURACY_PERCENT:SECONDS, repeatable")
    parser.add_argument("--launcher", choices=["accelerate", "python"], default="accelerate")
    parser.add_argument("train_args", nargs="*")
    args = parser.parse_args()
    targets = [(float(a), float(s)) for a, s in (t.split(":") for t in args.target or ["92.0:300", "93.0:900"])]
    exe = Path(sys.executable)
    launcher = (
        [str(exe.with_name("accelerate")), "launch", "--num_processes", "1"]
        if args.launcher == "accelerate"
        else [str(exe)]
    )
    with tempfile.TemporaryDirectory() as out:
        cmd = [*launcher, str(ROOT / "train.py"), "--output_dir", out, *args.train_args]
        print("$", " ".join(cmd[len(launcher) :]), flush=True)
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**__import__("os").environ, "PYTHONUNBUFFERED": "1"},
        )
        points = []
        for line in proc.stdout:
            match = LINE.search(line)
            if match:
                elapsed = time.perf_counter() - start
                points.append((elapsed, float(match.group(3))))
                print(f"  {elapsed:7.1f} s  epoch {match.group(1)}/{match.group(2)}  {match.group(3)}%", flush=True)
        if proc.wait() != 0:
            sys.exit(f"training failed with exit status {proc.returncode}")
        total = time.perf_counter() - start
    print(f"process finished after {total:.1f} s")
    for accuracy, budget in targets:
        reached = next((t for t, a in points if a >= accuracy), None)
        if reached is None:
            best = max(a for _, a in points)
            print(f"target {accuracy:.1f}% within {budget:.0f} s: NOT reached (best {best:.2f}%)")
        else:
            verdict = "met" if reached <= budget else "missed"
            print(
                f"target {accuracy:.1f}% within {budget:.0f} s: reached at {reached:.1f} s, "
                f"ratio {reached / budget:.3f} ({verdict})"
            )


if __name__ == "__main__":
    main()
