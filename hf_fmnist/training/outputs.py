"""The model folder a training run leaves: everything the Hub and stock transformers need, written atomically.

``model.safetensors``, ``config.json``, ``preprocessor_config.json``, ``all_results.json``, ``training_config.json``,
``learning_curves.png``, ``confusion_matrix.png``, ``predictions.png`` (the top losses), ``examples/*.png`` (a few
test images for the Hub's widget) and the ``README.md`` model card, rendered from those files (so a push renders it
again for its repo). Files are assembled in a temp folder inside the output folder and moved into place one by one,
so no file is ever half written and checkpoints or logs already there are left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .. import atomic, ownership, plots
from ..core import card as cards
from ..core.card import EXAMPLES_DIR, RESULTS_FILE
from ..core.metrics import softmax, top_losses
from ..data import idx
from ..errors import printable

__all__ = ["RESULTS_FILE", "write_model_folder", "is_original_split", "write_examples"]
TOP_LOSSES = 40  # mistakes in predictions.png
NUM_EXAMPLES = 6  # widget images: one per class, of the first classes met in the test split


def write_model_folder(
    output_dir,
    model,
    processor,
    results: dict,
    config,
    resolved: dict,
    *,
    images: np.ndarray,
    logits: np.ndarray,
    labels: np.ndarray,
    names,
) -> Path:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic.writing(output_dir):  # even the temp folder's entry may not fit
        tmp = Path(tempfile.mkdtemp(prefix=".final-", suffix=".tmp", dir=output_dir))  # never a name someone used
    try:
        # Everything is assembled in tmp first: a full disk stops it before any file of output_dir is replaced (one
        # NoSpaceError line naming the file's final name); the moves below are renames, which need no space.
        with atomic.writing(output_dir / "model.safetensors"):  # safetensors' error does not name its file
            model = model.to("cpu")
            for p in model.parameters():  # channels_last weights are not contiguous; safetensors wants them so
                p.data = p.data.contiguous()
            model.save_pretrained(tmp)
        with atomic.writing(output_dir, staging=tmp):
            processor.save_pretrained(tmp)
            (tmp / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
            config.save(tmp, **resolved, num_processes=results["num_processes"])
            plots.learning_curves(results["history"], tmp / "learning_curves.png")
            plots.confusion_matrix(np.asarray(results["eval_confusion_matrix"]), names, tmp / "confusion_matrix.png")
            plots.top_losses_grid(
                images,
                labels,
                softmax(logits),
                top_losses(logits, labels, TOP_LOSSES),
                names,
                tmp / "predictions.png",
                split=results["eval_split"],
            )
            write_examples(images, labels, names, tmp / EXAMPLES_DIR)
            from huggingface_hub import constants

            card = cards.render_model_card(
                tmp, repo_id=config.hub_model_id, endpoint=constants.ENDPOINT, local_name=output_dir.resolve().name
            )
            (tmp / "README.md").write_text(card)
            _replace_examples(tmp / EXAMPLES_DIR, output_dir / EXAMPLES_DIR)
        atomic.publish(tmp)  # safetensors and mkstemp write private files: the folder gets the umask's modes
        for item in sorted(tmp.iterdir()):
            os.replace(item, output_dir / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return output_dir


def _replace_examples(new: Path, old: Path) -> None:
    """Move our new example images into ``old``, replacing only the ones our marker there says we wrote.

    ``old`` belongs to a folder we may not have written (``--overwrite_output_dir``, or a stranger's run being
    resumed): a file we did not write is never deleted or replaced (a new example of that name is left out, with a
    line saying so), and nothing is written through a link. This runs after training, so it skips rather than
    fails: the examples only feed the Hub's widget.
    """
    if old.is_symlink() or (old.exists() and not old.is_dir()):
        print(
            f"note: {printable(str(old))} is a link or a file, not a folder of ours: no example images written "
            "(move it away and train again to get them)"
        )
        shutil.rmtree(new, ignore_errors=True)
        return
    old.mkdir(exist_ok=True)
    ours = ownership.marked_files(old, ownership.EXAMPLES)
    for name in sorted(ours):
        path = old / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
    written = []
    for path in sorted(new.iterdir()):
        target = old / path.name
        if target.exists() or target.is_symlink():
            print(f"note: kept {printable(str(target))}, which hf_fmnist did not write; that example is left out")
            continue
        os.replace(path, target)
        written.append(path.name)
    ownership.mark(old, ownership.EXAMPLES, files=written)
    shutil.rmtree(new, ignore_errors=True)


def write_examples(images: np.ndarray, labels: np.ndarray, names, folder: Path, count: int = NUM_EXAMPLES) -> list:
    """The first test image of each of the first ``count`` classes met, as ``LABEL_NAME.png`` (28×28 gray PNG).

    Real evaluation images, so the Hub's widget shows what the model was made for (its default photos are out of
    distribution). The PNG encoder is deterministic: the same images give the same bytes, so re-pushes change nothing.
    """
    from ..data import png

    folder.mkdir(parents=True, exist_ok=True)
    picks: list[int] = []
    for i, label in enumerate(labels.tolist()):
        if label not in [labels[j] for j in picks]:
            picks.append(i)
        if len(picks) == count:
            break
    written = []
    for i, data in zip(picks, png.encode_gray(np.ascontiguousarray(images[picks], dtype=np.uint8), threads=1)):
        label = int(labels[i])
        slug = re.sub(r"[^a-z0-9]+", "_", names[label].lower()).strip("_")
        path = folder / f"{label}_{slug}.png"
        path.write_bytes(data)
        written.append(path)
    return written


def is_original_split(split: str, images: np.ndarray, labels: np.ndarray) -> bool:
    """Whether ``images`` and ``labels`` are the original release's ``split``, all of it, in its order.

    Hashes them as the IDX files they came from (header and content) and compares with the release's sha256, so the
    verdict holds whatever the data's source (built-in, an exported folder, a Hub copy): a subset, a reordering, a
    modified pixel or label, or data built from other files is not the original.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or len(images) != len(labels) or len(images) != idx.NUM_EXAMPLES.get(split):
        return False
    if (
        images.min(initial=0) < 0
        or images.max(initial=0) > 255
        or labels.min(initial=0) < 0
        or labels.max(initial=0) > 255
    ):
        return False
    image_name, label_name = idx.FILENAMES[split]
    n, rows, cols = images.shape
    image_header = b"".join(x.to_bytes(4, "big") for x in (idx.IMAGES_MAGIC, n, rows, cols))
    label_header = b"".join(x.to_bytes(4, "big") for x in (idx.LABELS_MAGIC, n))
    image_digest = hashlib.sha256(image_header + images.astype(np.uint8).tobytes()).hexdigest()
    label_digest = hashlib.sha256(label_header + labels.astype(np.uint8).tobytes()).hexdigest()
    return image_digest == idx.SHA256[image_name] and label_digest == idx.SHA256[label_name]
