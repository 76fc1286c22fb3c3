"""`pretrained_cfg`: what a model's weights expect of their input, as a plain dict.

Every model carries one as `model.pretrained_cfg`, with timm's key names, so code written for
timm's configs reads ours unchanged:

- `input_size` (C, H, W): the evaluation crop; `crop_pct`: crop side / resize side (0.875:
  resize the shorter side to 256, centre-crop 224); `crop_mode` "center"; `interpolation`
  "bilinear" or "bicubic"; `mean`, `std`: per channel, for pixels scaled to [0, 1].
- `num_classes`, `label_names` (class names in label order, None where unknown).
- provenance: `architecture`, `tag`, `source`, `url`, `license` (None where unknown or
  untrained); `first_conv`, `classifier`: the parameters an adapter changes.

A model built without weights gets `default_cfg(spec)`: the classic ImageNet evaluation
(ImageNet mean/std, crop_pct 0.875) for ImageNet-stem networks and the whole image
(crop_pct 1.0) for CIFAR-stem ones, which are trained on small images used as they are.
This module holds no I/O; weights, checkpoints and training fill the dicts in.

Normalisation has one owner: a dataset's `DatasetInfo` carries the data's own statistics
(what a network trained from scratch is fed, and what `trained_cfg` records), and wherever
weights exist their cfg decides: `apply_normalisation(info, cfg)` is the one place that puts a
cfg's mean and std onto data (fine-tuning, `resnetkit eval`), and `create_transform(cfg)`
reads the same cfg for single images (`predict`, `explain`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .spec import ResNetSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CROP_PCT = 0.875  # resize 256, crop 224: the classic ImageNet evaluation
INTERPOLATIONS = ("bilinear", "bicubic")

_PROVENANCE = ("architecture", "tag", "source", "url", "license")


class PretrainedCfgError(ValueError):
    """A pretrained_cfg that lacks a key or holds a value no transform can use."""


def stats_for_channels(
    mean: Sequence[float], std: Sequence[float], in_chans: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std for `in_chans` inputs: one channel sees the average of the others (a grey
    image equal in every RGB channel), more channels repeat them cyclically. This matches
    how `adapt_input_conv` adapts the first convolution."""
    if in_chans == len(mean):
        return tuple(mean), tuple(std)
    if in_chans == 1:
        return (sum(mean) / len(mean),), (sum(std) / len(std),)
    n = len(mean)
    return (
        tuple(mean[i % n] for i in range(in_chans)),
        tuple(std[i % n] for i in range(in_chans)),
    )


def make_cfg(
    *,
    input_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    num_classes: int,
    crop_pct: float = 1.0,
    interpolation: str = "bilinear",
    label_names: Sequence[str] | None = None,
    **provenance: Any,
) -> dict[str, Any]:
    """A checked pretrained_cfg; `provenance` sets architecture, tag, source, url, license."""
    unknown = sorted(set(provenance) - set(_PROVENANCE))
    if unknown:
        raise TypeError(f"make_cfg() got unexpected keys {unknown}; allowed: {_PROVENANCE}")
    cfg = {key: provenance.get(key) for key in _PROVENANCE}
    cfg |= {
        "num_classes": num_classes,
        "label_names": label_names,
        "input_size": input_size,
        "crop_pct": crop_pct,
        "crop_mode": "center",
        "interpolation": interpolation,
        "mean": mean,
        "std": std,
        "first_conv": "conv1",
        "classifier": "fc",
    }
    return check_cfg(cfg)


