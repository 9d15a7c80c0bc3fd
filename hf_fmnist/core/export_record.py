"""The ONNX export's record, ``onnx/export.json``: which file each runtime and dtype loads, and what was measured.

``hf-fmnist export`` writes it next to the ONNX files; ``push-model`` publishes it and the card reads it (which file
transformers.js and onnxruntime load for each dtype, with the accuracy measured on the test images). It names the
weights it was exported from (:func:`weights_digest`): an ``onnx/`` folder left by an older model, after training
again into the same folder, no longer matches, and is refused by ``push-model`` instead of being published as this
model's.

The transformers.js snippet the card shows is :data:`SNIPPET_FILE` (``model_card/transformers_js_snippet.mjs``), with
``MODEL_ID`` standing for the repo id: the Node test runs that very file.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ..errors import HfFmnistError, printable

RECORD = "onnx/export.json"
FORMAT = "hf_fmnist.onnx-export/1"
MAX_RECORD_BYTES = 64 << 10
DTYPES = ("fp32", "int8", "fp16")
FILES = {"fp32": "model.onnx", "int8": "model_quantized.onnx", "fp16": "model_fp16.onnx"}
# What loads each file: transformers.js's `dtype` option (its default is fp32 in Node, q8 in the browser's wasm)
TRANSFORMERS_JS_DTYPE = {"fp32": '"fp32" (Node\'s default)', "int8": '"q8" (the browser\'s default)', "fp16": '"fp16"'}
SNIPPET_FILE = "transformers_js_snippet.mjs"
SNIPPET_MODEL_ID = "MODEL_ID"
WEIGHT_FILE = re.compile(r"model(-[0-9]{5}-of-[0-9]{5})?\.safetensors|model\.safetensors\.index\.json")


def weights_digest(folder: str | Path) -> str:
    """sha256 over the folder's weight files (``model.safetensors``, or the shards and their index), by name: what
    an export was made from."""
    folder = Path(folder)
    digest = hashlib.sha256()
    names = sorted(p.name for p in folder.iterdir() if WEIGHT_FILE.fullmatch(p.name) and p.is_file())
    if not names:
        raise HfFmnistError(f"{printable(str(folder))} has no model.safetensors: pass a folder written by train.py.")
    for name in names:
        digest.update(name.encode() + b"\0")
        with open(folder / name, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def read_record(folder: str | Path) -> dict | None:
    """The folder's ``onnx/export.json``, checked field by field; None when there is none."""
    path = Path(folder) / RECORD
    if not path.is_file():
        return None
    where = printable(str(path))
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            raise ValueError(f"larger than {MAX_RECORD_BYTES:,} bytes")
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise ValueError(f"not an export record ({FORMAT})")
        images = record["images"]
        if type(images) is not int or images < 1:
            raise ValueError("images is not a positive count")
        if not isinstance(record["weights_sha256"], str) or not re.fullmatch(r"[0-9a-f]{64}", record["weights_sha256"]):
            raise ValueError("weights_sha256 is not a sha256")
        dtypes = record["dtypes"]
        if not isinstance(dtypes, dict) or "fp32" not in dtypes or not set(dtypes) <= set(DTYPES):
            raise ValueError(f"dtypes must name fp32 and only {', '.join(DTYPES)}")
        for dtype, entry in dtypes.items():
            if not isinstance(entry, dict) or entry.get("file") != FILES[dtype]:
                raise ValueError(f"{dtype}: file must be {FILES[dtype]}")
            for key in ("correct", "agree_fp32"):
                if type(entry.get(key)) is not int or not 0 <= entry[key] <= images:
                    raise ValueError(f"{dtype}: {key} is not a count of at most {images}")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise HfFmnistError(f"{where}: cannot read it ({e}); run `hf-fmnist export` again.") from None
    return record


def check_current(folder: str | Path, weights_folder: str | Path | None = None) -> dict | None:
    """The record, refused in one line when ``onnx/`` was exported from other weights than the folder's own (an
    older model trained into the same folder) or carries no record (an export by an older hf_fmnist)."""
    folder = Path(folder)
    if not (folder / "onnx").exists():
        return None
    record = read_record(folder)
    fix = "run `hf-fmnist export` on the model folder again, or remove its onnx/ folder"
    if record is None:
        raise HfFmnistError(f"{printable(str(folder / 'onnx'))} has no export record ({RECORD}): {fix}.")
    if record["weights_sha256"] != weights_digest(weights_folder or folder):
        raise HfFmnistError(
            f"{printable(str(folder / 'onnx'))} was exported from another model than this model.safetensors (an "
            f"older one, trained into the same folder): {fix}."
        )
    return record


def card_rows(record: dict | None) -> list[dict]:
    """One row per exported file for the card: dtype, file, transformers.js option, accuracy and agreement."""
    if record is None:
        return []
    images = record["images"]
    return [
        {
            "dtype": dtype,
            "file": f"onnx/{entry['file']}",
            "transformers_js": TRANSFORMERS_JS_DTYPE[dtype],
            "accuracy": f"{100 * entry['correct'] / images:.2f}% ({entry['correct']:,} of {images:,})",
            "agreement": f"{entry['agree_fp32']:,} of {images:,}",
        }
        for dtype, entry in sorted(record["dtypes"].items(), key=lambda item: DTYPES.index(item[0]))
    ]


def snippet(model_ref: str) -> str:
    """The transformers.js snippet of the card, for ``model_ref`` (the very file the Node test runs)."""
    from ..data.card import template_path

    return Path(template_path(SNIPPET_FILE)).read_text(encoding="utf-8").replace(SNIPPET_MODEL_ID, model_ref)
