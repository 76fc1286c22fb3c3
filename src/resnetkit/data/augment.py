"""Batched augmentation and normalization as tensor ops on the batch's own device.

No per-sample Python: each transform draws all its random numbers at once from the
caller's torch.Generator, so a run is reproducible from the generator's seed alone.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from resnetkit.core.options import ConfigError, check_fields, option
from resnetkit.data.base import check_batch
from resnetkit.data.trivial_augment import trivial_augment

__all__ = [
    "MAX_IMAGE_SIZE",
    "AugmentConfig",
    "Normalize",
    "alternating_flips",
    "augment_batch",
    "cutout",
    "normalize",
    "random_crop",
    "random_erasing",
    "random_flip",
    "random_resized_crop",
    "resize_batch",
    "resized_crops",
    "rrc_boxes",
    "train_resolution",
    "trivial_augment",
]

_PADDING_MODES = ("reflect", "zeros")
MAX_IMAGE_SIZE = 4096  # larger sides only exhaust memory; no ResNet recipe uses them


@dataclass(frozen=True)
class AugmentConfig:
    """Which batch augmentations to apply (the `augment` section of a training config)."""

    crop_padding: int = option(
        2, "random crop: pad each side by this many pixels, then crop back (0 = off)", low=0
    )
    flip: bool = option(True, "random horizontal flip")
    alternate_flip: bool = option(
        False,
        "with --flip: mirror a random half of the images in even epochs and the other half in "
        "odd ones, so every two epochs show each image both ways (airbench, Jordan 2024)",
    )
    cutout: int = option(
        0, "zero one square of this side per image (DeVries & Taylor 2017; 0 = off)", low=0
    )
    padding_mode: str = option(
        "reflect", "how the random crop's padding is filled", choices=_PADDING_MODES
    )
    random_resized_crop: bool = option(
        False,
        "random-resized crop (Szegedy et al. 2015, ImageNet style): a random share of each "
        "image's area with a random aspect ratio, resized to --rrc-size; replaces the padded "
        "random crop",
    )
    rrc_scale: tuple[float, ...] = option(
        (0.08, 1.0),
        "random-resized crop: smallest and largest share of the image area",
        metavar="X",
        default_text="0.08 1.0",
    )
    rrc_ratio: tuple[float, ...] = option(
        (3 / 4, 4 / 3),
        "random-resized crop: smallest and largest aspect ratio (width/height), drawn log-uniform",
        metavar="X",
        default_text="0.75 1.333",
    )
    rrc_size: int = option(
        0,
        "random-resized crop: output side (0 = the images' own, the shorter side)",
        low=0,
        high=MAX_IMAGE_SIZE,
    )
    low_res_size: int = option(
        0,
        "lower-resolution epochs (progressive resizing): train the first --low-res-epochs "
        "epochs on images downscaled to this side (0 = off)",
        low=0,
        high=MAX_IMAGE_SIZE,
    )
    low_res_epochs: int = option(
        0, "lower-resolution epochs: how many epochs, from the first, use --low-res-size", low=0
    )
    trivial_augment: bool = option(
        False,
        "TrivialAugment (Müller & Hutter 2021): one random operation per image (brightness, "
        "colour, contrast, sharpness, posterize, solarize, autocontrast, rotate, shear, "
        "translate) at a random strength; the stronger augmentation of ImageNet-style training",
    )
    random_erase: float = option(
        0.0,
        "random erasing (Zhong et al. 2017; timm's reprob): with this probability, fill a "
        "random rectangle of each image (2% to 40% of its area) with random pixels "
        "(0 = off; 0.25 is common)",
        low=0.0,
        high=1.0,
    )
    mixup_alpha: float = option(
        0.0,
        "mixup (Zhang et al. 2018): blend pairs of images and their labels with a weight drawn "
        "from Beta(alpha, alpha) (0 = off; 0.2 is common)",
        low=0.0,
    )
    cutmix_alpha: float = option(
        0.0,
        "cutmix (Yun et al. 2019): paste a box of another image, labels mixed by area, the "
        "area share drawn from Beta(alpha, alpha) (0 = off; 1.0 is common)",
        low=0.0,
    )
    mix_prob: float = option(
        1.0, "with mixup or cutmix on: share of batches that are mixed", low=0.0, high=1.0
    )
    mix_switch_prob: float = option(
        0.5,
        "with mixup and cutmix both on: share of mixed batches that use cutmix",
        low=0.0,
        high=1.0,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.alternate_flip and not self.flip:
            raise ConfigError(
                "invalid config field 'alternate_flip': true with flip false; alternating "
                "flips need --flip"
            )
        _check_range("rrc_scale", self.rrc_scale, high=1.0)
        _check_range("rrc_ratio", self.rrc_ratio)
        if (self.low_res_size > 0) != (self.low_res_epochs > 0):
            given, missing = (
                ("low_res_size", "low_res_epochs")
                if self.low_res_size
                else ("low_res_epochs", "low_res_size")
            )
            raise ConfigError(
                f"invalid config field '{missing}': got 0 with {given} "
                f"{getattr(self, given)}; lower-resolution epochs need both (or neither)"
            )

    @property
    def mixing(self) -> bool:
        """Whether mixup or cutmix is on."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0


