"""The evaluation transform that goes with a model's weights: PIL image -> normalised tensor.

    model = rk.create_model("resnet50.imagenet_v2")
    transform = rk.create_transform(model)  # resize 232, centre crop 224, ImageNet mean/std
    logits = model.eval()(transform(image)[None])

The steps, from `model.pretrained_cfg`: resize the shorter side to size / crop_pct with the
cfg's interpolation, centre-crop `input_size`, convert to the cfg's channels (grayscale or
RGB), scale to [0, 1] and normalise with its mean and std. Decoding and resizing are the
ones `predict` and `eval` use (`resnetkit.data.decode`), so a tensor made here is the one the
command line would feed the model. Pillow and torch only: torchvision is not needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from PIL import Image

from ..data.augment import Normalize
from ..data.decode import decode_image, read_image, resize_side
from ..models.pretrained_cfg import PretrainedCfgError, check_cfg

_CHANNELS = {1: "grayscale", 3: "RGB"}


@dataclass(frozen=True)
class EvalTransform:
    """Resize, centre-crop, convert and normalise one image, as the weights were evaluated."""

    input_size: tuple[int, int, int]  # (C, H, W) of the output
    crop_pct: float
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def resize_size(self) -> tuple[int, int]:
        """The (H, W) the image is scaled to cover before the centre crop."""
        _, height, width = self.input_size
        return resize_side(height, self.crop_pct), resize_side(width, self.crop_pct)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """A float (C, H, W) tensor for a Pillow image of any size and mode."""
        channels, height, width = self.input_size
        pixels = decode_image(image, (height, width), channels, self.crop_pct, self.interpolation)
        return self._normalise(pixels)

    def read(self, path: str | os.PathLike[str]) -> torch.Tensor:
        """The same for an image file; DataError naming the file if it cannot be decoded."""
        channels, height, width = self.input_size
        pixels = read_image(
            path,
            (height, width),
            channels,
            crop_pct=self.crop_pct,
            interpolation=self.interpolation,
        )
        return self._normalise(pixels)

    @cached_property
    def _normalize(self) -> Normalize:
        # The same fused (x/255 - mean)/std as the training loader, so values match bit for bit.
        return Normalize(self.mean, self.std)

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._normalize(pixels[None])[0]

    def __repr__(self) -> str:
        channels, height, width = self.input_size
        resize_h, resize_w = self.resize_size
        resize = f"{resize_h}" if resize_h == resize_w else f"{resize_h}x{resize_w}"
        return (
            f"EvalTransform(resize {resize} {self.interpolation}, centre crop {height}x{width}, "
            f"{_CHANNELS[channels]}, normalise mean={list(self.mean)} std={list(self.std)})"
        )


def create_transform(model_or_cfg: Any) -> EvalTransform:
    """The evaluation transform for a model (its `pretrained_cfg`) or a pretrained_cfg dict."""
    cfg = getattr(model_or_cfg, "pretrained_cfg", model_or_cfg)
    if not isinstance(cfg, Mapping):
        raise TypeError(
            f"create_transform expects a model with a pretrained_cfg or a pretrained_cfg dict, "
            f"got {type(model_or_cfg).__name__}"
        )
    cfg = check_cfg(cfg)
    if cfg["input_size"][0] not in _CHANNELS:
        raise PretrainedCfgError(
            f"pretrained_cfg input_size {list(cfg['input_size'])}: images decode to 1 "
            f"(grayscale) or 3 (RGB) channels"
        )
    return EvalTransform(
        input_size=cfg["input_size"],
        crop_pct=cfg["crop_pct"],
        interpolation=cfg["interpolation"],
        mean=cfg["mean"],
        std=cfg["std"],
    )


__all__ = ["EvalTransform", "create_transform"]
