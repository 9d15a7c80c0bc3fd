"""``hf-fmnist embed``: a model's pooled penultimate features of a split, as a 2-D map and a TensorBoard projector.

The features come from the stock model's own outputs, the same for every architecture: the backbone
(``model.base_model``) is run with ``output_hidden_states=True``; its ``pooler_output`` where it has one (RegNet,
ResNet, ConvNeXt), else its ``last_hidden_state`` averaged over tokens or positions (ViT, PVT). No hook, nothing
that knows one architecture.

Writes ``map.png`` (UMAP, t-SNE or PCA, coloured by class, with a legend and optional thumbnails), ``map.csv``
(the 2-D points with index and label) and ``projector/`` (``add_embedding`` with a sprite of the images and the
class names as metadata; ``tensorboard --logdir OUTPUT/projector`` opens it).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import HfFmnistError

EMBED = "embed-output"  # the ownership marker of an embed folder
OUTPUT_FILES = ("map.png", "map.csv", "projector")
MAX_PROJECTOR_IMAGES = 10_000  # TensorBoard's sprite is at most 8192 px square: 10,000 28×28 images fit


def pooled_features(model, pixel_values):
    """The backbone's pooled output for a batch, as ``(batch, features)`` float32 (see the module's note)."""
    backbone = model.base_model
    out = backbone(pixel_values=pixel_values, output_hidden_states=True, return_dict=True)
    pooled = getattr(out, "pooler_output", None)
    if pooled is not None:
        return pooled.flatten(1).float()
    hidden = out.last_hidden_state
    if hidden.dim() == 3:  # (batch, tokens, channels)
        return hidden.mean(dim=1).float()
    if hidden.dim() == 4:  # (batch, channels, height, width)
        return hidden.mean(dim=(2, 3)).float()
    raise HfFmnistError(
        f"{type(model).__name__}: its backbone's last_hidden_state has {hidden.dim()} dimensions and no pooler_output; "
        "embed reads (batch, tokens, channels) or (batch, channels, height, width)."
    )


def embed_model(
    model_ref: str,
    output_dir: str | os.PathLike,
    *,
    dataset: str | None = None,
    split: str | None = None,
    method: str = "umap",
    thumbnails: int = 0,
    max_samples: int | None = None,
    batch_size: int = 500,
    data_dir: str | None = None,
    seed: int = 0,
) -> dict:
    """Features of ``split`` (default: test) from ``model_ref``, mapped to 2-D; the folder's files (see above)."""
    import torch

    from .. import atomic, ownership
    from ..core.loader import DeviceLoader, Preprocess
    from ..core.models import inference_activation_bytes
    from ..data import maps
    from ..data.tensors import eval_split_of, find_columns, load_arrays, local_root, open_dataset
    from ..image_limits import check_table, fit_batch
    from .evaluate import load_for_inference

    maps.require_method(method, "embed")
    out = Path(output_dir)
    check_output_dir(out)
    model, processor, model_names = load_for_inference(model_ref)
    ds = open_dataset(dataset, data_dir=data_dir)
    split = split or eval_split_of(ds)
    if split is None or split not in ds:
        raise HfFmnistError(f"Split {split!r} not found; this dataset has {', '.join(ds)}.")
    names = list(ds[split].features[find_columns(ds[split].features)[1]].names)
    rows = ds[split] if max_samples is None else ds[split].select(range(min(max_samples, len(ds[split]))))
    images, labels = load_arrays(split, rows, root=local_root(dataset))
    preprocess = Preprocess.from_processor(processor, model.config.num_channels)
    device = next(model.parameters()).device
    size = (max(preprocess.size[0], images.shape[1]), max(preprocess.size[1], images.shape[2]))
    working = inference_activation_bytes(model.config, preprocess.channels, preprocess.size)
    loader = DeviceLoader(
        torch.tensor(images, device=device),
        torch.tensor(labels, device=device),
        batch_size=fit_batch(batch_size, preprocess.channels, size, working),
        train=False,
        preprocess=preprocess,
    )
    chunks: list[np.ndarray] = []
    with torch.inference_mode():
        for x, _, _ in loader.epoch(0):
            features = pooled_features(model, x).cpu().numpy()
            if not chunks:  # the whole split's features must fit the budget: judged from the first batch
                check_table(len(images) * features.shape[1], f"{len(images):,} feature vectors", bytes_each=8)
            chunks.append(features)
    features = np.concatenate(chunks)
    with atomic.writing(out):
        out.mkdir(parents=True, exist_ok=True)
        ownership.mark(out, EMBED)
        staging = Path(tempfile.mkdtemp(prefix=".embed-", suffix=".tmp", dir=out))
    try:
        points = maps.reduce_2d(features, method, seed=seed, workdir=staging)
        with atomic.writing(out, staging=staging):
            title = (
                f"{maps.LABELS[method]} of {type(model).__name__}'s pooled features, {split} split "
                f"({len(labels):,} images)"
            )
            maps.scatter(points, labels, names, staging / "map.png", method=method, title=title, images=images,
                         thumbnails=thumbnails, seed=seed)  # fmt: skip
            atomic.write_text(staging / "map.csv", points_csv(points, labels))
            write_projector(staging / "projector", features, images, labels, names, seed=seed)
        for name in OUTPUT_FILES:
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)  # an earlier embed's projector (the folder is ours: checked above)
            os.replace(staging / name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"images": len(labels), "features": int(features.shape[1]), "method": method, "output_dir": str(out)}


