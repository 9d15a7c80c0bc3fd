"""Model presets (stock transformers classes only) and loading of checkpoints for fine-tuning.

Every model here is a stock ``transformers`` class, so ``AutoModelForImageClassification.from_pretrained`` and
``pipeline("image-classification")`` load a saved folder without ``trust_remote_code``. The image-classification
pipeline converts every input to RGB, so presets take 3 channels (the gray image repeated) and their image processor
says ``do_convert_rgb: true``.

>>> model = create_model("cnn")
>>> model.config.num_labels, model.config.id2label[9]
(10, 'Ankle boot')
>>> create_model("resnet9000")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
hf_fmnist.errors.HfFmnistError: Unknown model preset 'resnet9000'; choose one of: cnn, vit, pvt, resnet, convnext,...
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from .. import CLASS_NAMES
from ..errors import HfFmnistError, one_line, printable
from ..image_limits import MAX_CLASSES, check_classes, check_safetensors_header

MEAN, STD = 0.2860, 0.3530  # of Fashion-MNIST train pixels scaled to [0, 1]
IMAGE_SIZE = 28


def label_maps(names=CLASS_NAMES) -> tuple[dict[int, str], dict[str, int]]:
    return {i: n for i, n in enumerate(names)}, {n: i for i, n in enumerate(names)}


def regnet(*, names=CLASS_NAMES, **shape):
    """A small RegNet-X for 28×28: a stride-2 stem (14×14), then stages of 32/64/128 channels at 7, 4 and 2 pixels.

    Chosen by time to accuracy on a 2-core CPU (docs/benchmarks.md): about 1,600 training images/s there. Keeping a
    14×14 stage (``downsample_in_first_stage=False``) learns slightly more per epoch but runs at 660 images/s.
    ``shape`` overrides any of these ``RegNetConfig`` values (a recipe's ``model_config``).
    """
    from transformers import RegNetConfig, RegNetForImageClassification

    id2label, label2id = label_maps(names)
    config = _config(
        RegNetConfig,
        shape,
        num_channels=3,
        embedding_size=32,
        hidden_sizes=[32, 64, 128],
        depths=[1, 2, 2],
        groups_width=64,
        layer_type="x",
        downsample_in_first_stage=True,
        num_labels=len(names),
        id2label=id2label,
        label2id=label2id,
    )
    return RegNetForImageClassification(config)


def vit(*, names=CLASS_NAMES, **shape):
    """A small ViT for 28×28: 4×4 patches (49 tokens), width 128, 4 layers of 4 heads; ``shape`` as for
    :func:`regnet`."""
    from transformers import ViTConfig, ViTForImageClassification

    id2label, label2id = label_maps(names)
    config = _config(
        ViTConfig,
        shape,
        image_size=IMAGE_SIZE,
        patch_size=4,
        num_channels=3,
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=256,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=len(names),
        id2label=id2label,
        label2id=label2id,
    )
    return ViTForImageClassification(config)


def pvt_v2(*, names=CLASS_NAMES, **shape):
    """A small Pyramid Vision Transformer v2 for 28×28: three stages of attention at 14×14, 7×7 and 4×4 tokens.

    The CPU transformer preset, a stock ``PvtV2ForImageClassification`` (``pipeline`` loads it). Overlapping 3×3
    patch embeddings (stride 2) and a depthwise convolution in each feed-forward block let it learn Fashion-MNIST in
    a few epochs, where a plain ViT needs many; spatial reduction (``sr_ratios``) keeps 14×14 attention cheap. About
    545 training images/s on 2 cores, against 300 for the ``vit`` preset (docs/benchmarks.md).
    """
    from transformers import PvtV2Config, PvtV2ForImageClassification

    id2label, label2id = label_maps(names)
    config = _config(
        PvtV2Config,
        shape,
        num_channels=3,
        image_size=IMAGE_SIZE,
        num_encoder_blocks=3,
        depths=[1, 1, 2],
        hidden_sizes=[32, 64, 128],
        patch_sizes=[3, 3, 3],
        strides=[2, 2, 2],
        num_attention_heads=[1, 2, 4],
        sr_ratios=[2, 1, 1],
        mlp_ratios=[2, 2, 4],
        num_labels=len(names),
        id2label=id2label,
        label2id=label2id,
    )
    return PvtV2ForImageClassification(config)


def resnet(*, names=CLASS_NAMES, **shape):
    """A small ResNet (basic blocks) for 28×28, a type transformers.js runs: stages of 32/64/128 channels at 7, 4 and
    2 pixels, as the RegNet preset's.

    transformers' ResNet stem is fixed (a 7×7 stride-2 convolution, then a stride-2 max-pool): 28×28 becomes 7×7
    before the first stage, whatever the config says. ``downsample_in_first_stage=False`` keeps that stage at 7×7, so
    the stages run at 7, 4 and 2 pixels; a 14×14 stage (as the GPU recipes give the RegNet) is not possible with it.
    ``shape`` overrides any of these ``ResNetConfig`` values.
    """
    from transformers import ResNetConfig, ResNetForImageClassification

    id2label, label2id = label_maps(names)
    config = _config(
        ResNetConfig,
        shape,
        num_channels=3,
        embedding_size=32,
        hidden_sizes=[32, 64, 128],
        depths=[1, 2, 2],
        layer_type="basic",
        downsample_in_first_stage=False,
        num_labels=len(names),
        id2label=id2label,
        label2id=label2id,
    )
    return ResNetForImageClassification(config)


def convnext(*, names=CLASS_NAMES, **shape):
    """A small ConvNeXt for 28×28, a type transformers.js runs: a 2×2 patchify stem (14×14), then stages of
    32/64/128 channels at 14, 7 and 3 pixels.

    ConvNeXt downsamples between stages with an unpadded 2×2 stride-2 convolution, so 7×7 becomes 3×3 (not 4×4 as
    in the RegNet); a 4×4 stem would give stages at 7, 3 and 1 pixels. ``shape`` overrides any ``ConvNextConfig``.
    """
    from transformers import ConvNextConfig, ConvNextForImageClassification

    id2label, label2id = label_maps(names)
    config = _config(
        ConvNextConfig,
        shape,
        num_channels=3,
        patch_size=2,
        num_stages=3,
        hidden_sizes=[32, 64, 128],
        depths=[1, 2, 2],
        num_labels=len(names),
        id2label=id2label,
        label2id=label2id,
    )
    return ConvNextForImageClassification(config)


def pvt_v1(*, names=CLASS_NAMES, **shape):
    """A small Pyramid Vision Transformer (v1) for 28×28, a type transformers.js runs: 4×4 patches (7×7 tokens),
    then 3×3 tokens and one token plus the class token.

    PVT v1 sizes each stage's position embeddings from ``image_size // 2**(i+1)`` and its patch size, and they must
    match the tokens the stage gets: with a 28×28 input only 4×4 patches first (then 2×2 merges) fit, so its first
    stage is coarser than the v2 preset's 14×14. ``shape`` overrides any ``PvtConfig`` value.
    """
    from transformers import PvtConfig, PvtForImageClassification

    id2label, label2id = label_maps(names)
    config = _config(
        PvtConfig,
        shape,
        num_channels=3,
        image_size=IMAGE_SIZE,
        num_encoder_blocks=3,
        depths=[2, 2, 1],
        hidden_sizes=[64, 128, 128],
        patch_sizes=[4, 2, 2],
        strides=[4, 2, 2],
        num_attention_heads=[1, 2, 2],
        sequence_reduction_ratios=[1, 1, 1],
        mlp_ratios=[4, 4, 4],
        num_labels=len(names),
        id2label=id2label,
        label2id=label2id,
    )
    return PvtForImageClassification(config)


def _config(config_class, shape: dict, **preset):
    """The preset's config with ``shape`` applied; a key the class does not know is an error, not silently kept."""
    unknown = sorted(set(shape) - set(config_class().to_dict()))
    if unknown:
        raise HfFmnistError(
            f"{config_class.__name__} has no setting {', '.join(unknown)}; check the recipe's "
            f"model_config (hf_fmnist/core/recipes.py)."
        )
    return config_class(**{**preset, **shape})


# What each preset name builds. `cnn` and `pvt` are the recipes' presets: pointing them at `resnet` or `convnext` and
# `pvt_v1` (types transformers.js runs; RegNet and PVTv2 it does not) is this one line. Models saved from any of them
# load by their config's model_type, whatever the names point at later.
PRESETS: dict[str, Callable] = {
    "cnn": regnet,
    "vit": vit,
    "pvt": pvt_v2,
    "resnet": resnet,
    "convnext": convnext,
    "pvt1": pvt_v1,
}
# The model types transformers.js 4.3.1 runs for image classification (its MODEL_FOR_IMAGE_CLASSIFICATION mapping),
# of those the presets build: a test exports each preset of these types and runs it there.
TRANSFORMERS_JS_TYPES = frozenset({"vit", "resnet", "convnext", "pvt"})


def zero_init_residual(model) -> int:
    """Start every residual block as the identity, so early training sees a shallower network.

    RegNet X/Y and ResNet blocks: the scale of the last BatchNorm in the residual branch is zeroed, as torchvision's
    ``zero_init_residual`` (Goyal et al., 2017). ConvNeXt blocks: their layer scale (``layer_scale_parameter``,
    1e-6 by default, already nearly this) is zeroed. Returns how many blocks were changed (0 for other models).
    """
    import torch

    changed = 0
    for module in model.modules():
        kind = type(module).__name__
        if kind in ("ConvNextLayer",) and getattr(module, "layer_scale_parameter", None) is not None:
            torch.nn.init.zeros_(module.layer_scale_parameter)
            changed += 1
            continue
        if kind not in ("RegNetXLayer", "RegNetYLayer", "ResNetBasicLayer", "ResNetBottleNeckLayer"):
            continue
        norms = [m for m in module.layer.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        if norms:
            torch.nn.init.zeros_(norms[-1].weight)
            changed += 1
    return changed


def pca_init_stem(model, pixel_values) -> bool:
    """Initialise the first convolution's filters to the principal components of the images' patches, ± each.

    The first layer then starts with decorrelated filters that cover every frequency in the data, as in fast
    CIFAR-10 training (airbench's patch whitening; here it is only an initialisation, trained as usual).
    ``pixel_values``: normalised training images ``(N, C, H, W)`` whose channels are equal (gray as RGB). The
    remaining filters keep their random initialisation. Returns False (nothing changed) for models whose first
    layer is not a small convolution over the image channels (up to 7×7: ResNet's stem, whose 49 components fill
    all 32 filters of the ``resnet`` preset, ± each).
    """
    import torch
    import torch.nn.functional as F

    conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if conv is None or conv.groups != 1 or conv.in_channels != pixel_values.shape[1] or conv.kernel_size[0] > 7:
        return False
    if isinstance(conv.padding, str):  # "same"/"valid": not a stem of the kind this initialises
        return False
    kh, kw = conv.kernel_size
    with torch.no_grad():
        gray = pixel_values[:, :1].float()
        patches = F.unfold(gray, (kh, kw), padding=conv.padding, stride=conv.stride).transpose(1, 2)
        eigenvalues, vectors = torch.linalg.eigh(torch.cov(patches.reshape(-1, kh * kw).T))
        count = min(conv.out_channels // 2, kh * kw)
        # Largest components first; scaled to whiten, then spread over the equal input channels.
        filters = (vectors / (eigenvalues + 1e-2).sqrt()).T.flip(0)[:count].reshape(count, 1, kh, kw)
        filters = filters.expand(-1, conv.in_channels, -1, -1) / conv.in_channels
        conv.weight[:count] = filters
        conv.weight[count : 2 * count] = -filters
    return True


def create_model(name: str, **kwargs):
    """A freshly initialised preset model (``kwargs``: ``names`` and shape overrides of its config)."""
    if name not in PRESETS:
        raise HfFmnistError(
            f"Unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}, or pass a model folder / Hub id."
        )
    return PRESETS[name](**kwargs)


def preset_image_processor(size: int = IMAGE_SIZE):
    """What turns a PIL image into the tensor a preset was trained on: RGB, size×size, (x/255 - mean) / std."""
    from transformers import ViTImageProcessorPil

    return ViTImageProcessorPil(
        do_convert_rgb=True,
        do_resize=True,
        size={"height": size, "width": size},
        do_rescale=True,
        do_normalize=True,
        image_mean=[MEAN] * 3,
        image_std=[STD] * 3,
    )


def load_model(
    name_or_path: str,
    *,
    names=CLASS_NAMES,
    ignore_mismatched_sizes: bool = False,
    token: str | None = None,
    shape: dict | None = None,
):
    """``(model, image_processor)`` for a preset name (``shape``: overrides of its config), a local folder or a Hub id.

    A checkpoint whose labels differ from ``names`` gets a fresh head with our ``id2label``/``label2id``; if the head's
    shape differs, that needs ``ignore_mismatched_sizes`` (as in transformers' examples), and the error says so.
    """
    if name_or_path in PRESETS:
        return create_model(name_or_path, names=names, **(shape or {})), preset_image_processor()
    from transformers import AutoModelForImageClassification

    source = _describe(name_or_path)
    config = load_config(name_or_path, token, source)
    id2label, label2id = label_maps(names)
    same_labels = [config.id2label.get(i) for i in range(len(names))] == list(names) and config.num_labels == len(names)
    try:
        with bounded_load_report():
            model = AutoModelForImageClassification.from_pretrained(
                name_or_path,
                num_labels=len(names),
                id2label=id2label,
                label2id=label2id,
                ignore_mismatched_sizes=ignore_mismatched_sizes,
                token=token,
                trust_remote_code=False,  # explicit: unset, transformers asks on stdin to run repo code
            )
    except Exception as e:  # OSError (no weights), SafetensorError (damaged), UnpicklingError (a refused .bin), ...
        if remote_code_refusal(e, source):
            raise _refusal(source) from None
        if isinstance(e, (RuntimeError, ValueError)) and "mismatch" in str(e).lower():
            raise HfFmnistError(
                f"Model {source} has a {config.num_labels}-class head; pass --ignore_mismatched_sizes to replace it "
                f"with a fresh {len(names)}-class head."
            ) from None
        raise HfFmnistError(
            f"Cannot load model {source} ({type(e).__name__}: {one_line(e)}); pass a folder written by `train.py` "
            f"(config.json and model.safetensors), a preset ({', '.join(PRESETS)}), or a Hub model id."
        ) from None
    if not same_labels:
        _reset_head(model)
    return model, load_image_processor(name_or_path, token=token)


def load_image_processor(name_or_path: str, token: str | None = None):
    """The checkpoint's own image processor, or the presets' one when it was saved without any.

    Only a missing ``preprocessor_config.json`` falls back to the presets' processor; one that cannot be used (it
    asks for remote code, or is malformed) is an error rather than a silent change of preprocessing.
    """
    from transformers import AutoImageProcessor

    from .loader import Preprocess

    check_model_folder(name_or_path, token)
    try:
        processor = AutoImageProcessor.from_pretrained(name_or_path, token=token, trust_remote_code=False)
    except OSError:  # no preprocessor_config.json: a checkpoint saved without one
        return preset_image_processor()
    except Exception as e:  # ValueError (remote code, unknown class), JSON errors
        raise remote_code_refusal(e, _describe(name_or_path)) or HfFmnistError(
            f"Cannot use the image processor of {_describe(name_or_path)} ({type(e).__name__}: "
            f"{one_line(e)}); hf_fmnist never runs code from a model repo."
        ) from None
    # Its sizes and mean/std come from the folder: check them now, where the folder can be named, rather than when a
    # batch is resized by them (a size of 60000 allocates 14 GB per image). The channel count is the processor's own
    # (the model's is checked against it later, by Preprocess.from_processor).
    mean = getattr(processor, "image_mean", None)
    channels = len(mean) if isinstance(mean, (list, tuple)) and 1 <= len(mean) <= 4 else 3
    try:
        Preprocess.from_processor(processor, channels)
    except HfFmnistError as e:
        raise HfFmnistError(f"Cannot use the image processor of {_describe(name_or_path)}: {e}.") from None
    return processor


MAX_CONFIG_BYTES = (
    16 << 20
)  # a config naming 22k ImageNet classes is about 1 MB; json.load holds several times the file


def check_model_folder(name_or_path: str, token: str | None = None) -> None:
    """Refuse a local model folder holding links that lead out of it (to anyone's files), or a configuration too big
    to be one; of a Hub id, the ``config.json`` is checked (:func:`check_config_sizes`) as the cache holds it.

    transformers follows links: ``model.safetensors -> ../elsewhere/...`` would load weights (or read files) the
    folder's author chose from outside the folder the user named.
    """
    folder = Path(os.path.expanduser(name_or_path))
    if not folder.is_dir():
        if name_or_path not in PRESETS:
            _check_hub_config(name_or_path, token)
        return
    roots = [folder.resolve()]
    snapshot = roots[0]
    if snapshot.parent.name == "snapshots" and (snapshot.parent.parent / "blobs").is_dir():
        # a Hugging Face cache snapshot (models--NS--NAME/snapshots/REV), as snapshot_download returns it: its files
        # are links into the same repo's blobs/ folder, by design
        roots.append((snapshot.parent.parent / "blobs").resolve())
    for name in ("config.json", "preprocessor_config.json"):
        path = folder / name
        if path.exists() and not path.is_file():  # a FIFO would block transformers' read forever
            raise HfFmnistError(f"Model folder {folder}: {name} is not a regular file; refused.")
        if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:  # transformers would read it whole
            raise HfFmnistError(
                f"Model folder {folder}: {name} is {path.stat().st_size:,} bytes, more than any model's configuration "
                f"({MAX_CONFIG_BYTES:,}); refused. Is it the folder you meant?"
            )
    check_config_sizes(folder / "config.json")
    check_processor_config(folder / "preprocessor_config.json")
    for index in sorted(folder.glob("*.index.json")):
        check_shard_index(index)
    for weights in sorted(folder.glob("*.safetensors")):  # before transformers parses a header of millions of tensors
        if weights.is_file():
            check_safetensors_header(weights, f"Model folder {folder}: {printable(weights.name)}")
    for entry in sorted(folder.iterdir()):
        if entry.is_symlink() and not any(_resolves_inside(entry, root) for root in roots):
            raise HfFmnistError(
                f"Model folder {folder}: {printable(entry.name)} is a link leading out of the folder; refused. Copy "
                f"the file itself into the folder (cp -L) if you trust it."
            )


def _read_json(path: Path):
    """A model folder's JSON file (config, image processor config, shard index), or one line if it is not JSON;
    RecursionError is unreadable input too (an array nested 10**5 deep in a few hundred KB)."""
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise HfFmnistError(f"{path}: not readable JSON ({one_line(e, 120)}).") from None


MAX_SHARDS = 10_000


def check_shard_index(path: Path) -> None:
    """A sharded checkpoint's index (``model.safetensors.index.json``) names its shards by path, and transformers
    opens them relative to the folder: ``../elsewhere/model.safetensors`` loaded weights from outside it. Every
    shard must be a plain file name in the folder."""

    if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
        raise HfFmnistError(f"Model folder {path.parent}: {printable(path.name)} is not a shard index; refused.")
    index = _read_json(path)
    shards = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(shards, dict) or len(set(map(str, shards.values()))) > MAX_SHARDS:
        raise HfFmnistError(f"{path}: field 'weight_map' must be an object of tensor names to shard files; refused.")
    for shard in set(shards.values()):
        plain = isinstance(shard, str) and shard == Path(shard).name and shard not in ("", ".", "..")
        if not plain or not (path.parent / shard).is_file():
            raise HfFmnistError(
                f"{path}: shard {printable(str(shard))[:100]!r} is not a file of the folder; refused (a model folder "
                f"is read only inside itself)."
            )


def remote_code_refusal(error: BaseException, source: str) -> HfFmnistError | None:
    """transformers' "contains custom code ... trust_remote_code" error in our words (it quotes an
    ``https://hf.co//<local folder>`` URL and asks for a flag hf_fmnist never passes); None for other errors."""
    text = str(error)
    return _refusal(source) if "custom code" in text or "trust_remote_code" in text else None


def _refusal(source: str) -> HfFmnistError:
    return HfFmnistError(
        f"Cannot load model {source}: it asks to run its own Python code (auto_map), and hf_fmnist never runs code "
        f"from a model repo or folder; use a model of a stock transformers class."
    )


MAX_LABELS = MAX_CLASSES  # one bound for classes, wherever they are read (image_limits.MAX_CLASSES)
WIDTHS = ("hidden_size", "hidden_sizes", "embedding_size", "intermediate_size", "embed_dim", "d_model", "hidden_dim")
# Layer and block counts: each bounded as plain JSON, so that building the model even on the meta device (to count
# its parameters, :func:`check_parameters`) stays quick; the parameters themselves are what the budget bounds.
DEPTHS = ("num_hidden_layers", "num_layers", "depths", "num_encoder_blocks", "encoder_layers", "num_attention_heads")
MAX_DEPTH = 1_000


def _check_hub_config(repo_id: str, token: str | None) -> None:
    """:func:`check_config_sizes` of a Hub model's ``config.json`` and :func:`check_processor_config` of its
    ``preprocessor_config.json``, fetched into the cache transformers reads next.

    A repo that cannot be reached, or has no config, is left to transformers to report; one whose config is larger
    than :data:`MAX_CONFIG_BYTES` is refused before it is downloaded.
    """
    try:
        from huggingface_hub import HfApi, hf_hub_download
        from huggingface_hub.hf_api import RepoFile

        names = ["config.json", "preprocessor_config.json"]
        for entry in HfApi(token=token).get_paths_info(repo_id, names):
            if isinstance(entry, RepoFile) and entry.size > MAX_CONFIG_BYTES:
                raise HfFmnistError(
                    f"Model {repo_id!r}: {entry.path} is {entry.size:,} bytes, more than any model's configuration "
                    f"({MAX_CONFIG_BYTES:,}); refused."
                )
        local = Path(hf_hub_download(repo_id, "config.json", token=token))
    except HfFmnistError:
        raise
    except Exception:  # not a repo id, offline, no config: transformers says so, in its own error, caught by callers
        return
    check_config_sizes(local)
    try:  # the image processor's fields too, as for a folder (a missing one falls back to the presets')
        processor = Path(hf_hub_download(repo_id, "preprocessor_config.json", token=token))
    except Exception:
        return
    check_processor_config(processor)


def check_config_sizes(path: Path) -> None:
    """The allocation gate for a model's ``config.json``, read as plain JSON before transformers sees it.

    transformers builds ``num_labels`` entries of ``id2label`` inside ``AutoConfig.from_pretrained`` (10⁹ of them
    for a 60-byte file), and allocates every layer the config describes (``hidden_sizes`` of 10⁹ ask for 128 GB
    under ``--ignore_mismatched_sizes``): each is checked against the memory budget first, one line naming the field.
    """
    import json

    from ..image_limits import check_table
    from .loader import MAX_SIDE

    if not path.is_file():
        return
    config = _read_json(path)
    if not isinstance(config, dict):
        raise HfFmnistError(f"{path}: holds a JSON {type(config).__name__}, not a model configuration.")

    if config.get("auto_map") and not _known_model_type(config.get("model_type")):
        raise _refusal(f"folder {path.parent}")

    def bad(field: str, wanted: str):
        return HfFmnistError(f"{path}: field {field!r} must be {wanted}, not {json.dumps(config[field])[:60]}.")

    labels = config.get("num_labels")
    if labels is not None and not (_whole(labels) and labels >= 1):
        raise bad("num_labels", "a whole number of at least 1")
    if "id2label" in config and not (
        isinstance(config["id2label"], dict)
        and all(k.isascii() and k.isdigit() and isinstance(v, str) for k, v in config["id2label"].items())
    ):
        raise bad("id2label", "an object of class indices (0, 1, ...) to class names")
    if "label2id" in config and not isinstance(config["label2id"], dict):
        raise bad("label2id", "an object")
    for field, count in (
        ("num_labels", labels or 0),
        *((f, len(config.get(f) or {})) for f in ("id2label", "label2id")),
    ):
        check_classes(count, f"{path}: field {field!r}")
    for field in WIDTHS:
        values = config.get(field)
        values = values if isinstance(values, list) else [values]
        if any(v is not None and not (_whole(v) and v >= 1) for v in values):
            raise bad(field, "a whole number (or a list of them) of at least 1")
        widest = max((v for v in values if v is not None), default=0)
        check_table(widest * widest, f"{path}: field {field!r} ({widest:,} wide layers)", bytes_each=4)
    for field in DEPTHS:
        values = config.get(field)
        values = values if isinstance(values, list) else [values]
        if any(v is not None and not (_whole(v) and 0 <= v <= MAX_DEPTH) for v in values) or len(values) > MAX_DEPTH:
            raise bad(field, f"a whole number (or a list of them) from 0 to {MAX_DEPTH:,}")
    size = config.get("image_size")
    sides = size if isinstance(size, list) else [size]
    if size is not None and not all(
        isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in sides
    ):
        raise bad("image_size", f"a number of pixels from 1 to {MAX_SIDE:,}")


def inference_activation_bytes(config, channels: int, size: tuple[int, int]) -> int:
    """The working memory one image costs the model described by ``config`` at inference: twice its largest
    intermediate tensor (an operation's input and output are alive together), measured by running the model on
    the meta device (no memory, no arithmetic). A 28×28 preset needs kilobytes; the CNN preset at 1024×1024 needs
    64 MB per image, and a transformer's attention grows with the square of the pixels. 0 when the model does not
    run at that size (its own forward then says why)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from transformers import AutoModelForImageClassification

    class LargestOutput(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    self.largest = max(self.largest, t.numel() * t.element_size())
            return out

    try:
        with torch.device("meta"):
            model = AutoModelForImageClassification.from_config(config, trust_remote_code=False).eval()
            pixels = torch.empty(1, channels, *size)
            with torch.no_grad(), LargestOutput() as seen:
                model(pixel_values=pixels)
    except Exception:  # a size the model refuses, an operation without a meta kernel: nothing to add
        return 0
    return 2 * seen.largest


def load_config(name_or_path: str, token: str | None, source: str):
    """The ``PretrainedConfig`` of a folder or Hub id, through every gate before any weight is read: the folder's
    files and links (:func:`check_model_folder`), the config's fields as plain JSON, no remote code, and the size
    of the model it describes (:func:`check_parameters`)."""
    from transformers import AutoConfig

    check_model_folder(name_or_path, token)
    try:
        config = AutoConfig.from_pretrained(name_or_path, token=token, trust_remote_code=False)
    except Exception as e:  # OSError, ValueError, HTTP errors: all mean "cannot use this"
        raise remote_code_refusal(e, source) or HfFmnistError(
            f"Cannot load model {source}: {type(e).__name__}: {one_line(e)}. Pass a preset ({', '.join(PRESETS)}), "
            f"a folder holding config.json, or a Hub model id."
        ) from None
    check_parameters(config, source)
    return config


def check_parameters(config, source: str) -> None:
    """The allocation gate for the model a config describes: its parameters, counted on the meta device (no memory),
    against the memory budget before any weight is allocated. Each width and depth passed on its own; together (20,000
    layers of width 256, a 450-byte config.json) they asked for 5 GB."""
    import torch
    from transformers import AutoModelForImageClassification

    from ..image_limits import check_table

    try:
        with torch.device("meta"):
            model = AutoModelForImageClassification.from_config(config, trust_remote_code=False)
    except Exception as e:  # a config that does not build a model: the same answer from_pretrained would give
        raise HfFmnistError(
            f"Cannot load model {source}: its config does not build a model ({one_line(e, 150)})."
        ) from None
    count = sum(p.numel() for p in model.parameters())
    check_table(count, f"Model {source} ({count:,} parameters)", bytes_each=4)


def check_processor_config(path: Path) -> None:
    """The shapes of a ``preprocessor_config.json``'s fields (as :func:`preset_image_processor` writes them),
    checked as plain JSON before transformers parses them: one line naming the file and the field. Their values
    (sizes from 1 to 1,024, finite mean/std) are checked afterwards, by ``Preprocess.from_processor``."""
    import json
    import math

    if not path.is_file():
        return
    config = _read_json(path)
    if not isinstance(config, dict):
        raise HfFmnistError(f"{path}: holds a JSON {type(config).__name__}, not an image processor configuration.")

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    checks = {  # the shapes transformers parses; what the values may be is Preprocess.from_processor's to say
        "size": ("a number of pixels or an object of sides", lambda v: _whole(v) or _sides(v)),
        "crop_size": ("a number of pixels or an object of sides", lambda v: _whole(v) or _sides(v)),
        # transformers multiplies every pixel by it: NaN or inf makes every pixel NaN in a stock pipeline
        "rescale_factor": ("a finite number above 0", lambda v: number(v) and math.isfinite(v) and v > 0),
        **{
            flag: ("true or false", lambda v: isinstance(v, bool))
            for flag in ("do_resize", "do_rescale", "do_normalize", "do_center_crop", "do_convert_rgb")
        },
    }
    for field, (wanted, fits) in checks.items():
        if config.get(field) is not None and not fits(config[field]):
            raise HfFmnistError(
                f"Cannot use the image processor of folder {printable(str(path.parent))}: {path.name} field "
                f"{field!r} must be {wanted}, not {json.dumps(config[field])[:60]}."
            )


def _sides(value) -> bool:
    return isinstance(value, dict) and 0 < len(value) <= 4


def _known_model_type(model_type) -> bool:
    """A model type transformers has a stock class for: its config's ``auto_map`` is then ignored (no code runs)."""
    from transformers import CONFIG_MAPPING

    return isinstance(model_type, str) and model_type in CONFIG_MAPPING


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_output_apart(output_dir, flag: str, *, model: str | None = None, dataset: str | None = None) -> None:
    """Refuse an output folder that is, contains or lies inside the local model folder or dataset folder a command
    reads: writing there replaces what is being read (``train --output_dir m --model_name_or_path m`` overwrote the
    source model's weights), or plants files in a folder later published or read as data."""
    from ..data.tensors import local_root

    out = Path(os.path.expanduser(str(output_dir))).resolve()
    model_folder = Path(os.path.expanduser(model)) if model and model not in PRESETS else None
    for what, folder in (("model", model_folder), ("dataset folder", local_root(dataset))):
        if folder is None or not folder.is_dir():  # a preset, a Hub id, the built-in dataset
            continue
        source = folder.resolve()
        relation = "is" if out == source else "lies inside" if out.is_relative_to(source) else "contains"
        if relation != "contains" or source.is_relative_to(out):
            raise HfFmnistError(
                f"{flag} {printable(str(output_dir))} {relation} the {what} it reads ({printable(str(folder))}); "
                f"choose an output folder apart from it."
            )


def _resolves_inside(link: Path, root: Path) -> bool:
    try:
        return link.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a loop of links: leads nowhere usable
        return False


def _reset_head(model) -> None:
    """Re-initialise the classification head: its classes are not ours, even when the shapes happen to match."""
    for attr in ("classifier", "head", "fc"):
        head = getattr(model, attr, None)
        if head is not None:
            for module in head.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
            return


def _describe(name_or_path: str) -> str:
    path = Path(os.path.expanduser(name_or_path))
    return f"folder {path}" if path.exists() else f"{name_or_path!r}"


_REPORT_ROW = None  # compiled on first use: core.models is imported by every command


class _BoundedLoadReport:
    """A logging filter that turns transformers' LOAD REPORT (one table row per UNEXPECTED, MISSING or MISMATCH
    key, names as the weights file spells them) into one escaped line of counts and the first few keys: a weights
    file with 1.6 million extra tensors printed 46 MB of UNEXPECTED rows."""

    def filter(self, record) -> bool:
        import re

        from ..errors import listing, printable

        global _REPORT_ROW
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        plain = re.sub(r"\x1b\[[0-9;]*m", "", message)  # transformers colours the report on a terminal
        if _REPORT_ROW is None:
            _REPORT_ROW = re.compile(r"^(.*?)\s*\|\s*(UNEXPECTED|MISSING|MISMATCH|CONVERSION)\s*\|", re.M)
        rows = _REPORT_ROW.findall(plain)
        counts = {status: sum(1 for _, s in rows if s == status) for status in dict.fromkeys(s for _, s in rows)}
        head = plain.split("\n", 1)[0].replace(" LOAD REPORT from:", "'s weights from")
        summary = ", ".join(f"{n:,} {status.lower()}" for status, n in counts.items()) or "no"
        record.msg = printable(f"{head[:200]}: {summary} key(s) ({listing([k for k, _ in rows], 3)})")
        record.args = ()
        return True


@contextlib.contextmanager
def bounded_load_report():
    """transformers' load report, while the block loads weights, as one bounded line (:class:`_BoundedLoadReport`)."""
    import logging

    logger, report = logging.getLogger("transformers.modeling_utils"), _BoundedLoadReport()
    logger.addFilter(report)
    try:
        yield
    finally:
        logger.removeFilter(report)
