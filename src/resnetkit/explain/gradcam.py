"""Grad-CAM: where in the image the evidence for a class lies (Selvaraju et al. 2017).

For a feature map A (channels k, positions ij) and a class score y, each channel gets the
weight alpha_k = mean_ij dy/dA_kij, and the map is ReLU(sum_k alpha_k A_k), upsampled to the
input's size. Only positive evidence is kept: regions that raise the class score.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..models.resnet import ResNet

__all__ = ["class_activation_maps", "grad_cam"]


def grad_cam(
    model: ResNet,
    images: torch.Tensor,
    target: int | torch.Tensor | None = None,
    layer: str | nn.Module | None = None,
) -> torch.Tensor:
    """Grad-CAM maps, (N, H, W) in [0, 1] at the input's resolution.

    `images` is the batch exactly as it would be passed to `model(...)` (already normalised);
    `target` is a class index, a tensor of N indices, or None for each image's predicted
    class; `layer` is a module (or its name in `model.named_modules()`) whose output is
    explained, by default the last stage's output (after the final BN-ReLU of v2 nets). The
    model's train/eval mode and its parameters' gradients are left as they were.
    """
    maps = class_activation_maps(model, images, target, layer)
    upsampled = F.interpolate(maps[:, None], size=images.shape[-2:], mode="bilinear")
    return _normalise(upsampled[:, 0])


def class_activation_maps(
    model: ResNet,
    images: torch.Tensor,
    target: int | torch.Tensor | None = None,
    layer: str | nn.Module | None = None,
) -> torch.Tensor:
    """The raw (unnormalised, not upsampled) maps at the layer's resolution, (N, h, w)."""
    with _eval_mode(model), torch.enable_grad():
        inputs = images.detach().float().requires_grad_(True)
        activations, logits = _activations_and_logits(model, inputs, layer)
        classes = _target_classes(target, logits)
        score = logits.gather(1, classes[:, None]).sum()
        # Gradients of the activations only: the parameters' .grad stay untouched.
        (gradients,) = torch.autograd.grad(score, activations)
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * activations.detach()).sum(dim=1))


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()  # BatchNorm must use running statistics: each image is explained alone
    try:
        yield
    finally:
        model.train(was_training)


def _activations_and_logits(
    model: ResNet, inputs: torch.Tensor, layer: str | nn.Module | None
) -> tuple[torch.Tensor, torch.Tensor]:
    if layer is None:
        activations = model.forward_features(inputs)
        return activations, model.forward_head(activations)
    module = _find_layer(model, layer)
    captured: list[torch.Tensor] = []

    def keep_output(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            raise ValueError(
                f"Grad-CAM needs a layer whose output is a (N, C, H, W) feature map; "
                f"{type(_module).__name__} gives {type(output).__name__}"
            )
        captured.append(output)
        # Later in-place ReLUs act on the copy, so the captured map stays as computed.
        return output.clone()

    handle = module.register_forward_hook(keep_output)
    try:
        logits = model(inputs)
    finally:
        handle.remove()
    if not captured:
        raise ValueError("the chosen layer was not used in the forward pass")
    return captured[-1], logits


def _find_layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    if isinstance(layer, nn.Module):
        if not any(m is layer for m in model.modules()):
            raise ValueError("the layer given to grad_cam is not part of this model")
        return layer
    modules = dict(model.named_modules())
    if layer not in modules:
        stages = ", ".join(name for name in modules if name.count(".") == 0 and name)
        raise ValueError(f"model has no layer {layer!r}; top-level layers: {stages}")
    return modules[layer]


def _target_classes(target: int | torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    count, num_classes = logits.shape
    if target is None:
        return logits.detach().argmax(dim=1)
    classes = torch.as_tensor(target, device=logits.device).long().reshape(-1)
    if classes.numel() == 1:
        classes = classes.expand(count)
    if classes.numel() != count:
        raise ValueError(f"target has {classes.numel()} classes for {count} images")
    if classes.min() < 0 or classes.max() >= num_classes:
        raise ValueError(f"target classes must be in 0..{num_classes - 1}")
    return classes


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map to [0, 1]; a map without positive evidence is all zeros."""
    flat = maps.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp_min(1e-12), torch.zeros_like(flat))
    return scaled.view_as(maps)
