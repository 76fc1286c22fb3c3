"""Mixup (Zhang et al. 2018) and cutmix (Yun et al. 2019) on a batch, with soft targets.

As timm's `Mixup` in its "batch" mode: one mixing weight per batch, each sample mixed with its
mirror in the batch (`batch.flip(0)`, already a random partner since batches are shuffled),
label smoothing folded into the targets. Every random choice comes from the caller's
`torch.Generator`, so a batch's mixing depends on (seed, epoch, batch, rank) like its other
augmentation, and a resumed run mixes exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
import random

import torch

from resnetkit.data.augment import AugmentConfig

__all__ = [
    "Box",
    "box_lambda",
    "cutmix",
    "cutmix_box",
    "mix_batch",
    "mix_targets",
    "mixup",
    "smooth_one_hot",
]

Box = tuple[int, int, int, int]  # top, left, bottom, right (bottom and right exclusive)


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """(N, num_classes) float32 targets: 1 - smoothing + smoothing/K on the label, smoothing/K
    elsewhere (Szegedy et al. 2016), so each row sums to 1 as F.cross_entropy's smoothing does."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    off = smoothing / num_classes
    targets = torch.full(
        (labels.shape[0], num_classes), off, dtype=torch.float32, device=labels.device
    )
    return targets.scatter_(1, labels.long().view(-1, 1), 1.0 - smoothing + off)


def mix_targets(
    labels: torch.Tensor, num_classes: int, lam: float, smoothing: float = 0.0
) -> torch.Tensor:
    """lam x each label's smoothed one-hot + (1 - lam) x its partner's (labels.flip(0))."""
    targets = smooth_one_hot(labels, num_classes, smoothing)
    return targets.mul(lam).add_(targets.flip(0), alpha=1.0 - lam)


def mixup(images: torch.Tensor, lam: float) -> torch.Tensor:
    """lam x each image + (1 - lam) x its partner: a convex blend of whole images."""
    if not images.is_floating_point():
        raise ValueError(f"mixup blends normalised float images, got {images.dtype}")
    return torch.lerp(images.flip(0), images, lam)


def cutmix_box(height: int, width: int, lam: float, rng: random.Random) -> Box:
    """A box of about (1 - lam) of the image area, centred uniformly and clipped to the image
    (Yun et al. 2019, Algorithm A1); `box_lambda` gives the share it actually leaves."""
    side = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * side), int(width * side)
    cy, cx = rng.randrange(height), rng.randrange(width)
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, left, bottom, right


def box_lambda(box: Box, height: int, width: int) -> float:
    """The share of each image a cutmix box leaves in place: the weight of its own label."""
    top, left, bottom, right = box
    return 1.0 - (bottom - top) * (right - left) / (height * width)


def cutmix(images: torch.Tensor, box: Box) -> torch.Tensor:
    """Each image with `box` replaced by the same box of its partner (images.flip(0))."""
    top, left, bottom, right = box
    out = images.clone()
    out[:, :, top:bottom, left:right] = images.flip(0)[:, :, top:bottom, left:right]
    return out


def _scalar_rng(generator: torch.Generator) -> random.Random:
    # The few scalars a batch needs (mix or not, which, the weight, the box) come from a Python
    # RNG seeded by `generator`: random.betavariate samples Beta exactly, which torch cannot do
    # from a given generator. On CUDA the seed is one small read from the device.
    seed = torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)
    return random.Random(int(seed.item()))


def mix_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    cfg: AugmentConfig,
    generator: torch.Generator,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and soft targets (N, num_classes) for one batch, mixed as `cfg` says.

    With probability `mix_prob` the batch is mixed: by cutmix (with probability
    `mix_switch_prob` when both are on) or mixup, the weight drawn from Beta(alpha, alpha);
    otherwise the targets are the smoothed one-hots. Train on them with a soft-target
    cross-entropy (`resnetkit.training.loss.soft_target_cross_entropy`).
    """
    rng = _scalar_rng(generator)
    if not cfg.mixing or rng.random() >= cfg.mix_prob:
        return images, smooth_one_hot(labels, num_classes, label_smoothing)
    use_cutmix = cfg.cutmix_alpha > 0 and (
        cfg.mixup_alpha == 0 or rng.random() < cfg.mix_switch_prob
    )
    alpha = cfg.cutmix_alpha if use_cutmix else cfg.mixup_alpha
    lam = rng.betavariate(alpha, alpha)
    if use_cutmix:
        height, width = images.shape[-2:]
        box = cutmix_box(height, width, lam, rng)
        images, lam = cutmix(images, box), box_lambda(box, height, width)
    else:
        images = mixup(images, lam)
    return images, mix_targets(labels, num_classes, lam, label_smoothing)
