"""``hf-fmnist predict``: classify image files and folders with any image-classification model.

Each file is opened on its own; a bad one (empty, corrupt, not an image, animated, too large, not a regular file)
gets its own one-line error and the rest of the batch still runs. Images that are valid but unusual are converted with
the right arithmetic and say so: palette and CMYK images through RGB, 16-bit images scaled (not clipped) to 8 bits,
alpha composited over black (Fashion-MNIST's background).

Memory stays bounded whatever the files: an image is refused above :data:`MAX_PIXELS` (JPEGs are first decoded at a
reduced scale), shrunk to the model's input size as soon as it is loaded, and results are yielded batch by batch.
Names are printed escaped (:func:`hf_fmnist.errors.printable`), so a file name cannot forge an output line.

>>> results = predict("out", ["shoe.png", "photos/"], top_k=3)        # doctest: +SKIP
>>> results[0]["predictions"][0]                                         # doctest: +SKIP
{'label': 'Sneaker', 'score': 0.97}
"""

from __future__ import annotations

import stat
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import HfFmnistError, error_line
from ..image_limits import IMAGE_FORMATS, MAX_PIXELS, fit_batch

MAX_FILE_BYTES = 64 << 20
JPEG_DRAFT_SIZE = (512, 512)  # JPEGs decode at 1/2-1/8 scale when that still leaves this many pixels
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm"}


class ImageFileError(HfFmnistError):
    """One input file cannot be classified."""


@dataclass
class LoadedImage:
    gray: np.ndarray  # uint8 (H, W)
    notes: list[str] = field(default_factory=list)


def collect_paths(paths: list[str]) -> list[Path]:
    """Files as given, and for each folder its image files (by suffix), recursively, in sorted order.

    Inside a folder, links that lead out of it are left out: the folder is what the user asked to classify.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            root = path.resolve()
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and p.resolve().is_relative_to(root)
                )
            )
        else:
            found.append(path)  # a missing file gets its own error later
    return found


def load_image(path: Path) -> LoadedImage:
    """Open one image as 8-bit gray, or raise :class:`ImageFileError` saying exactly what is wrong with it."""
    from PIL import Image, UnidentifiedImageError

    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # refuse, don't just warn
            with Image.open(path, formats=IMAGE_FORMATS) as image:
                if image.format == "JPEG":
                    image.draft("RGB" if image.mode != "L" else "L", JPEG_DRAFT_SIZE)  # decode at a reduced scale
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImageFileError(
                        f"{path}: {width}x{height} pixels, more than the {MAX_PIXELS / 1e6:.1f} MP hf_fmnist "
                        f"decodes (too large); Fashion-MNIST models see 28x28, so shrink it first."
                    )
                frames = getattr(image, "n_frames", 1)
                if frames > 1:
                    raise ImageFileError(
                        f"{path}: animated image with {frames} frames; save the frame to classify as a still image."
                    )
                image.load()
                return _to_gray(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageFileError(
            f"{path}: refused as a possible decompression bomb ({e}); Fashion-MNIST images are 28x28, shrink it first."
        ) from None
    except UnidentifiedImageError:
        raise ImageFileError(
            f"{path}: not an image file in a format hf_fmnist reads ({', '.join(IMAGE_FORMATS)}); convert it to PNG."
        ) from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for damaged data
        raise ImageFileError(f"{path}: corrupt or truncated image ({e}).") from None


def _check_file(path: Path) -> None:
    """A regular, non-empty file of sane size: FIFOs and devices are never opened (reading one blocks or never ends)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageFileError(f"{path}: no such file.") from None
    except OSError as e:
        raise ImageFileError(f"{path}: cannot read ({e.strerror}).") from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageFileError(f"{path}: a folder; pass it on its own to classify the images inside.")
    if not stat.S_ISREG(info.st_mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(info.st_mode)
            else "a device"
            if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
            else "a socket"
            if stat.S_ISSOCK(info.st_mode)
            else "not a regular file"
        )
        raise ImageFileError(f"{path}: {kind}, not an image file; pass image files or folders.")
    if info.st_size == 0:
        raise ImageFileError(f"{path}: empty file (0 bytes).")
    if info.st_size > MAX_FILE_BYTES:
        raise ImageFileError(
            f"{path}: {info.st_size:,} bytes, more than the {MAX_FILE_BYTES:,} hf_fmnist reads "
            f"for one image; shrink it first."
        )


