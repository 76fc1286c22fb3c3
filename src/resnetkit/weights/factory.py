"""`create_model`: a registered name, spec or spec file built into a model, its weights loaded.

The builder sits above the model table (`models.registry`) and the weights (`pretrained`), as
timm's `_factory`/`_builder` do, so that imports point one way: the registry knows nothing of
weights, and the weights know nothing of how a model is chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..models.features import FeatureNet
from ..models.registry import is_registered, resolve_spec
from ..models.registry import list_models as _registered_names
from ..models.resnet import ResNet
from ..models.spec import ResNetSpec
from .catalogue import bundled_weights, default_tag, split_weights_name, weights_names
from .pretrained import load_pretrained_weights


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered names matching a shell-style pattern, e.g. 'resnet*' or '*cifar*'; with
    `pretrained=True`, the weights available for them as `model.tag` (as in timm)."""
    if pretrained:
        return weights_names(pattern)
    return _registered_names(pattern)


def _resolve_pretrained(
    name_or_spec: str | Path | ResNetSpec, pretrained: bool | str | Path | None
) -> tuple[str | Path | ResNetSpec, str | Path | None]:
    """Turn timm's spellings (`model.tag`, pretrained=True/False) into (model, tag or file)."""
    named = isinstance(name_or_spec, str) and not is_registered(name_or_spec)
    if isinstance(pretrained, bool) or named:
        tag = None
        if isinstance(name_or_spec, str) and not Path(name_or_spec).is_file():
            name_or_spec, tag = split_weights_name(name_or_spec)
        if pretrained is True:
            pretrained = tag or default_tag(str(name_or_spec))
        elif pretrained is False:
            pretrained = None  # timm: a named tag with pretrained=False builds, untrained
        elif pretrained is None:
            pretrained = tag
    return name_or_spec, pretrained


def create_model(
    name_or_spec: str | Path | ResNetSpec,
    pretrained: bool | str | Path | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **overrides: Any,
) -> ResNet | FeatureNet:
    """Build a model by registered name, spec or spec file; keyword overrides change spec
    fields, e.g. `create_model("resnet50", num_classes=10, in_chans=1)`.

    Weights, as in timm: `create_model("resnet50.imagenet_v2")` or
    `create_model("resnet50", pretrained=True)` (the model's default weights; False or None
    for none). `pretrained` may also be a tag such as "imagenet" (downloaded once and cached;
    see `resnetkit.weights.pretrained`) or a .safetensors/.pth file. Weights load strictly; another
    `num_classes` gets a new classifier, another `in_chans` adapts the first convolution.

    `features_only=True` returns a `FeatureNet` whose forward gives the feature maps at
    `out_indices` (timm's numbering: 0 the stem, 1.. the stages; default all stages).
    """
    if out_indices is not None and not features_only:
        raise ValueError("out_indices needs features_only=True")
    model = _build(name_or_spec, pretrained, overrides)
    return FeatureNet(model, out_indices) if features_only else model


def _build(
    name_or_spec: str | Path | ResNetSpec, pretrained: bool | str | Path | None, overrides: dict
) -> ResNet:
    name_or_spec, pretrained = _resolve_pretrained(name_or_spec, pretrained)
    if pretrained is not None:
        shipped = bundled_weights(str(name_or_spec), str(pretrained))
        if shipped is not None:
            # Bundled weights define their own input channels and classes unless overridden.
            overrides = shipped.spec_fields() | overrides
        model = ResNet(resolve_spec(name_or_spec, **overrides))
        load_pretrained_weights(model, pretrained)
        return model
    return ResNet(resolve_spec(name_or_spec, **overrides))
