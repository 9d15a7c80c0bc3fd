"""What hf_fmnist accepts from a stranger: which formats Pillow may open, how many pixels, and how much memory.

Shared by ``predict`` (image files), ``png`` (dataset cells), the demo (Gradio uploads), evaluation, export and
training; it imports only :mod:`hf_fmnist.errors`, so every one of them, and a generated Space, can use it.
"""

import os

from .errors import HfFmnistError

MAX_PIXELS = 1 << 23  # 8.4 MP (4K UHD fits); PIL's own bomb limit is 89 MP, far more than a 28x28 model needs
# The PIL formats opened for images from strangers. PIL otherwise tries every plugin it has, whatever the file's name:
# EPS runs Ghostscript (an external interpreter of the file's PostScript), and rarer plugins are less hardened. These
# are PIL's own decoders, and cover every suffix ``hf-fmnist predict`` looks for (PPM also reads PGM and PBM).
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")

# The memory budget: data a command may hold beyond the process at rest (the model's inputs, decoded images, a
# config's tables). One budget for every command, raised by the user who needs more.
MEMORY_ENV = "HF_FMNIST_MEMORY_MB"
DEFAULT_MEMORY_MB = 1024
# A batch's float32 inputs are counted this many times: the normalised copy, the first layers' activations and the
# allocator's slack are of the same order (28x28 presets use a few MB per 1,000 images either way).
INPUT_OVERHEAD = 4


# Classes: one bound wherever a count of classes is read from a stranger (a dataset card's names, a ClassLabel's
# num_classes, the names kept in Parquet files' own schema metadata, a model's config.json num_labels and id2label).
# ImageNet-1k's 1,000 is the largest real class count a Fashion-MNIST-sized model is trained on here; past it the
# confusion matrix (classes² counts, then a JSON list of them), the card's per-class table and the plots stop being
# small (120,000 classes asked for a 107 GB matrix, and 100,000 in a config.json for a 4.5 MB error line).
MAX_CLASSES = 1_000


def check_classes(count: int, what: str) -> None:
    """Refuse ``count`` classes beyond :data:`MAX_CLASSES`, one line naming ``what`` asked for them."""
    if count > MAX_CLASSES:
        raise HfFmnistError(
            f"{what} has {count:,} classes, more than the {MAX_CLASSES:,} hf_fmnist accepts; refused (merge classes, "
            f"or use a dataset or model with fewer)."
        )


def memory_budget() -> int:
    """The budget in bytes: ``$HF_FMNIST_MEMORY_MB`` megabytes, or 1 GB."""
    value = os.environ.get(MEMORY_ENV, "").strip()
    if not value:
        return DEFAULT_MEMORY_MB << 20
    if not value.isdigit() or int(value) < 1:
        raise HfFmnistError(f"{MEMORY_ENV}={value[:40]!r}: give the memory budget as a whole number of megabytes.")
    return int(value) << 20


def _budget_text() -> str:
    return f"the memory budget ({memory_budget() >> 20:,} MB; set {MEMORY_ENV} to raise it)"


def per_image_bytes(channels: int, size: tuple[int, int]) -> int:
    """What one image of a batch costs: ``channels × height × width`` float32 values, :data:`INPUT_OVERHEAD` times."""
    return channels * size[0] * size[1] * 4 * INPUT_OVERHEAD


def fit_batch(batch: int, channels: int, size: tuple[int, int], activations: int = 0) -> int:
    """``batch``, or the largest smaller batch whose inputs, and ``activations`` bytes per image (the model's own
    working memory, ``core.models.inference_activation_bytes``), fit the budget (evaluation, prediction, export);
    one line if not even one image fits."""
    each = per_image_bytes(channels, size) + activations
    fits = memory_budget() // each
    if fits < 1:
        raise HfFmnistError(
            f"One {channels}×{size[0]}×{size[1]} input needs {each / 2**20:,.0f} MB (with the model's working memory), "
            f"more than {_budget_text()}."
        )
    return max(1, min(batch, fits))


