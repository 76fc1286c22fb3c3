"""Pretrained weights loaded into a model, and fine-tuning helpers; the names of the
catalogue (`catalogue`), the download cache (`download`) and the state-dict adapters
(`adapt`) are re-exported here, where they lived before.

The catalogue lists torchvision's ImageNet-1K releases (BSD-3-Clause). Our v1 models use
torchvision's parameter names, so those files load with `strict=True` and no renaming. A file
is downloaded once, checked against the SHA-256 its name carries (the full digest where it is
known), converted to safetensors in the cache and read from there afterwards; pickles are
only ever read with `weights_only=True`.

    model = rk.create_model("resnet50", pretrained="imagenet", num_classes=10)

Tags: `imagenet` is torchvision's IMAGENET1K_V1 release of each model (the classic recipe:
resize 256, centre crop 224); `imagenet_v2` is IMAGENET1K_V2 where torchvision has one (the
2021 recipe: higher accuracy, resize 232, crop 224). That evaluation travels with the weights:
loading them sets `model.pretrained_cfg` (see `resnetkit.models.pretrained_cfg`), from which
`rk.create_transform(model)` builds the published preprocessing.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..models.pretrained_cfg import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    apply_normalisation,
    check_cfg,
    default_cfg,
    fit_cfg,
    stats_for_channels,
)
from ..models.registry import resolve_spec
from ..models.spec import ResNetSpec
from .adapt import adapt_input_conv, adapt_state_dict, first_conv_key
from .catalogue import (
    DEFAULT_TAG,
    IMAGENET_CLASSES,
    BundledWeights,
    PretrainedError,
    PretrainedWeights,
    bundled_weights,
    default_tag,
    find_bundled,
    get_pretrained,
    imagenet_class_names,
    list_bundled,
    list_pretrained,
    register_pretrained,
    split_weights_name,
    weights_names,
)
from .checkpoint import pretrained_cfg_from_metadata
from .download import CACHE_FORMAT, load_pretrained, torch_hub_file, weights_cache_dir
from .io import load_weights, read_metadata, read_state_dict

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


# -- loading into a model -----------------------------------------------------------------------


def is_weights_file(pretrained: str | os.PathLike[str]) -> bool:
    """True for a path to a weights file, False for a catalogue tag such as "imagenet"."""
    if isinstance(pretrained, os.PathLike):
        return True
    return pretrained.endswith(WEIGHT_SUFFIXES) or "/" in pretrained or os.sep in pretrained


def load_pretrained_weights(
    model: nn.Module,
    pretrained: str | os.PathLike[str],
    model_name: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> nn.Module:
    """Load a catalogue tag (for `model_name`, default the model's spec name) or a weights
    file into `model`, strictly; a different number of classes re-initialises the classifier
    and a different number of input channels adapts the first convolution."""
    name = model_name or getattr(getattr(model, "spec", None), "name", "")
    shipped = bundled_weights(name, str(pretrained))
    if shipped is not None:
        path, source = shipped.path, f"bundled {shipped.name}"
    elif is_weights_file(pretrained):
        path, source = Path(pretrained), str(pretrained)
    else:
        name = model_name or getattr(getattr(model, "spec", None), "name", "")
        if not name:
            raise PretrainedError(
                f"pretrained={pretrained!r} names catalogue weights, which needs a registered "
                f"model name; pass a weights file instead"
            )
        path = load_pretrained(name, str(pretrained), cache_dir, progress)
        source = f"{name} {pretrained!r}"
    state = read_state_dict(path)
    state, skip_classifier = adapt_state_dict(model, state, source)
    load_weights(model, state, strict=True, skip_classifier=skip_classifier)
    spec = getattr(model, "spec", None)
    if isinstance(spec, ResNetSpec):
        # The preprocessing travels with the weights, fitted to this model's channels/classes.
        model.pretrained_cfg = fit_cfg(weights_cfg(pretrained, name, model.pretrained_cfg), spec)
    return model


def weights_cfg(
    pretrained: str | os.PathLike[str], model_name: str, fallback: Mapping[str, Any]
) -> dict[str, Any]:
    """The pretrained_cfg a set of weights brings, the one answer to "how were these weights
    fed": the cfg bundled weights and resnetkit files record, a catalogue entry's published
    evaluation, or `fallback` (with the file as source) for a file that records none. Reads
    metadata only; never downloads."""
    shipped = bundled_weights(model_name, str(pretrained))
    if shipped is not None:
        return shipped.pretrained_cfg()
    if is_weights_file(pretrained):
        return _file_cfg(Path(pretrained), fallback)
    return get_pretrained(model_name, str(pretrained)).pretrained_cfg()


def _file_cfg(path: Path, fallback: Mapping[str, Any]) -> dict[str, Any]:
    """The pretrained_cfg a weights file records (resnetkit checkpoints and cached downloads
    do), else `fallback` with the file as its source."""
    readable = path.suffix == ".safetensors" and path.is_file()
    metadata = read_metadata(path) if readable else {}
    try:
        if "pretrained_cfg" in metadata:
            return check_cfg(json.loads(metadata["pretrained_cfg"]))
        if "spec" in metadata:
            spec = ResNetSpec.parse_json(metadata["spec"])
            return pretrained_cfg_from_metadata(metadata, spec)
    except (ValueError, TypeError) as exc:
        log.warning("%s: preprocessing metadata not usable (%s); using the defaults", path, exc)
    log.info("%s records no preprocessing; using the model's defaults", path)
    return dict(fallback, source=str(path))


# -- fine-tuning --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputNormalisation:
    """The input statistics and size that pretrained weights expect: a view of their cfg."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int | None

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> InputNormalisation:
        return cls(tuple(cfg["mean"]), tuple(cfg["std"]), cfg["input_size"][1])

    def apply(self, info: Any) -> Any:
        """A `DatasetInfo` whose mean/std are these, for its number of channels."""
        return apply_normalisation(info, {"mean": self.mean, "std": self.std})

    def for_channels(self, in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return stats_for_channels(self.mean, self.std, in_chans)


def pretrained_normalisation(cfg: Any) -> InputNormalisation | None:
    """The normalisation and input size the run's pretrained weights were trained with (None
    without `cfg.pretrained`), from the weights' pretrained_cfg (`weights_cfg`). Files that
    record none get the model's default cfg: ImageNet's mean and std."""
    if not cfg.pretrained:
        return None

    spec = resolve_spec(cfg.model)
    weights = weights_cfg(cfg.pretrained, spec.name or cfg.model, default_cfg(spec))
    return InputNormalisation.from_cfg(weights)


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def freeze_backbone(model: nn.Module) -> nn.Module:
    """Train the classifier only: every other parameter stops requiring gradients and every
    BatchNorm outside the classifier stays in eval mode (running statistics used, never
    updated), whatever `model.train()` says."""
    head = model.get_classifier()
    head_params = {id(p) for p in head.parameters()}
    head_modules = set(head.modules())
    for param in model.parameters():
        param.requires_grad_(id(param) in head_params)
    for module in model.modules():
        if isinstance(module, _BATCH_NORMS) and module not in head_modules:
            module.register_forward_pre_hook(_keep_eval)
    return model


def _keep_eval(module: nn.Module, args: Any) -> None:
    # model.train() switches every submodule to training mode; a frozen BatchNorm is put back
    # before each call so it normalises with, and does not update, its running statistics.
    module.train(False)


__all__ = [
    "CACHE_FORMAT",
    "DEFAULT_TAG",
    "IMAGENET_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WEIGHT_SUFFIXES",
    "BundledWeights",
    "InputNormalisation",
    "PretrainedError",
    "PretrainedWeights",
    "adapt_input_conv",
    "adapt_state_dict",
    "bundled_weights",
    "default_tag",
    "find_bundled",
    "first_conv_key",
    "freeze_backbone",
    "get_pretrained",
    "imagenet_class_names",
    "is_weights_file",
    "list_bundled",
    "list_pretrained",
    "load_pretrained",
    "load_pretrained_weights",
    "pretrained_normalisation",
    "register_pretrained",
    "split_weights_name",
    "torch_hub_file",
    "weights_cache_dir",
    "weights_cfg",
    "weights_names",
]
