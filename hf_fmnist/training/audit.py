"""``hf-fmnist audit``: exact and near duplicates, and likely label errors, of a dataset; a report folder.

The folder holds ``audit.json`` (the stored result: counts, method, settings and time; ``hf-fmnist build --audit``
turns it into the dataset card's "Known issues"), ``report.md`` (the tables) and the grids: ``exact_duplicates.png``,
``near_duplicates.png`` (the nearest cross-split pairs, around the threshold), ``near_distances.png`` and
``label_issues.png``. The label search keeps its folds in ``label_search/`` and resumes from them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .. import atomic, ownership
from ..data import duplicates
from ..data.known_issues import fingerprint
from ..errors import HfFmnistError, printable

AUDIT = "audit-output"  # the ownership marker of a report folder
AUDIT_FILE = "audit.json"
GRID_PAIRS = 30  # nearest cross-split pairs shown (each pair takes two cells): enough to see past the threshold
GRID_SUSPECTS = 40
EXACT_METHOD = "sha256 of the decoded 28×28 gray pixels (byte-identical images)"
NEAR_METHOD = (
    "nearest image of the first split for every image of each other split, by root-mean-square gray-level "
    "difference (0-255) of the 28×28 pixels; near duplicates are pairs at or below the threshold"
)


def run_audit(
    output_dir: str | os.PathLike,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    threshold: float = duplicates.NEAR_THRESHOLD,
    plan=None,
    label_split: str = "train",
    filter_by: str = "prune_by_noise_rate",
) -> dict:
    """Audit a dataset into ``output_dir``; returns the stored result. ``plan``: a :class:`SearchPlan` for the label
    search, or None to skip it."""
    from ..data.tensors import find_columns, load_arrays, local_root, open_dataset
    from ..image_limits import memory_budget

    out = Path(output_dir)
    check_output_dir(out)
    ds = open_dataset(dataset, data_dir=data_dir)
    root = local_root(dataset)
    splits = {name: load_arrays(name, ds, root=root) for name in ds}
    first = next(iter(ds))
    names = list(ds[first].features[find_columns(ds[first].features)[1]].names)
    with atomic.writing(out):
        out.mkdir(parents=True, exist_ok=True)
        ownership.mark(out, AUDIT)
    result: dict = {
        "dataset": dataset or "fashion_mnist",
        "splits": {s: len(a[1]) for s, a in splits.items()},
        "fingerprint": fingerprint(splits),  # `build --audit` shows these counts only for this very data
    }

    start = time.perf_counter()
    groups = duplicates.exact_groups(splits)
    result["exact"] = {
        "method": EXACT_METHOD,
        **duplicates.summarize_exact(groups, list(splits)),
        "groups": groups[:1000],  # the first thousand, for the report; the counts above cover all of them
        "seconds": round(time.perf_counter() - start, 2),
    }
    print(exact_line(result["exact"]))
    _exact_grid(groups, splits, names, out / "exact_duplicates.png")

    if len(splits) > 1:
        result["near"] = near_duplicates(splits, names, threshold, memory_budget() // 2, out)
        print(near_line(result["near"]))

    if plan is not None:
        result["labels"] = label_errors(
            ds, label_split, splits, names, plan, out, data_dir=data_dir, filter_by=filter_by
        )
        print(labels_line(result["labels"]))
    atomic.write_text(out / AUDIT_FILE, json.dumps(result, indent=2) + "\n")
    atomic.write_text(out / "report.md", report_markdown(result))
    return result


def check_output_dir(out: Path) -> None:
    """A new or empty folder, or one that `hf-fmnist audit` wrote before."""
    ownership.check_writable_by(
        out, "--output-dir", AUDIT, "hf-fmnist audit", resume=", or the folder of the audit to resume"
    )


def near_duplicates(splits: dict, names: list[str], threshold: float, budget: int, out: Path) -> dict:
    """Nearest first-split image of every image of the other splits; counts, the nearest pairs, grid, histogram."""
    from tqdm.auto import tqdm

    from .. import plots

    start = time.perf_counter()
    pool_name = next(iter(splits))
    pool, pool_labels = splits[pool_name]
    per_split, pairs, all_distances = {}, [], []
    for name, (images, labels) in list(splits.items())[1:]:
        with tqdm(total=len(images), unit="img", desc=f"nearest {pool_name} image of each {name} image") as bar:
            found, distance = duplicates.nearest(images, pool, budget_bytes=budget, progress=bar.update)
        summary = duplicates.near_summary(distance, threshold)
        summary["label_disagreements_within_threshold"] = int(
            ((distance <= threshold) & (labels != pool_labels[found])).sum()
        )
        per_split[name] = summary
        all_distances.append(distance)
        for i in np.argsort(distance, kind="stable")[: max(GRID_PAIRS, 200)].tolist():
            pairs.append(
                {
                    "split": name,
                    "index": i,
                    "label": int(labels[i]),
                    f"{pool_name}_index": int(found[i]),
                    f"{pool_name}_label": int(pool_labels[found[i]]),
                    "rms": round(float(distance[i]), 3),
                }
            )
    pairs.sort(key=lambda p: p["rms"])
    grid = pairs[:GRID_PAIRS]
    images = np.stack(
        [m for p in grid for m in (splits[p["split"]][0][p["index"]], pool[p[f"{pool_name}_index"]])]
    ) if grid else np.zeros((0, 1, 1), np.uint8)  # fmt: skip
    titles = [
        t
        for p in grid
        for t in (
            f"{p['split']} {p['index']}\n{names[p['label']]}",
            f"{pool_name} {p[f'{pool_name}_index']}\n{names[p[f'{pool_name}_label']]} RMS {p['rms']:.1f}"
            + (" ≤T" if p["rms"] <= threshold else ""),
        )
    ]
    plots.image_grid(
        images,
        titles,
        out / "near_duplicates.png",
        ncols=10,
        suptitle=f"Nearest cross-split pairs ({', '.join(per_split)} → {pool_name}), by RMS gray-level difference; "
        f"≤T: within the threshold T = {threshold:g}",
    )
    plots.distance_histogram(
        np.concatenate(all_distances),
        threshold,
        out / "near_distances.png",
        what=f"{'/'.join(per_split)} → {pool_name}",
    )
    return {
        "method": NEAR_METHOD,
        "threshold_rms": threshold,
        "pool": pool_name,
        "per_split": per_split,
        "nearest_pairs": pairs[:200],
        "seconds": round(time.perf_counter() - start, 2),
    }


def label_errors(ds, split: str, splits: dict, names: list[str], plan, out: Path, *, data_dir, filter_by: str) -> dict:
    """The k-fold search through ``train()`` and cleanlab's ranking; the suspects' grid."""
    from .. import plots
    from .label_search import label_issues, out_of_fold_probabilities

    if split not in splits:
        raise HfFmnistError(f"--label-split {split!r} not found; this dataset has {', '.join(splits)}.")
    images, labels = splits[split]
    probabilities, seconds = out_of_fold_probabilities(ds[split], labels, plan, out / "label_search", data_dir=data_dir)
    issues = label_issues(labels, probabilities, filter_by)
    suggested = probabilities.argmax(axis=1)
    suspects = [
        {
            "index": int(i),
            "given": names[labels[i]],
            "suggested": names[suggested[i]],
            "given_probability": round(float(probabilities[i, labels[i]]), 4),
            "suggested_probability": round(float(probabilities[i, suggested[i]]), 4),
        }
        for i in issues[:1000].tolist()
    ]
    grid = suspects[:GRID_SUSPECTS]
    plots.image_grid(
        images[[s["index"] for s in grid]] if grid else np.zeros((0, 1, 1), np.uint8),
        [
            f"{split} {s['index']}\ngiven {s['given']}\n→ {s['suggested']} {s['suggested_probability']:.0%}"
            for s in grid
        ],
        out / "label_issues.png",
        suptitle=f"Likely label errors in the {split} split (cleanlab, out-of-fold probabilities): given label, "
        f"suggested label and its probability",
    )
    return {
        "method": f"cleanlab.filter.find_label_issues (filter_by={filter_by}) on out-of-fold softmax probabilities, "
        "ranked by self-confidence",
        "split": split,
        "search": plan.describe(),
        "k": plan.k,
        "recipe": plan.recipe,
        "images": len(labels),
        "issues": len(issues),
        "out_of_fold_accuracy": int((suggested == labels).sum()),
        "seconds": round(seconds, 1),
        "suspects": suspects,
    }


def exact_line(exact: dict) -> str:
    within = ", ".join(f"{s} {w['extra_copies']:,} extra copies" for s, w in exact["within"].items())
    return (
        f"Exact duplicates: {within}; {exact['groups_across_splits']:,} image(s) shared across splits; "
        f"{exact['groups_with_disagreeing_labels']:,} with disagreeing labels"
    )


def near_line(near: dict) -> str:
    parts = [
        f"{name} {s['within_threshold']:,} of {s['queries']:,} (half T: {s['within_half_threshold']:,}, twice T: "
        f"{s['within_twice_threshold']:,})"
        for name, s in near["per_split"].items()
    ]
    return f"Near duplicates within RMS {near['threshold_rms']:g} of a {near['pool']} image: " + "; ".join(parts)


def labels_line(labels: dict) -> str:
    return (
        f"Likely label errors in {labels['split']}: {labels['issues']:,} of {labels['images']:,} "
        f"({labels['search']}; {labels['seconds']:.0f} s)"
    )


def report_markdown(result: dict) -> str:
    """``report.md``: what was checked, how, and what was found (names escaped: they come from the dataset)."""
    lines = [f"# Audit of {printable(result['dataset'])}", ""]
    lines += ["| split | images |", "|---|---|"] + [f"| {s} | {n:,} |" for s, n in result["splits"].items()]
    exact = result["exact"]
    lines += ["", "## Exact duplicates", "", f"Method: {exact['method']}.", "", exact_line(exact) + ".", ""]
    if exact["groups"]:
        lines += ["| group | members (split index: label) |", "|---|---|"]
        for n, g in enumerate(exact["groups"][:100]):
            members = ", ".join(f"{s} {i}: {lab}" for s, i, lab in zip(g["splits"], g["indices"], g["labels"]))
            lines.append(f"| {n} | {members} |")
    lines.append("![Exact duplicates](exact_duplicates.png)")
    if "near" in result:
        near = result["near"]
        lines += ["", "## Near duplicates", "", f"Method: {near['method']}.", "", near_line(near) + ".", ""]
        lines += ["| split | index | label | nearest | its label | RMS |", "|---|---|---|---|---|---|"]
        pool = near["pool"]
        for p in near["nearest_pairs"][:GRID_PAIRS]:
            lines.append(
                f"| {p['split']} | {p['index']} | {p['label']} | {pool} {p[f'{pool}_index']} | "
                f"{p[f'{pool}_label']} | {p['rms']:.2f} |"
            )
        lines += ["", "![Nearest pairs](near_duplicates.png)", "", "![Nearest distances](near_distances.png)"]
    if "labels" in result:
        labels = result["labels"]
        lines += ["", "## Likely label errors", "", f"Method: {labels['method']} ({labels['search']}).", ""]
        lines += [labels_line(labels) + ".", "", "| index | given | suggested | p(given) | p(suggested) |"]
        lines.append("|---|---|---|---|---|")
        for s in labels["suspects"][:GRID_SUSPECTS]:
            lines.append(
                f"| {s['index']} | {printable(s['given'])} | {printable(s['suggested'])} | "
                f"{s['given_probability']:.3f} | {s['suggested_probability']:.3f} |"
            )
        lines += ["", "![Likely label errors](label_issues.png)"]
    return "\n".join(lines) + "\n"


def _exact_grid(groups: list[dict], splits: dict, names: list[str], path: Path) -> None:
    from .. import plots

    cells = [(s, i, lab) for g in groups[:10] for s, i, lab in zip(g["splits"], g["indices"], g["labels"])][:40]
    images = np.stack([splits[s][0][i] for s, i, _ in cells]) if cells else np.zeros((0, 1, 1), np.uint8)
    plots.image_grid(
        images,
        [f"{s} {i}\n{names[lab]}" for s, i, lab in cells],
        path,
        suptitle=f"Exact duplicates: the first {min(len(groups), 10)} of {len(groups):,} group(s), members side by side"
        if groups
        else "Exact duplicates: none found (byte-identical 28×28 images)",
    )
