"""TrivialAugment (Müller & Hutter 2021) on a whole batch: one random operation per image, at a
uniformly drawn strength.

The operations and their ranges are those of the paper's wide space (torchvision's
`TrivialAugmentWide`), less equalize: identity, brightness, colour (saturation), contrast,
sharpness, posterize, solarize, autocontrast, rotate, shear x/y and translate x/y. Each image's
operation and strength come from the caller's `torch.Generator` in three draws for the whole
batch, so a batch's augmentation depends on the generator's seed alone.

Batched without per-image Python: every colour operation is computed for the whole batch and
kept where it was drawn (`torch.where`), and the five geometric ones are one `affine_grid` +
`grid_sample` with a matrix per image. That costs a few elementwise passes over the batch,
little beside a ResNet's forward and backward, and needs no host sync.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from resnetkit.data.base import check_batch

__all__ = ["NUM_BINS", "OPERATIONS", "apply_operations", "trivial_augment"]

OPERATIONS = (
    "identity",
    "brightness",
    "color",
    "contrast",
    "sharpness",
    "posterize",
    "solarize",
    "autocontrast",
    "rotate",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
)
NUM_BINS = 31  # strengths 0, 1/30, ..., 1, as the paper's wide space
MAX_FACTOR = 0.99  # brightness, colour, contrast, sharpness: factor 1 ± 0.99; shear ± 0.99
MAX_DEGREES = 135.0
MAX_TRANSLATE = 32 / 224  # of the image side: the paper's 32 pixels at 224
_OP = {name: index for index, name in enumerate(OPERATIONS)}


def trivial_augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of an (N, C, H, W) batch with one operation of `OPERATIONS`, drawn uniformly,
    at a strength drawn uniformly from `NUM_BINS` levels (with a random sign where the operation
    has a direction). uint8 batches stay uint8; float batches are taken as images in [0, 1]
    (before normalisation) and stay float."""
    check_batch(batch, generator)
    n, device = batch.shape[0], batch.device
    ops = torch.randint(len(OPERATIONS), (n,), generator=generator, device=device)
    level = torch.randint(NUM_BINS, (n,), generator=generator, device=device) / (NUM_BINS - 1)
    sign = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -1.0, 1.0)
    return apply_operations(batch, ops, sign * level)


def apply_operations(
    batch: torch.Tensor, ops: torch.Tensor, strengths: torch.Tensor
) -> torch.Tensor:
    """Image i of the batch with operation `OPERATIONS[ops[i]]` at signed strength
    `strengths[i]` in [-1, 1] (the sign is the direction; operations without one use its
    size). uint8 stays uint8, float is taken as [0, 1] and stays float."""
    if batch.dim() != 4 or ops.shape != strengths.shape or ops.shape != batch.shape[:1]:
        raise ValueError(
            f"expected an (N, C, H, W) batch with N operations and strengths, got "
            f"{tuple(batch.shape)}, {tuple(ops.shape)}, {tuple(strengths.shape)}"
        )
    strengths = strengths.to(device=batch.device, dtype=torch.float32)
    ops = ops.to(batch.device)
    pixels = batch.float() if batch.dtype == torch.uint8 else batch.float() * 255
    pixels = _colour(pixels, ops, strengths.abs(), strengths)
    pixels = _geometric(pixels, ops, strengths)
    if batch.dtype == torch.uint8:
        out = pixels.round_().clamp_(0, 255).to(torch.uint8)
    else:
        out = (pixels / 255).clamp_(0, 1).to(batch.dtype)
    return torch.where(_chosen(ops, "identity"), batch, out)  # exactly as they were


def _chosen(op: torch.Tensor, name: str) -> torch.Tensor:
    return (op == _OP[name]).view(-1, 1, 1, 1)


