"""Batches from a split that lives on the device as one uint8 tensor (the airbench ``CifarLoader`` idea).

No ``DataLoader``, no workers, no per-sample Python: each batch is an index into the resident tensor, augmented and
normalised in bulk on the device. Everything random is derived from ``(seed, epoch, optimizer step)``, so any batch
can be regenerated exactly — which is what makes resuming from a checkpoint bit-exact. The draws belong to the
*global* batch (all processes, all accumulation micro-steps of one optimizer step): every process draws the same
numbers for the whole global batch and keeps its share, so each image of the global batch gets the same order and
augmentation whether it is trained by 1 process or N, with or without accumulation.

>>> images, labels = torch.zeros(1000, 28, 28, dtype=torch.uint8), torch.zeros(1000, dtype=torch.long)
>>> pre = Preprocess(channels=3, size=(28, 28), crop=None, mean=(0.286,) * 3, std=(0.353,) * 3)
>>> loader = DeviceLoader(images, labels, batch_size=256, preprocess=pre, seed=0, train=True, pad_crop=2)
>>> x, y = next(loader.epoch(0))
>>> len(loader), tuple(x.shape), x.dtype  # 3 full batches of 256; the other 232 images sit this epoch out
(3, (256, 3, 28, 28), torch.float32)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import HfFmnistError, printable


@dataclass(frozen=True, kw_only=True)
class Preprocess:
    """The tensor version of an image processor: uint8 gray ``(B, H, W)`` → normalised float ``(B, C, h, w)``.

    Matches what the saved image processor does to a PIL image (convert to RGB, resize, rescale, normalise), so the
    pipeline sees what training saw.
    """

    channels: int  # 3 for RGB models (the gray image repeated), 1 for gray models
    size: tuple[int, int]  # (height, width) after resizing
    crop: tuple[int, int] | None  # centre crop after resizing, if the processor crops
    mean: tuple[float, ...]  # per channel, of [0, 1] values
    std: tuple[float, ...]

    @classmethod
    def from_processor(cls, processor, channels: int) -> Preprocess:
        """The processor's geometry and normalisation, checked: its values come from a model folder, maybe a stranger's.

        Raises :class:`HfFmnistError` naming the first unusable value (sizes outside 1..:data:`MAX_SIDE`, a crop
        larger than the resized image, mean/std that are not finite numbers, a std that is not positive).
        """
        _check_sizes(processor)
        _check_normalisation(processor)
        size, crop = _checked_geometry(processor)
        mean = _per_channel(getattr(processor, "image_mean", None) if processor.do_normalize else None, 0.0, channels)
        std = _per_channel(getattr(processor, "image_std", None) if processor.do_normalize else None, 1.0, channels)
        return cls(channels=channels, size=size, crop=crop, mean=mean, std=std)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[-2:]) == self.size and self.crop is None:
            # One table lookup per pixel: uint8 -> normalised float for every channel at once, already laid out
            # channels_last. Same float32 arithmetic as the general path below, so the same values to the bit.
            return F.embedding(images.long(), self._table(images.device)).permute(0, 3, 1, 2)
        x = images.unsqueeze(1).float().div_(255)
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        if self.crop is not None:
            (h, w), (ch, cw) = self.size, self.crop
            top, left = (h - ch) // 2, (w - cw) // 2
            x = x[:, :, top : top + ch, left : left + cw]
        x = x.expand(-1, self.channels, -1, -1)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)

    def _table(self, device) -> torch.Tensor:
        key = (str(device), self.mean, self.std)
        if key not in _TABLES:
            levels = torch.arange(256, device=device).float().div_(255)[:, None]
            mean = torch.tensor(self.mean, device=device)[None, :]
            std = torch.tensor(self.std, device=device)[None, :]
            _TABLES[key] = (levels - mean) / std  # (256, channels)
        return _TABLES[key]


_TABLES: dict[tuple, torch.Tensor] = {}  # by device and normalisation: tiny (256 × channels floats)


def _hw(size) -> tuple[int, int]:
    size = dict(size) if not isinstance(size, dict) else size
    size = {k: v for k, v in size.items() if v is not None}
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if "shortest_edge" in size:  # square inputs: the shortest edge is both
        return int(size["shortest_edge"]), int(size["shortest_edge"])
    raise HfFmnistError(f"Unsupported image processor size {size}; expected height/width or shortest_edge.")


# Largest side an image processor may resize to. The models here see 28x28 and stock ImageNet checkpoints 224 to 518;
# a batch is resized to this on the device, so a config saying 60000 would allocate 14 GB for one image.
MAX_SIDE = 1024


def _shown(value) -> str:
    return printable(repr(value))[:80]


def _check_sizes(processor) -> None:
    """``size`` and ``crop_size``: whole numbers of pixels from 1 to :data:`MAX_SIDE`, in the keys _hw reads."""
    for key in ("size", "crop_size"):
        value = getattr(processor, key, None)
        if value is None:
            continue
        try:
            mapping = dict(value)  # a dict, or transformers' SizeDict
        except (TypeError, ValueError):
            mapping = {"height": value}  # a bare value: unusable below unless a sane side
        sides = [mapping.get(side) for side in ("height", "width", "shortest_edge")]
        if not all(v is None or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE) for v in sides):
            given = {k: v for k, v in mapping.items() if v is not None}  # a SizeDict's repr lists every field
            raise HfFmnistError(
                f"image processor {key} {_shown(given)}: sides must be whole numbers from 1 to {MAX_SIDE}; fix "
                "preprocessor_config.json"
            )


def _check_normalisation(processor) -> None:
    """``image_mean`` finite numbers, ``image_std`` positive finite numbers (one, or one per channel)."""
    import math

    for key in ("image_mean", "image_std"):
        value = getattr(processor, key, None)
        numbers = value if isinstance(value, (list, tuple)) else [value]
        usable = all(
            isinstance(v, (int, float))
            and not isinstance(v, bool)
            and math.isfinite(v)
            and (key == "image_mean" or v > 0)
            for v in numbers
        )
        if value is not None and not usable:
            what = "finite numbers" if key == "image_mean" else "positive finite numbers"
            raise HfFmnistError(
                f"image processor {key} {_shown(value)}: expected a number or a list of {what}; fix "
                "preprocessor_config.json"
            )


def _checked_geometry(processor) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """:func:`_geometry`, refused where the crop does not fit or ``crop_pct`` enlarges the resize beyond MAX_SIDE."""
    try:
        size, crop = _geometry(processor)
    except (TypeError, ValueError, ZeroDivisionError) as e:  # e.g. a crop_pct that is text or 0
        raise HfFmnistError(
            f"image processor geometry unusable ({printable(str(e))[:120]}); fix preprocessor_config.json"
        ) from None
    if crop is not None and (crop[0] > size[0] or crop[1] > size[1]):
        raise HfFmnistError(
            f"image processor crops {crop[1]}x{crop[0]} from images resized to {size[1]}x{size[0]}; the crop must "
            f"fit inside: fix crop_size in preprocessor_config.json"
        )
    if not all(1 <= side <= MAX_SIDE for side in size):
        shown = "x".join(str(side) if side < 10**9 else f"10^{len(str(side)) - 1}" for side in (size[1], size[0]))
        raise HfFmnistError(
            f"image processor resizes to {shown}, beyond {MAX_SIDE} pixels a side; fix preprocessor_config.json"
        )
    return size, crop


def _geometry(processor) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """``(resize_to, centre_crop or None)`` of an image processor, for square inputs."""
    if not getattr(processor, "do_resize", True):
        return (28, 28), None
    height, width = _hw(processor.size)
    if getattr(processor, "do_center_crop", False) and getattr(processor, "crop_size", None):
        return (height, width), _hw(processor.crop_size)
    crop_pct = getattr(processor, "crop_pct", None)
    if crop_pct and "shortest_edge" in {k for k, v in dict(processor.size).items() if v is not None} and height < 384:
        # ConvNext-style: resize the shortest edge to size/crop_pct, then centre-crop size
        return (int(height / crop_pct), int(width / crop_pct)), (height, width)
    return (height, width), None


def _per_channel(values, default: float, channels: int) -> tuple[float, ...]:
    if values is None:
        return (default,) * channels
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise HfFmnistError(f"Image processor has {len(values)} mean/std values for a {channels}-channel model.")
    return tuple(values)


class DeviceLoader:
    """One split, resident on ``images.device``; yields ``(pixel_values, labels)`` (train) or with indices (eval).

    Training: each epoch is a seeded permutation cut into global batches of ``batch_size × world × accumulation``
    images (the remainder is dropped, as a ``DataLoader`` with ``drop_last``); micro-step ``a`` of process ``rank``
    takes positions ``a·batch_size·world + rank + world·j`` of its global batch. ``len(self)`` counts this process's
    micro-batches. Evaluation: every index exactly once across processes, padded with ``-1`` to equal batch counts so
    gathering stays collective.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        preprocess: Preprocess,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        train: bool = True,
        pad_crop: int = 0,
        hflip: bool = False,
        random_erasing: float = 0.0,
        accumulation: int = 1,
    ):
        if images.dtype != torch.uint8 or images.ndim != 3:
            raise ValueError(f"images must be uint8 (N, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images, self.labels = images, labels
        self.batch_size, self.preprocess, self.seed = batch_size, preprocess, seed
        self.rank, self.world, self.train = rank, world, train
        self.pad_crop, self.hflip, self.random_erasing = pad_crop, hflip, random_erasing
        self.accumulation = accumulation  # micro-batches per optimizer step (gradient accumulation)
        if train and len(self) == 0:
            raise HfFmnistError(
                f"{len(images)} training images make no full batch of {batch_size} per process × {world} processes; "
                f"lower --per_device_train_batch_size or use more samples."
            )

    def __len__(self) -> int:
        if self.train:
            return len(self.images) // self.global_batch * self.accumulation
        return -(-self._per_process() // self._eval_batch())

    def _per_process(self) -> int:
        return -(-len(self.images) // self.world)

    def _eval_batch(self) -> int:
        """Evaluation batches are no larger than a process's share: 10 images were padded to a batch of 1,000 (and
        decoded 640×640 images, resized in that batch, took 2.5 GB)."""
        return max(1, min(self.batch_size, self._per_process()))

    @property
    def global_batch(self) -> int:
        """Images per optimizer step over all processes and micro-steps."""
        return self.batch_size * self.world * self.accumulation

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        """Batches ``start, start + 1, ...`` of ``epoch``; identical on every call with the same arguments."""
        if self.train:
            yield from self._train_batches(epoch, start)
        else:
            yield from self._eval_batches()

    def _generator(self, *parts: int) -> torch.Generator:
        g = torch.Generator(device=self.images.device)
        g.manual_seed(hash((self.seed, *parts)) & 0x7FFF_FFFF_FFFF_FFFF)  # ints hash to themselves: stable
        return g

    def _train_batches(self, epoch: int, start: int):
        # The permutation is drawn on the CPU, so it is the same on every device type and process.
        order = torch.randperm(len(self.images), generator=self._cpu_generator(epoch)).to(self.images.device)
        share = self.rank + self.world * torch.arange(self.batch_size, device=self.images.device)
        draws: dict[str, torch.Tensor] = {}  # drawn on the first micro-step (drawn_for None differs from any step)
        drawn_for: int | None = None
        for micro in range(start, len(self)):
            step, a = divmod(micro, self.accumulation)
            if drawn_for != step:  # one set of draws per global batch, identical on every process
                draws, drawn_for = self._draw(self.global_batch, self._generator(epoch, step)), step
            positions = a * self.batch_size * self.world + share
            index = order[step * self.global_batch + positions]
            mine = {k: v[positions] for k, v in draws.items()}
            yield self.preprocess(self._apply(index, mine)), self.labels[index]

    def _cpu_generator(self, epoch: int) -> torch.Generator:
        g = torch.Generator()
        g.manual_seed(hash((self.seed, epoch, -1)) & 0x7FFF_FFFF_FFFF_FFFF)
        return g

    def _eval_batches(self):
        mine = torch.arange(self.rank, len(self.images), self.world, device=self.images.device)
        batch = self._eval_batch()
        padded = torch.full((len(self) * batch,), -1, dtype=torch.long, device=mine.device)
        padded[: len(mine)] = mine
        for step in range(len(self)):
            index = padded[step * batch : (step + 1) * batch]
            safe = index.clamp(min=0)
            yield self.preprocess(self.images[safe]), self.labels[safe], index

    def augment(self, index: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Images ``index`` flipped, translated and erased at random (draws from ``g``): uint8 ``(B, H, W)``."""
        return self._apply(index, self._draw(len(index), g))

    def _draw(self, n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Every random number the augmentation of ``n`` images needs, one row per image, in a fixed order."""
        device = self.images.device
        draws = {}
        if self.hflip:
            draws["flip"] = torch.rand(n, generator=g, device=device) < 0.5
        if self.pad_crop:
            draws["dy"] = torch.randint(0, 2 * self.pad_crop + 1, (n,), generator=g, device=device)
            draws["dx"] = torch.randint(0, 2 * self.pad_crop + 1, (n,), generator=g, device=device)
        if self.random_erasing:
            draws["erase"] = torch.rand(n, generator=g, device=device) < self.random_erasing
            draws["area"] = torch.empty(n, device=device).uniform_(0.02, 0.25, generator=g)
            draws["log_ratio"] = torch.empty(n, device=device).uniform_(-1.2, 1.2, generator=g)
            draws["top"] = torch.rand(n, generator=g, device=device)
            draws["left"] = torch.rand(n, generator=g, device=device)
        return draws

    def _apply(self, index: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """Images ``index`` augmented with ``draws`` (one row per image).

        Flip and pad-and-crop are one gather from the zero-padded split: each output pixel's flat source index is
        computed in bulk, so no intermediate image batch is materialised.
        """
        n = len(index)
        _, h, w = self.images.shape
        device = self.images.device
        flip = draws.get("flip")
        if flip is None and not self.pad_crop:
            x = self.images[index]
        else:
            p = self.pad_crop
            source = self._padded()
            hp, wp = h + 2 * p, w + 2 * p
            zeros = torch.zeros(n, dtype=torch.long, device=device)
            dy, dx = (draws["dy"], draws["dx"]) if p else (zeros, zeros)
            cols = dx[:, None] + torch.arange(w, device=device)  # (n, w) in the padded image
            if flip is not None:  # flipping a symmetrically padded image = padding the flipped image
                cols = torch.where(flip[:, None], wp - 1 - cols, cols)
            rows = dy[:, None] + torch.arange(h, device=device)  # (n, h)
            flat = (index[:, None, None] * (hp * wp)) + rows[:, :, None] * wp + cols[:, None, :]
            x = torch.take(source, flat)
        if self.random_erasing:
            x = self._erase(x, draws)
        return x

    def _padded(self) -> torch.Tensor:
        """The split with ``pad_crop`` zero pixels on every side (zero = background), made once."""
        if getattr(self, "_padded_images", None) is None:
            p = self.pad_crop
            self._padded_images = F.pad(self.images, (p, p, p, p)) if p else self.images
        return self._padded_images

    def _erase(self, x: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        """Zero one random rectangle (2-25% of the area, aspect 0.3-3.3) in a ``random_erasing`` share of images."""
        n, h, w = x.shape
        device = x.device
        chosen, log_ratio = draws["erase"], draws["log_ratio"]
        area = draws["area"] * h * w
        eh = (area * log_ratio.exp()).sqrt().round().clamp(1, h).long()
        ew = (area / log_ratio.exp()).sqrt().round().clamp(1, w).long()
        top = (draws["top"] * (h - eh + 1)).long()
        left = (draws["left"] * (w - ew + 1)).long()
        r = torch.arange(h, device=device)[None, :, None]
        c = torch.arange(w, device=device)[None, None, :]
        box = (r >= top[:, None, None]) & (r < (top + eh)[:, None, None])
        box = box & (c >= left[:, None, None]) & (c < (left + ew)[:, None, None])  # (n, h, 1) & (n, 1, w)
        return x.masked_fill(box & chosen[:, None, None], 0)