def _to_gray(image) -> LoadedImage:
    from PIL import Image

    notes = []
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.int64)
        peak = 65535 if mode.startswith("I;16") or array.max() > 255 else 255
        if peak == 65535:
            notes.append("16-bit image scaled to 8 bits")
        return LoadedImage(np.clip(np.round(array * 255 / peak), 0, 255).astype(np.uint8), notes)
    if mode == "F":
        raise ImageFileError(f"{image.filename}: floating-point image; save it as 8-bit grayscale or RGB.")
    if mode == "P":
        notes.append("palette image converted through RGB")
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode == "CMYK":
        notes.append("CMYK image converted to RGB")
        image = image.convert("RGB")
    if mode in ("RGBA", "LA", "PA"):
        notes.append("transparency composited over black")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    if image.mode == "1":
        image = image.convert("L")
    return LoadedImage(np.asarray(image.convert("L")), notes)


def predict(model_ref: str, paths: list[str], *, top_k: int = 5, batch_size: int = 256) -> list[dict]:
    """Classify every image under ``paths``: one dict per file, ``predictions`` or ``error`` (and ``notes``)."""
    return list(iter_predict(model_ref, paths, top_k=top_k, batch_size=batch_size))


def iter_predict(
    model_ref: str, paths: list[str], *, top_k: int = 5, batch_size: int = 256, progress: bool | None = None
) -> Iterator[dict]:
    """:func:`predict` as a stream: results in input order, each batch's as soon as it is classified.

    Each image is shrunk to the model's input size as soon as it is loaded, so memory holds one full-size image
    and ``batch_size`` small ones, whatever the files. ``progress``: a bar on stderr (default: when it is a terminal).
    """
    import torch
    from tqdm.auto import tqdm

    from ..core.loader import Preprocess
    from ..core.models import inference_activation_bytes
    from .evaluate import load_for_inference

    files = collect_paths(paths)
    if not files:
        raise HfFmnistError(f"No image files found in {', '.join(paths)}.")
    model, processor, names = load_for_inference(model_ref)
    preprocess = Preprocess.from_processor(processor, model.config.num_channels)
    working = inference_activation_bytes(model.config, preprocess.channels, preprocess.size)
    batch_size = fit_batch(batch_size, preprocess.channels, preprocess.size, working)  # within the memory budget
    top_k = max(1, min(top_k, len(names)))
    device = next(model.parameters()).device
    pending: list[dict] = []  # results in input order, the batch's entries among them
    batch: list[tuple[dict, torch.Tensor]] = []

    def classify() -> None:
        if not batch:
            return
        pixels = torch.stack([small for _, small in batch]).to(device)
        with torch.inference_mode():
            probs = model(pixel_values=preprocess(pixels)).logits.float().softmax(-1)
        scores, labels = probs.topk(top_k, dim=-1)
        for (entry, _), top_scores, top_labels in zip(batch, scores.tolist(), labels.tolist()):
            entry["predictions"] = [{"label": names[i], "score": round(v, 6)} for v, i in zip(top_scores, top_labels)]
        batch.clear()

    show = sys.stderr.isatty() if progress is None else progress
    for path in tqdm(files, unit="image", disable=not show or len(files) < 2, file=sys.stderr):
        entry: dict = {"path": str(path)}
        pending.append(entry)
        try:
            loaded = load_image(path)
        except ImageFileError as e:
            entry["error"] = str(e)
            continue
        if loaded.notes:
            entry["notes"] = loaded.notes
        batch.append((entry, _fit(loaded.gray, preprocess.size)))
        if len(batch) >= batch_size:
            classify()
            yield from pending
            pending.clear()
    classify()
    yield from pending


def _fit(gray: np.ndarray, size: tuple[int, int]):
    """The image as a uint8 tensor of ``size``: images of any size can then share one batch."""
    import torch
    import torch.nn.functional as F

    pixels = torch.tensor(gray)
    if tuple(pixels.shape) == tuple(size):
        return pixels
    resized = F.interpolate(pixels[None, None].float(), size=size, mode="bilinear", antialias=True)
    return resized[0, 0].round().clamp(0, 255).to(torch.uint8)


def format_result(r: dict) -> str:
    """One result as one line, escaped and bounded (:func:`hf_fmnist.errors.error_line`): nothing in a file name,
    a class name or an error message can start another line or run on for megabytes (``--json`` keeps them whole)."""
    if "error" in r:
        return error_line(f"{r['path']}: error: {r['error'].removeprefix(r['path'] + ': ')}", prefix="")
    best = ", ".join(f"{p['label']} {p['score']:.1%}" for p in r["predictions"])
    note = f"  ({'; '.join(r['notes'])})" if r.get("notes") else ""
    return error_line(f"{r['path']}: {best}{note}", prefix="")


def format_results(results: list[dict]) -> str:
    return "\n".join(format_result(r) for r in results)


__all__ = ["predict", "iter_predict", "load_image", "collect_paths", "format_results", "ImageFileError"]