def check_cfg(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `cfg` with sequences as tuples (as after a JSON round trip, lists are
    accepted); PretrainedCfgError naming the key for anything a transform cannot use."""
    required = ("input_size", "mean", "std", "crop_pct", "interpolation")
    missing = [key for key in required if key not in cfg]
    if missing:
        raise PretrainedCfgError(f"pretrained_cfg lacks {', '.join(missing)}")
    out = dict(cfg)
    out["input_size"] = _ints(cfg["input_size"], "input_size", 3)
    channels = out["input_size"][0]
    if min(out["input_size"]) < 1:
        raise PretrainedCfgError(
            f"pretrained_cfg input_size {list(out['input_size'])}: expected (C, H, W), each >= 1"
        )
    for key in ("mean", "std"):
        out[key] = _floats(cfg[key], key, channels)
    if min(out["std"]) <= 0:
        raise PretrainedCfgError(f"pretrained_cfg std {list(out['std'])}: must be positive")
    crop = cfg["crop_pct"]
    if isinstance(crop, bool) or not isinstance(crop, int | float) or not 0 < crop <= 1:
        raise PretrainedCfgError(f"pretrained_cfg crop_pct {crop!r}: expected 0 < crop_pct <= 1")
    out["crop_pct"] = float(crop)
    if cfg["interpolation"] not in INTERPOLATIONS:
        raise PretrainedCfgError(
            f"pretrained_cfg interpolation {cfg['interpolation']!r}: expected one of "
            f"{', '.join(INTERPOLATIONS)}"
        )
    names = cfg.get("label_names")
    if names is not None:
        out["label_names"] = tuple(str(name) for name in names)
        if "num_classes" in cfg and len(out["label_names"]) != cfg["num_classes"]:
            raise PretrainedCfgError(
                f"pretrained_cfg names {len(out['label_names'])} labels for "
                f"{cfg['num_classes']} classes"
            )
    return out


def _ints(values: Any, key: str, length: int) -> tuple[int, ...]:
    ok = isinstance(values, Sequence) and len(values) == length
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    if not ok:
        raise PretrainedCfgError(f"pretrained_cfg {key} {values!r}: expected {length} integers")
    return tuple(values)


def _floats(values: Any, key: str, length: int) -> tuple[float, ...]:
    ok = isinstance(values, Sequence) and len(values) == length
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if not ok or not all(math.isfinite(v) for v in values):
        raise PretrainedCfgError(
            f"pretrained_cfg {key} {values!r}: expected {length} finite numbers, one per channel"
        )
    return tuple(float(v) for v in values)


def default_cfg(spec: ResNetSpec) -> dict[str, Any]:
    """The cfg of a model without weights: ImageNet statistics, the architecture's native size,
    crop_pct 0.875 for ImageNet-stem networks and 1.0 for CIFAR-stem ones."""
    side = spec.default_input_size
    mean, std = stats_for_channels(IMAGENET_MEAN, IMAGENET_STD, spec.in_chans)
    return make_cfg(
        input_size=(spec.in_chans, side, side),
        mean=mean,
        std=std,
        num_classes=spec.num_classes,
        crop_pct=1.0 if spec.default_input_size == 32 else IMAGENET_CROP_PCT,
        architecture=spec.name or None,
    )


def trained_cfg(info: Any, architecture: str | None = None, **provenance: Any) -> dict[str, Any]:
    """The cfg of weights trained on `info` (a DatasetInfo): its normalisation, image size and
    class names; crop_pct 1.0, because training decodes each whole image to that size."""
    return make_cfg(
        input_size=(info.in_chans, *info.image_size),
        mean=info.mean,
        std=info.std,
        num_classes=len(info.class_names),
        label_names=info.class_names,
        architecture=architecture or None,
        **provenance,
    )


def apply_normalisation(info: Any, cfg: Mapping[str, Any]) -> Any:
    """`info` (a DatasetInfo) with the mean and std of the weights' `cfg`, fitted to the data's
    channels: the data is then fed to the weights the way they were trained."""
    mean, std = stats_for_channels(cfg["mean"], cfg["std"], info.in_chans)
    return dataclasses.replace(info, mean=tuple(mean), std=tuple(std))


def fit_cfg(cfg: Mapping[str, Any], spec: ResNetSpec) -> dict[str, Any]:
    """`cfg` for a network built from `spec`: other input channels get adapted statistics,
    another number of classes drops the label names (they belong to the old classifier)."""
    out = dict(cfg)
    channels, height, width = out["input_size"]
    if spec.in_chans != channels:
        out["mean"], out["std"] = stats_for_channels(out["mean"], out["std"], spec.in_chans)
        out["input_size"] = (spec.in_chans, height, width)
    if out.get("num_classes") != spec.num_classes:
        out["num_classes"] = spec.num_classes
        out["label_names"] = None
    if spec.name:
        out["architecture"] = spec.name
    return out


__all__ = [
    "IMAGENET_CROP_PCT",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INTERPOLATIONS",
    "PretrainedCfgError",
    "apply_normalisation",
    "check_cfg",
    "default_cfg",
    "fit_cfg",
    "make_cfg",
    "stats_for_channels",
    "trained_cfg",
]
