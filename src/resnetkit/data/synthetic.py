"""A tiny, learnable synthetic image dataset for smoke tests and quick experiments."""

from __future__ import annotations

import math

import torch

from resnetkit.data.base import DataError, DatasetInfo, InMemoryDataset

__all__ = ["make_synthetic"]

_NOISE_STD = 0.08  # per-pixel Gaussian noise, in 0..1 units


def _prototypes(
    num_classes: int, image_size: tuple[int, int], in_chans: int, pattern_seed: int
) -> torch.Tensor:
    """One clean (C, H, W) image per class in 0..1: a distinct colour plus oriented stripes."""
    generator = torch.Generator().manual_seed(pattern_seed)
    height, width = image_size
    # The first channel's level is evenly spaced, so no two classes share a colour.
    levels = torch.linspace(0.25, 0.75, num_classes)
    colours = 0.25 + 0.5 * torch.rand(num_classes, in_chans, generator=generator)
    colours[:, 0] = levels[torch.randperm(num_classes, generator=generator)]
    y = torch.linspace(0, 1, height).view(height, 1)
    x = torch.linspace(0, 1, width).view(1, width)
    protos = []
    for k in range(num_classes):
        angle = math.pi * k / num_classes
        frequency = 2 + k % 3
        phase = 2 * math.pi * float(torch.rand(1, generator=generator))
        stripes = torch.sin(
            2 * math.pi * frequency * (x * math.cos(angle) + y * math.sin(angle)) + phase
        )
        protos.append(colours[k].view(in_chans, 1, 1) + 0.2 * stripes)
    return torch.stack(protos).clamp(0, 1)


def make_synthetic(
    num_samples: int,
    num_classes: int = 10,
    image_size: tuple[int, int] = (32, 32),
    in_chans: int = 3,
    seed: int = 0,
    pattern_seed: int = 0,
) -> InMemoryDataset:
    """Make a balanced dataset of noisy class prototypes; deterministic under `seed`.

    The class patterns depend only on `pattern_seed` and the shape, so train and test sets
    made with different `seed`s share the same classes.
    """
    if num_samples < 1 or num_classes < 2:
        raise DataError(
            f"synthetic data needs num_samples >= 1 and num_classes >= 2, "
            f"got {num_samples} and {num_classes}"
        )
    image_size = (int(image_size[0]), int(image_size[1]))
    protos = _prototypes(num_classes, image_size, in_chans, pattern_seed)
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.arange(num_samples) % num_classes)[
        torch.randperm(num_samples, generator=generator)
    ]
    noise = _NOISE_STD * torch.randn(num_samples, in_chans, *image_size, generator=generator)
    images = ((protos[labels] + noise) * 255).round_().clamp_(0, 255).to(torch.uint8)
    # Statistics of the distribution rather than of this sample, so every split agrees.
    mean = protos.mean(dim=(0, 2, 3))
    std = (protos.var(dim=(0, 2, 3), unbiased=False) + _NOISE_STD**2).sqrt()
    info = DatasetInfo(
        name="synthetic",
        class_names=tuple(f"class_{k}" for k in range(num_classes)),
        in_chans=in_chans,
        image_size=image_size,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
    )
    return InMemoryDataset(images, labels, info)
