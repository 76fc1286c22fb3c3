"""Batched augmentation and normalization as tensor ops on the batch's own device.

No per-sample Python: each transform draws all its random numbers at once from the
caller's torch.Generator, so a run is reproducible from the generator's seed alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from resnetkit.core.options import check_fields, option

__all__ = [
    "AugmentConfig",
    "Normalize",
    "augment_batch",
    "cutout",
    "normalize",
    "random_crop",
    "random_flip",
]

_PADDING_MODES = ("reflect", "zeros")


@dataclass(frozen=True)
class AugmentConfig:
    """Which batch augmentations to apply (the `augment` section of a training config)."""

    crop_padding: int = option(
        2, "random crop: pad each side by this many pixels, then crop back (0 = off)", low=0
    )
    flip: bool = option(True, "random horizontal flip")
    cutout: int = option(
        0, "zero one square of this side per image (DeVries & Taylor 2017; 0 = off)", low=0
    )
    padding_mode: str = option(
        "reflect", "how the random crop's padding is filled", choices=_PADDING_MODES
    )

    def __post_init__(self) -> None:
        check_fields(self)


def _check(batch: torch.Tensor, generator: torch.Generator) -> None:
    if batch.dim() != 4:
        raise ValueError(f"expected an (N, C, H, W) batch, got shape {tuple(batch.shape)}")
    if generator.device.type != batch.device.type:
        raise ValueError(
            f"the generator is on {generator.device} but the batch is on {batch.device}; "
            "create it with torch.Generator(device=batch.device)"
        )


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map indices in [-size+1, 2*size-2] into [0, size) by mirroring at the edges."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def random_crop(
    batch: torch.Tensor, padding: int, generator: torch.Generator, padding_mode: str = "reflect"
) -> torch.Tensor:
    """Pad by `padding` and take a random same-size window per sample, in one gather."""
    _check(batch, generator)
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
    _check(batch, generator)
    flip = torch.rand(batch.shape[0], generator=generator, device=batch.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), batch.flip(3), batch)


def cutout(batch: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one `size` x `size` square per sample, placed uniformly and fully inside the image."""
    _check(batch, generator)
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


def augment_batch(
    batch: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """Apply random crop, flip and cutout (as configured) to a uint8 or float batch."""
    batch = random_crop(batch, cfg.crop_padding, generator, cfg.padding_mode)
    if cfg.flip:
        batch = random_flip(batch, generator)
    return cutout(batch, cfg.cutout, generator)


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