def check_batch(batch: int, channels: int, size: tuple[int, int], flag: str) -> None:
    """Refuse a batch whose inputs exceed the budget (training: the recipe fixes the batch, it is not changed)."""
    need = batch * per_image_bytes(channels, size)
    if need > memory_budget():
        raise HfFmnistError(
            f"{flag} {batch} of {channels}×{size[0]}×{size[1]} inputs needs about {need / 2**30:,.1f} GB, more than "
            f"{_budget_text()}; lower {flag}, or use a model with smaller inputs."
        )


def check_table(count: int, what: str, bytes_each: int = 64) -> None:
    """Refuse ``count`` entries of ``bytes_each`` (a config's label table, a layer's weights) beyond the budget."""
    if count * bytes_each > memory_budget():
        raise HfFmnistError(f"{what} asks for about {count * bytes_each / 2**30:,.1f} GB, more than {_budget_text()}.")


def check_batches(channels: int, size: tuple[int, int], **batches: int) -> None:
    """:func:`check_batch` for each ``flag_name=batch`` (training's train and evaluation batches)."""
    for name, batch in batches.items():
        check_batch(batch, channels, size, f"--{name}")


# A safetensors file is an 8-byte header length, a JSON header (every tensor's name, dtype, shape and offsets, and a
# string-to-string ``__metadata__``), then the data. safetensors and transformers parse the whole header first: a
# 99 MB header of 1.6 million empty tensors took 54 s and 2.9 GB before a checkpoint was refused, and 5 million
# metadata entries became a 59 MB error line. Real headers are small (about 100 bytes a tensor: ResNet-50's 320
# tensors take 30 KB, a checkpoint's optimizer file twice its model's), so each is bounded before anything parses it.
MAX_SAFETENSORS_HEADER = 8 << 20
MAX_TENSORS = 20_000
MAX_METADATA_ENTRIES = 1_000


def check_safetensors_header(path, shown=None) -> None:
    """Refuse a safetensors file whose header is larger than :data:`MAX_SAFETENSORS_HEADER` bytes, names more than
    :data:`MAX_TENSORS` tensors or holds more than :data:`MAX_METADATA_ENTRIES` metadata entries: read from the
    8-byte length, then the bounded header (its tensors counted by a byte scan before the JSON is parsed), one line
    naming the file. A file that is not safetensors at all is left to the reader, which says so in its own words."""
    import json
    import struct

    shown = shown or path
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return
            (length,) = struct.unpack("<Q", head)
            if length > MAX_SAFETENSORS_HEADER:
                raise HfFmnistError(
                    f"{shown}: its safetensors header is {length:,} bytes, more than the {MAX_SAFETENSORS_HEADER:,} "
                    f"of any real weights file; refused."
                )
            header = f.read(length)
    except OSError:
        return  # unreadable: the reader's own error names it
    tensors = header.count(b'"data_offsets"')
    if tensors > MAX_TENSORS:
        raise HfFmnistError(f"{shown}: its header names {tensors:,} tensors, more than {MAX_TENSORS:,}; refused.")
    try:
        parsed = json.loads(header)
    except (ValueError, RecursionError):
        return  # not JSON: the reader refuses it
    metadata = parsed.get("__metadata__") if isinstance(parsed, dict) else None
    if isinstance(metadata, dict) and len(metadata) > MAX_METADATA_ENTRIES:
        raise HfFmnistError(
            f"{shown}: its header's metadata holds {len(metadata):,} entries, more than {MAX_METADATA_ENTRIES:,}; "
            f"refused."
        )
    named = len(parsed) - ("__metadata__" in parsed) if isinstance(parsed, dict) else 0
    if named > MAX_TENSORS:  # names without "data_offsets" escape the byte scan, not this count
        raise HfFmnistError(f"{shown}: its header names {named:,} tensors, more than {MAX_TENSORS:,}; refused.")
