"""What each stage computes: the strongest channels of every stage's output for one image.

Early stages respond to edges and textures at full resolution; later ones to larger parts at
coarse resolution. Drawing the most active channels of each stage side by side shows that
progression (Zeiler & Fergus 2014 did it with deconvolutions; plain activations suffice here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..models.resnet import ResNet
from .figure import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class StageChannels:
    """The `maps` (k, h, w) of the k most active channels of one stage, strongest first."""

    stage: str
    channels: tuple[int, ...]
    maps: torch.Tensor
    reduction: int


@torch.no_grad()
def strongest_channels(model: ResNet, image: torch.Tensor, count: int = 8) -> list[StageChannels]:
    """For one preprocessed image (C, H, W), each stage's `count` channels with the highest
    mean activation."""
    if image.dim() != 3:
        raise ValueError(f"expected one image (C, H, W), got shape {list(image.shape)}")
    was_training = model.training
    model.eval()
    try:
        outputs = model.features(image[None].float())
    finally:
        model.train(was_training)
    stages = []
    for name, info, fmap in zip(model.stage_names, model.feature_info, outputs, strict=True):
        fmap = fmap[0].float().cpu()
        order = fmap.mean(dim=(1, 2)).argsort(descending=True)[: min(count, fmap.shape[0])]
        stages.append(StageChannels(name, tuple(order.tolist()), fmap[order], info["reduction"]))
    return stages


def features_figure(image: torch.Tensor, stages: list[StageChannels], title: str = "") -> Figure:
    """One row per stage: its strongest channels, each scaled to its own range."""
    count = max(len(s.channels) for s in stages)
    figure = new_figure(figsize=(1.3 * (count + 1), 1.45 * len(stages) + 0.4), dpi=100)
    axes = figure.subplots(len(stages), count + 1, squeeze=False)
    shown = image.float().div(255).expand(3, -1, -1).permute(1, 2, 0).numpy()
    for row, stage in enumerate(stages):
        axes[row][0].imshow(shown, interpolation="nearest")
        axes[row][0].set_title(f"{stage.stage} (/{stage.reduction})", fontsize=7)
        for col in range(count):
            ax = axes[row][col + 1]
            if col < len(stage.channels):
                ax.imshow(stage.maps[col].numpy(), cmap="viridis", interpolation="nearest")
                ax.set_title(f"ch {stage.channels[col]}", fontsize=6)
        for ax in axes[row]:
            ax.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure
