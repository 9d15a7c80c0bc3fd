"""The dataset card's "Known issues": read from a stored audit result (``audit.json``, written by ``hf-fmnist
audit``), checked field by field, and only for the data it measured (the same fingerprint of images and labels).

The card states counts and the method, nothing else: the method's wording is this package's own (a stored result
supplies numbers, a threshold, k and a recipe name, each checked), so an edited ``audit.json`` cannot put prose
into a card.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path

import numpy as np

from ..errors import HfFmnistError, printable

MAX_AUDIT_BYTES = 16 << 20  # ours: a few hundred KB (the first 1,000 groups and suspects)
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")


def fingerprint(splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """sha256 over every split's name, image shape, pixels and labels, in order: the data an audit measured."""
    digest = hashlib.sha256()
    for name, (images, labels) in splits.items():
        digest.update(f"{name}\0{images.shape}\0".encode())
        digest.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
        digest.update(np.asarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()


def read_audit(path: str | os.PathLike, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """The card's view of ``path`` (an ``audit.json`` or the report folder holding it), for the data ``splits``;
    one line when it cannot be read, is malformed, or measured other data."""
    path = Path(path)
    if path.is_dir():
        path = path / "audit.json"
    try:
        if path.stat().st_size > MAX_AUDIT_BYTES:
            raise HfFmnistError(f"--audit {path}: {path.stat().st_size:,} bytes, more than an audit result; refused.")
        stored = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise HfFmnistError(
            f"--audit {path}: cannot read it ({e.strerror}); pass a folder written by `hf-fmnist audit`."
        ) from None
    except (ValueError, RecursionError) as e:
        raise HfFmnistError(f"--audit {path}: not an audit result ({type(e).__name__}); refused.") from None
    try:
        view = _checked(stored)
    except (KeyError, TypeError, ValueError) as e:
        raise HfFmnistError(f"--audit {path}: malformed audit result ({printable(str(e))[:80]}); refused.") from None
    if stored["fingerprint"] != fingerprint(splits):
        raise HfFmnistError(
            f"--audit {path} measured other data than this export (its fingerprint of images and labels differs); "
            f"audit this dataset first: hf-fmnist audit --output-dir REPORT (with the same --data-dir)."
        )
    return view


def _count(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
        raise ValueError(f"a count is {value!r}")
    return value


def _name(value) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(f"a name is {value!r}")
    return value


def _checked(stored) -> dict:
    """Only the fields the card shows, each of its type (a ValueError/KeyError/TypeError names the first bad one)."""
    if not isinstance(stored, dict) or not isinstance(stored.get("fingerprint"), str):
        raise ValueError("no fingerprint")
    splits = {_name(s): _count(n) for s, n in stored["splits"].items()}
    exact = stored["exact"]
    view: dict = {
        "splits": splits,
        "exact": {
            "within": {_name(s): _count(w["extra_copies"]) for s, w in exact["within"].items()},
            "across": _count(exact["groups_across_splits"]),
            "disagreeing": _count(exact["groups_with_disagreeing_labels"]),
        },
    }
    if "near" in stored:
        near = stored["near"]
        threshold = near["threshold_rms"]
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ValueError("threshold_rms")
        view["near"] = {
            "threshold": float(threshold),
            "pool": _name(near["pool"]),
            "per_split": {_name(s): {k: _count(v[k]) for k in _NEAR_COUNTS} for s, v in near["per_split"].items()},
        }
    if "labels" in stored:
        labels = stored["labels"]
        filter_by = re.search(r"filter_by=([a-z_]+)", str(labels.get("method", "")))
        view["labels"] = {
            "split": _name(labels["split"]),
            "k": _count(labels["k"]),
            "recipe": _name(labels["recipe"]),
            "images": _count(labels["images"]),
            "issues": _count(labels["issues"]),
            "filter_by": filter_by.group(1) if filter_by and filter_by.group(1) in FILTERS else FILTERS[0],
            "minutes": _count(round(float(labels["seconds"]) / 60)),
        }
    return view


_NEAR_COUNTS = (
    "exact_copies",
    "within_half_threshold",
    "within_threshold",
    "within_twice_threshold",
    "queries",
    "label_disagreements_within_threshold",
)
