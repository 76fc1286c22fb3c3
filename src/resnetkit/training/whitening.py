"""The first convolution initialised from the data: patch whitening.

The fast CIFAR-10 trainers (Page 2018, "How to train your ResNet", part 8; Jordan 2024,
airbench) start the first layer as a whitening filter bank: the eigenvectors of the covariance
of the input's k x k patches, each scaled by 1/sqrt(its eigenvalue), so the first layer's
outputs are decorrelated with unit variance from the first step instead of having to learn it.
Every eigenvector is used twice, with both signs, so the ReLU that follows the stem keeps the
information of both halves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["first_conv", "patch_eigenbasis", "whiten_first_conv", "whitening_filters"]


def patch_eigenbasis(
    images: torch.Tensor, kernel_size: int, max_patches: int = 200_000, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending) and eigenvectors (as rows) of the covariance of every
    `kernel_size` x `kernel_size` patch of `images` (N, C, H, W), flattened as a convolution
    weight is (C, k, k); at most `max_patches` patches, drawn with a seeded generator."""
    if images.dim() != 4:
        raise ValueError(f"expected an (N, C, H, W) batch, got shape {tuple(images.shape)}")
    patches = F.unfold(images.double(), kernel_size).transpose(1, 2)
    patches = patches.reshape(-1, patches.shape[-1])
    if len(patches) > max_patches:
        generator = torch.Generator().manual_seed(seed)
        patches = patches[torch.randperm(len(patches), generator=generator)[:max_patches]]
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(patches.T))
    return eigenvalues.flip(0), eigenvectors.T.flip(0)


def whitening_filters(
    images: torch.Tensor, out_channels: int, kernel_size: int, eps: float = 5e-4
) -> torch.Tensor:
    """A (2n, C, k, k) weight: the n = min(C*k*k, out_channels // 2) strongest whitening
    filters and their negatives."""
    eigenvalues, eigenvectors = patch_eigenbasis(images, kernel_size)
    n = min(len(eigenvalues), out_channels // 2)
    filters = eigenvectors[:n] / (eigenvalues[:n].clamp(min=0) + eps).sqrt()[:, None]
    weight = torch.cat([filters, -filters]).float()
    return weight.reshape(2 * n, images.shape[1], kernel_size, kernel_size)


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The convolution that sees the image: `conv1`, or the first of a deep stem."""
    conv = getattr(model, "conv1", None)
    if isinstance(conv, nn.Sequential):
        conv = conv[0]
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        raise ValueError("patch whitening needs a model whose first layer `conv1` is a Conv2d")
    return conv


@torch.no_grad()
def whiten_first_conv(model: nn.Module, images: torch.Tensor, eps: float = 5e-4) -> int:
    """Set the first convolution's filters to the patch whitening of `images` (normalised as
    the model will see them). Returns how many filters were set; any beyond 2 x (C*k*k) keep
    their initialisation."""
    conv = first_conv(model)
    if conv.kernel_size[0] != conv.kernel_size[1] or images.shape[1] != conv.in_channels:
        raise ValueError(
            f"cannot whiten a {tuple(conv.kernel_size)} convolution over {conv.in_channels} "
            f"channels from images with {images.shape[1]}"
        )
    weight = whitening_filters(images.cpu(), conv.out_channels, conv.kernel_size[0], eps)
    conv.weight[: len(weight)] = weight.to(conv.weight)
    return len(weight)
