"""Backbones for detection and segmentation: a ResNet that returns feature maps, timm style.

`create_model(name, features_only=True, out_indices=(1, 2, 3, 4))` gives a `FeatureNet`
whose forward returns the chosen maps, numbered as in timm: 0 is the stem's output, 1.. the
stages. Its `feature_info` is a list of dicts (channels, reduction, module) with timm's
helpers `channels()`, `reduction()` and `module_name()`, so FPN-style necks can size
themselves without running the network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .resnet import ResNet


class FeatureInfo(list):
    """The chosen maps' {"num_chs", "reduction", "module"}, in output order."""

    def channels(self) -> list[int]:
        return [info["num_chs"] for info in self]

    def reduction(self) -> list[int]:
        return [info["reduction"] for info in self]

    def module_name(self) -> list[str]:
        return [info["module"] for info in self]


def all_feature_info(model: ResNet) -> list[dict]:
    """Index 0: the stem's activation before its max-pool (as timm's `act1`); 1..: each
    stage's output (after the final BN-ReLU for v2)."""
    spec = model.spec
    pooled = spec.stem_stride > 1  # the ImageNet and deep stems end in a stride-2 max-pool
    reduction = spec.stem_stride // 2 if pooled else spec.stem_stride
    stem = {"num_chs": spec.stem_width, "reduction": reduction, "module": "stem"}
    return [stem, *(dict(info) for info in model.feature_info)]


class FeatureNet(nn.Module):
    """A ResNet without its head, returning the maps at `out_indices` (timm's numbering)."""

    def __init__(self, model: ResNet, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        available = all_feature_info(model)
        if out_indices is None:
            out_indices = tuple(range(1, len(available)))
        out_indices = tuple(int(i) for i in out_indices)
        bad = [i for i in out_indices if not -len(available) <= i < len(available)]
        if bad or not out_indices:
            raise ValueError(
                f"out_indices {list(out_indices)} do not fit {model.spec.name or 'this model'}: "
                f"0 is the stem, 1..{len(available) - 1} the stages"
            )
        self.out_indices = tuple(i % len(available) for i in out_indices)
        self.body = model
        model.reset_classifier(0)  # the head is not used; drop its parameters
        self.feature_info = FeatureInfo(available[i] for i in self.out_indices)
        self.pretrained_cfg = model.pretrained_cfg  # the input the backbone's weights expect

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        model = self.body
        model.check_input(x)
        x = model.activate_stem(model.conv1(x))
        outputs = {0: x} if 0 in self.out_indices else {}
        x = model.maxpool(x)
        last = max(self.out_indices)
        for index, stage in enumerate(model.stages(), start=1):
            if index > last:
                break  # later stages are not needed for the chosen maps
            x = stage(x)
            if index == len(model.stage_names):
                x = model._final_activation(x)
            if index in self.out_indices:
                outputs[index] = x
        return [outputs[i] for i in self.out_indices]