def _check_range(name: str, value: tuple[float, ...], high: float = math.inf) -> None:
    """A (low, high) pair of positive numbers with low <= high <= `high`."""
    if len(value) != 2 or not 0 < value[0] <= value[1] <= high:
        upper = f" <= {high:g}" if high != math.inf else ""
        raise ConfigError(
            f"invalid config field '{name}': got {' '.join(f'{v:g}' for v in value)}; "
            f"expected two numbers low high with 0 < low <= high{upper}"
        )


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map indices in [-size+1, 2*size-2] into [0, size) by mirroring at the edges."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def random_crop(
    batch: torch.Tensor, padding: int, generator: torch.Generator, padding_mode: str = "reflect"
) -> torch.Tensor:
    """Pad by `padding` and take a random same-size window per sample, in one gather."""
    check_batch(batch, generator)
    if padding_mode not in _PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
    if padding == 0:
        return batch
    n, c, h, w = batch.shape
    if padding_mode == "reflect" and padding >= min(h, w):
        raise ValueError(f"reflect padding {padding} must be smaller than the image ({h}x{w})")
    device = batch.device
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=device)
    rows = offsets[0, :, None] + torch.arange(h, device=device)  # (N, H), in padded coordinates
    cols = offsets[1, :, None] + torch.arange(w, device=device)  # (N, W)
    if padding_mode == "reflect":
        # Reflection folded into the indices: no padded copy, and it works for every dtype.
        source = batch
        rows, cols = _reflect(rows - padding, h), _reflect(cols - padding, w)
    else:
        source = F.pad(batch, (padding, padding, padding, padding))
    samples = torch.arange(n, device=device).view(n, 1, 1, 1)
    channels = torch.arange(c, device=device).view(1, c, 1, 1)
    return source[samples, channels, rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each sample left-right with probability 1/2."""
    check_batch(batch, generator)
    flip = torch.rand(batch.shape[0], generator=generator, device=batch.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), batch.flip(3), batch)


def alternating_flips(index: torch.Tensor, epoch: int, seed: int, num_samples: int) -> torch.Tensor:
    """Which of the images `index` (positions in a dataset of `num_samples`) to mirror in
    `epoch`: a fixed random half of the dataset, drawn from `seed`, in even epochs and the
    other half in odd ones.

    Against an independent coin per epoch, no image goes several epochs seen one way only: the
    flips add views without repeating them, which pays most when there are few epochs.
    """
    halves = _flip_halves(seed, num_samples, index.device)
    return halves[index] ^ bool(epoch % 2)


@functools.lru_cache(maxsize=4)
def _flip_halves(seed: int, num_samples: int, device: torch.device) -> torch.Tensor:
    """One fixed random bit per dataset position, drawn once per loader (not per batch) on the
    CPU, so every device gets the same bits; kept on the index's device to avoid a copy."""
    generator = torch.Generator().manual_seed(seed)
    halves = torch.randint(0, 2, (num_samples,), generator=generator, dtype=torch.bool)
    return halves.to(device)


def cutout(batch: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one `size` x `size` square per sample, placed uniformly and fully inside the image."""
    check_batch(batch, generator)
    if size == 0:
        return batch
    n, _, h, w = batch.shape
    if size > min(h, w):
        raise ValueError(f"cutout size {size} is larger than the image ({h}x{w})")
    device = batch.device
    top = torch.randint(0, h - size + 1, (n, 1), generator=generator, device=device)
    left = torch.randint(0, w - size + 1, (n, 1), generator=generator, device=device)
    ys = torch.arange(h, device=device)
    xs = torch.arange(w, device=device)
    in_rows = (ys >= top) & (ys < top + size)  # (N, H)
    in_cols = (xs >= left) & (xs < left + size)  # (N, W)
    mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]
    return batch.masked_fill(mask, 0)


def rrc_boxes(
    batch: torch.Tensor,
    scale: Sequence[float],
    ratio: Sequence[float],
    generator: torch.Generator,
    attempts: int = 10,
) -> torch.Tensor:
    """One random-resized-crop box per sample as (top, left, height, width) integer pixels.

    As torchvision's RandomResizedCrop: up to `attempts` draws of an area share uniform in
    `scale` and an aspect ratio log-uniform in `ratio`; the first box that fits is used, and a
    sample none fits gets the central crop with the ratio clamped into `ratio`. All samples'
    draws are made at once, so a batch costs the same few kernels as one image.
    """
    check_batch(batch, generator)
    n, _, height, width = batch.shape
    h, w, fits = _box_sides(batch, scale, ratio, generator, attempts)
    fallback_h, fallback_w = _central_box(height, width, ratio)
    h = torch.where(fits, h, float(fallback_h))
    w = torch.where(fits, w, float(fallback_w))
    offsets = torch.rand(2, n, generator=generator, device=batch.device, dtype=torch.float64)
    top = (offsets[0] * (height - h + 1)).floor()
    left = (offsets[1] * (width - w + 1)).floor()
    return torch.stack([top, left, h, w], 1).long()


def _box_sides(
    batch: torch.Tensor,
    scale: Sequence[float],
    ratio: Sequence[float],
    generator: torch.Generator,
    attempts: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample, the height and width of the first of `attempts` boxes (an area share uniform
    in `scale`, an aspect ratio log-uniform in `ratio`) that fits the image, and whether any
    did (float64; where none fits, the sides are the first draw's)."""
    n, _, height, width = batch.shape
    u = torch.rand(2, n, attempts, generator=generator, device=batch.device, dtype=torch.float64)
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[0])
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_low + (log_high - log_low) * u[1])
    w = torch.sqrt(area * aspect).round()
    h = torch.sqrt(area / aspect).round()
    fits = (w >= 1) & (h >= 1) & (w <= width) & (h <= height)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)  # index of the first fitting draw
    return h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1), fits.any(1)