def check_output_dir(out: Path) -> None:
    """A new or empty folder, or one that `hf-fmnist embed` wrote before; its ``projector/`` is replaced whole, so
    it must hold only what TensorBoard's projector writes (never a link, never a file of the user's)."""
    from .. import ownership

    ownership.check_writable_by(out, "--output-dir", EMBED, "hf-fmnist embed")
    check_projector(out / "projector")


# What SummaryWriter.add_embedding writes: the event file and projector config at the top, and per embedding a
# numbered folder with one for the tag (00000/pooled_features/) holding the vectors, the metadata and the sprite
_PROJECTOR_TOP = re.compile(r"(events\.out\.tfevents\.[\w.-]+|projector_config\.pbtxt)")
_PROJECTOR_STEP = re.compile(r"\d{5}/[\w.-]+/(tensors\.tsv|metadata\.tsv|sprite\.png)")


def check_projector(folder: Path) -> None:
    """Refuse, in one line naming the entry, a ``projector/`` that is a link or holds anything not of the projector's
    own shape: replacing it would otherwise delete a user's files or follow a link elsewhere."""
    from ..errors import printable

    def refuse(path: Path, why: str) -> HfFmnistError:
        return HfFmnistError(
            f"{printable(str(path))} {why}; `hf-fmnist embed` replaces projector/ whole and never deletes or writes "
            "through what it did not write: move it away or pass a new --output-dir."
        )

    if folder.is_symlink():
        raise refuse(folder, "is a link")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise refuse(folder, "is not a folder")
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            raise refuse(path, "is a link")
        if path.is_dir() and re.fullmatch(r"\d{5}(/[\w.-]+)?", name):
            continue
        if not path.is_file() or not (_PROJECTOR_TOP.fullmatch(name) or _PROJECTOR_STEP.fullmatch(name)):
            raise refuse(path, "was not written by TensorBoard's projector")


def points_csv(points: np.ndarray, labels: np.ndarray) -> str:
    lines = ["index,label,x,y"]
    lines += [f"{i},{int(c)},{x:.6g},{y:.6g}" for i, (c, (x, y)) in enumerate(zip(labels.tolist(), points.tolist()))]
    return "\n".join(lines) + "\n"


def write_projector(folder: Path, features, images, labels, names, *, seed: int = 0) -> None:
    """TensorBoard's projector files via ``SummaryWriter.add_embedding``: the vectors, the class names as metadata
    and a sprite of the images (at most :data:`MAX_PROJECTOR_IMAGES`, sampled with ``seed`` when there are more)."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    keep = np.arange(len(labels))
    if len(keep) > MAX_PROJECTOR_IMAGES:
        keep = np.sort(np.random.default_rng(seed).choice(len(keep), MAX_PROJECTOR_IMAGES, replace=False))
    sprite = torch.from_numpy(np.asarray(images[keep], dtype=np.float32) / 255.0).unsqueeze(1)  # (N, 1, H, W)
    writer = SummaryWriter(log_dir=str(folder))
    try:
        writer.add_embedding(
            torch.from_numpy(np.asarray(features[keep], dtype=np.float32)),
            metadata=[names[int(c)] for c in labels[keep]],
            label_img=sprite,
            tag="pooled_features",
        )
    finally:
        writer.close()