def _colour(
    x: torch.Tensor, op: torch.Tensor, level: torch.Tensor, signed: torch.Tensor
) -> torch.Tensor:
    """The colour operations on pixels in [0, 255], each kept only where it was drawn."""
    factor = (1.0 + MAX_FACTOR * signed).view(-1, 1, 1, 1)
    gray = _grayscale(x)
    blends = {
        "brightness": torch.zeros_like(x[:1]),  # toward black
        "color": gray,  # toward the image's own gray
        "contrast": gray.mean((1, 2, 3), keepdim=True),  # toward its mean gray
        "sharpness": _smoothed(x),  # away from a blurred copy
    }
    out = x
    for name, degenerate in blends.items():
        blended = (degenerate + factor * (x - degenerate)).clamp(0, 255)
        out = torch.where(_chosen(op, name), blended, out)
    # Posterize keeps 8 to 2 bits; solarize inverts pixels above a threshold from 255 down to 0.
    step = torch.exp2(torch.round(6 * level)).view(-1, 1, 1, 1)
    out = torch.where(_chosen(op, "posterize"), torch.floor(x / step) * step, out)
    threshold = (255 * (1 - level)).view(-1, 1, 1, 1)
    out = torch.where(_chosen(op, "solarize") & (x >= threshold), 255 - x, out)
    return torch.where(_chosen(op, "autocontrast"), _autocontrast(x), out)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luma (ITU-R 601, as PIL and torchvision); a one-channel image is its own."""
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True)
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def _smoothed(x: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter (a 3x3 kernel, 5 at the centre, over 13), borders left as they are."""
    channels = x.shape[1]
    kernel = torch.ones(3, 3, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13).expand(channels, 1, 3, 3)
    inner = F.conv2d(x, kernel, groups=channels)
    return F.pad(inner, (1, 1, 1, 1)) + x * _border(x)


def _border(x: torch.Tensor) -> torch.Tensor:
    mask = torch.ones(x.shape[-2:], device=x.device)
    mask[1:-1, 1:-1] = 0
    return mask


def _autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Each channel stretched so its darkest pixel is 0 and its brightest 255 (flat ones kept)."""
    low = x.amin((2, 3), keepdim=True)
    high = x.amax((2, 3), keepdim=True)
    flat = high <= low
    scale = torch.where(flat, 1.0, 255 / (high - low).clamp_min(1e-6))
    return ((x - torch.where(flat, 0.0, low)) * scale).clamp(0, 255)


def _geometric(x: torch.Tensor, op: torch.Tensor, signed: torch.Tensor) -> torch.Tensor:
    """Rotate, shear and translate in one resampling, filling with black; the images drawn
    for another operation are kept exactly as they are."""
    n, _, height, width = x.shape
    zero = torch.zeros_like(signed)
    angle = torch.where(op == _OP["rotate"], signed * math.radians(MAX_DEGREES), zero)
    shear_x = torch.where(op == _OP["shear_x"], signed * MAX_FACTOR, zero)
    shear_y = torch.where(op == _OP["shear_y"], signed * MAX_FACTOR, zero)
    move_x = torch.where(op == _OP["translate_x"], signed * MAX_TRANSLATE * width, zero)
    move_y = torch.where(op == _OP["translate_y"], signed * MAX_TRANSLATE * height, zero)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Where each output pixel reads from, about the image centre in pixels: rotation times shear
    # (one of the two is the identity for each image), then the shift.
    a = torch.stack([cos - sin * shear_y, cos * shear_x - sin], 1)
    b = torch.stack([sin + cos * shear_y, sin * shear_x + cos], 1)
    # In affine_grid's coordinates, [-1, 1] across each side: rescale by the sides.
    half = torch.tensor([width / 2, height / 2], device=x.device)
    theta = torch.stack(
        [
            torch.cat([a * half / half[0], (move_x / half[0]).unsqueeze(1)], 1),
            torch.cat([b * half / half[1], (move_y / half[1]).unsqueeze(1)], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, [n, x.shape[1], height, width], align_corners=False)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    moved = (op >= _OP["rotate"]).view(-1, 1, 1, 1)
    return torch.where(moved, warped, x)