def _central_box(height: int, width: int, ratio: Sequence[float]) -> tuple[int, int]:
    """(height, width) of the whole image, narrowed to the nearest allowed aspect ratio."""
    if width / height < ratio[0]:
        return round(width / ratio[0]), width
    if width / height > ratio[1]:
        return height, round(height * ratio[1])
    return height, width


def resized_crops(batch: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each sample's box (top, left, height, width) resized to `size` x `size`, bilinear.

    One `grid_sample` for the whole batch. Sampling points are clamped to the box's pixel
    centres, so each output equals F.interpolate(crop, size, mode="bilinear") of its own crop
    (no antialiasing: the crops are mostly enlarged) and never reads a pixel outside the box.
    """
    n, _, height, width = batch.shape
    steps = (torch.arange(size, device=batch.device, dtype=torch.float32) + 0.5) / size
    top, left, h, w = boxes.to(torch.float32).unbind(1)
    # Pixel-centre coordinates of the source, then normalised to [-1, 1] (align_corners=False).
    ys = top[:, None] + (steps * h[:, None] - 0.5).clamp(min=0).minimum(h[:, None] - 1)
    xs = left[:, None] + (steps * w[:, None] - 0.5).clamp(min=0).minimum(w[:, None] - 1)
    ys, xs = (2 * ys + 1) / height - 1, (2 * xs + 1) / width - 1
    grid = torch.stack(
        [xs[:, None, :].expand(n, size, size), ys[:, :, None].expand(n, size, size)], dim=3
    )
    source = batch if batch.is_floating_point() else batch.float()
    out = F.grid_sample(source, grid.to(source.dtype), mode="bilinear", align_corners=False)
    return out if batch.is_floating_point() else out.round_().clamp_(0, 255).to(batch.dtype)


def random_resized_crop(
    batch: torch.Tensor,
    size: int,
    generator: torch.Generator,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """ImageNet-style random-resized crop of every sample to `size` x `size` (0 = own size)."""
    boxes = rrc_boxes(batch, scale, ratio, generator)
    return resized_crops(batch, boxes, size or min(batch.shape[-2:]))


def random_erasing(
    batch: torch.Tensor,
    probability: float,
    generator: torch.Generator,
    scale: Sequence[float] = (0.02, 0.4),
    ratio: Sequence[float] = (0.3, 1 / 0.3),
) -> torch.Tensor:
    """Random erasing (Zhong et al. 2017): with `probability`, one rectangle of each sample, an
    area share uniform in `scale` and an aspect ratio log-uniform in `ratio` (the paper's
    ranges), filled with random pixels (uniform over 0..255 for uint8, [0, 1) for float),
    placed uniformly inside the image; a sample none of 10 draws fits is left as it is."""
    check_batch(batch, generator)
    if probability == 0:
        return batch
    n, _, height, width = batch.shape
    device = batch.device
    h, w, fits = _box_sides(batch, scale, ratio, generator, attempts=10)
    u = torch.rand(3, n, generator=generator, device=device, dtype=torch.float64)
    erase = fits & (u[0] < probability)
    top = (u[1] * (height - h + 1)).floor().view(n, 1)
    left = (u[2] * (width - w + 1)).floor().view(n, 1)
    ys = torch.arange(height, device=device)
    xs = torch.arange(width, device=device)
    in_rows = (ys >= top) & (ys < top + h.view(n, 1)) & erase.view(n, 1)  # (N, H)
    in_cols = (xs >= left) & (xs < left + w.view(n, 1))  # (N, W)
    mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]
    if batch.is_floating_point():
        noise = torch.rand(batch.shape, generator=generator, device=device, dtype=batch.dtype)
    else:
        noise = torch.randint(
            0, 256, batch.shape, generator=generator, device=device, dtype=batch.dtype
        )
    return torch.where(mask, noise, batch)


def train_resolution(epoch: int, full_size: int, low_res_size: int, low_res_epochs: int) -> int:
    """The image side epoch `epoch` (0-based) trains at: `low_res_size` for the first
    `low_res_epochs` epochs, then `full_size` (progressive resizing, as fast.ai's DAWNBench
    ImageNet runs: the early epochs are cheaper and barely hurt the final accuracy)."""
    if low_res_size == 0 or epoch >= low_res_epochs:
        return full_size
    if low_res_size >= full_size:
        raise ConfigError(
            f"invalid config field 'low_res_size': got {low_res_size}; expected a side smaller "
            f"than the training images' ({full_size})"
        )
    return low_res_size


def resize_batch(batch: torch.Tensor, size: int) -> torch.Tensor:
    """The batch with its shorter side resized to `size` (aspect kept), bilinear with
    antialiasing so a downscaled image does not alias; uint8 stays uint8."""
    height, width = batch.shape[-2:]
    if min(height, width) == size:
        return batch
    factor = size / min(height, width)
    shape = (max(1, round(height * factor)), max(1, round(width * factor)))
    source = batch if batch.is_floating_point() else batch.float()
    out = F.interpolate(source, size=shape, mode="bilinear", align_corners=False, antialias=True)
    return out if batch.is_floating_point() else out.round_().clamp_(0, 255).to(batch.dtype)


def augment_batch(
    batch: torch.Tensor,
    cfg: AugmentConfig,
    generator: torch.Generator,
    flips: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply random crop (padded, or random-resized), flip, TrivialAugment, cutout and random
    erasing (as configured, in that order) to a uint8 or float batch.

    `flips` (one bool per sample, from `alternating_flips`) replaces the random flip's coins.
    """
    if cfg.random_resized_crop:
        batch = random_resized_crop(batch, cfg.rrc_size, generator, cfg.rrc_scale, cfg.rrc_ratio)
    else:
        batch = random_crop(batch, cfg.crop_padding, generator, cfg.padding_mode)
    if cfg.flip and flips is not None:
        flips = flips.to(batch.device).view(-1, 1, 1, 1)
        batch = torch.where(flips, batch.flip(3), batch)
    elif cfg.flip:
        batch = random_flip(batch, generator)
    if cfg.trivial_augment:
        batch = trivial_augment(batch, generator)
    batch = cutout(batch, cfg.cutout, generator)
    return random_erasing(batch, cfg.random_erase, generator)


class Normalize:
    """Maps uint8 batches to (x/255 - mean)/std with one fused multiply-add."""

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
    ) -> None:
        if len(mean) != len(std):
            raise ValueError(f"mean and std differ in length: {len(mean)} vs {len(std)}")
        mean_t = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
        # (x/255 - mean)/std == x * scale + shift, folded once here instead of per batch.
        self.scale = (1.0 / (255.0 * std_t)).float()
        self.shift = (-mean_t / std_t).float()
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Normalize a uint8 (N, C, H, W) batch on its own device."""
        if batch.dtype != torch.uint8:
            raise ValueError(f"normalize expects a uint8 batch, got {batch.dtype}")
        if batch.dim() != 4 or batch.shape[1] != self.scale.shape[1]:
            raise ValueError(
                f"expected an (N, {self.scale.shape[1]}, H, W) batch, got {tuple(batch.shape)}"
            )
        if batch.device not in self._on_device:
            self._on_device[batch.device] = (
                self.scale.to(batch.device),
                self.shift.to(batch.device),
            )
        scale, shift = self._on_device[batch.device]
        x = batch.to(dtype=torch.float32, memory_format=self.memory_format)
        out = torch.addcmul(shift, x, scale)
        # Compute in float32 and round once, so half/bfloat16 outputs lose no extra precision.
        return out if self.dtype == torch.float32 else out.to(self.dtype)


def normalize(
    batch_uint8: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> torch.Tensor:
    """Return (batch/255 - mean)/std as a float batch; see Normalize to reuse the constants."""
    return Normalize(mean, std, dtype, channels_last)(batch_uint8)
