"""The one table benchmarks/gpu.sh prints: CUDA tests, then each recipe's time to accuracy and throughput.

Reads the pytest JUnit XML and each training log (the epoch lines the trainer prints, so a run stopped by its time
limit still reports the epochs it finished) plus ``all_results.json`` where the run completed.

    python benchmarks/gpu_summary.py --tests OUT/gpu_tests.xml --run h200-10s:OUT/h200-10s.log:RUN_DIR:94.0 ...
"""

from __future__ import annotations

import argparse
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

EPOCH = re.compile(
    r"epoch (\d+)/(\d+)\s+step (\d+)\s+loss \S+\s+test accuracy ([\d.]+)% \(([\d,]+) images\)"
    r"\s+\[(\d+) s; ([\d.]+) s from the first step\]"
)
STARTUP = re.compile(r"Start-up: (\S+)(?: s)? from process start to the first step \(interpreter and imports (\S+)")


def test_rows(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        return [("CUDA tests", "no report (did pytest run?)")]
    rows = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = f"FAILED: {(child.get('message') or '')[:80]}"
            elif child.tag == "skipped":
                outcome = f"skipped ({(child.get('message') or '')[:60]})"
        rows.append((f"test {case.get('name')}", f"{outcome}, {float(case.get('time', 0)):.1f} s"))
    return rows or [("CUDA tests", "none collected")]


def run_row(name: str, log: Path, folder: Path, target: float) -> dict:
    text = log.read_text(errors="replace") if log.is_file() else ""
    epochs = [
        dict(
            epoch=int(m[1]),
            of=int(m[2]),
            step=int(m[3]),
            accuracy=float(m[4]),
            images=int(m[5].replace(",", "")),
            since_first_step=float(m[7]),
        )
        for m in EPOCH.finditer(text)
    ]
    startup = STARTUP.search(text)
    results_file = folder / "all_results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    hit = next((e for e in epochs if e["accuracy"] >= target), None)
    last = epochs[-1] if epochs else None
    return {
        "recipe": name,
        "target": f"{target:.1f}%",
        "reached": (
            f"{hit['accuracy']:.2f}% at {hit['since_first_step']:.1f} s (epoch {hit['epoch']})"
            if hit
            else "not reached"
        ),
        "last line": (
            f"{last['accuracy']:.2f}% at {last['since_first_step']:.1f} s (epoch {last['epoch']}/{last['of']},"
            f" {last['images']:,} images)"
            if last
            else "no accuracy line"
        ),
        "start-up": (f"{startup[1]} s (imports {startup[2]} s)" if startup else "?"),
        "images/s": (f"{results['train_samples_per_second']:,.0f}" if results else "run incomplete"),
        "final": (f"{results['eval_accuracy']:.2%}" if results else "-"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=Path, help="pytest --junitxml report")
    parser.add_argument("--run", action="append", default=[], help="NAME:LOG:RUN_DIR:TARGET_PERCENT")
    parser.add_argument("--header", default="", help="a line printed above the table (versions, device)")
    parser.add_argument("--output", type=Path, help="also write the table here")
    args = parser.parse_args()
    lines = [args.header] if args.header else []
    if args.tests:
        lines += ["| check | result |", "|---|---|"]
        lines += [f"| {a} | {b} |" for a, b in test_rows(args.tests)]
        lines.append("")
    if args.run:
        rows = []
        for spec in args.run:
            name, log, folder, target = spec.split(":")
            rows.append(run_row(name, Path(log), Path(folder), float(target)))
        keys = list(rows[0])
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
        lines.append(
            "time: from the first training step to the printed full-test-split accuracy line, evaluations "
            "included; start-up: process start to the first step; images/s: training only."
        )
    table = "\n".join(lines)
    print(table)
    if args.output:
        args.output.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
