"""Split into `resnetkit.models.registry` (the table of named specs) and
`resnetkit.weights.factory` (`create_model`, and `list_models` with weights): this old path
re-exports both, kept for user code."""

from .models.registry import (
    CIFAR_STRIDES,
    CIFAR_WIDTHS,
    HE2015,
    HE2016,
    IMAGENET_STRIDES,
    IMAGENET_WIDTHS,
    XIE2017,
    ZAGORUYKO2016,
    ModelEntry,
    UnknownModelError,
    get_entry,
    get_spec,
    register,
    resolve_spec,
)
from .weights.factory import create_model, list_models

__all__ = [
    "CIFAR_STRIDES",
    "CIFAR_WIDTHS",
    "HE2015",
    "HE2016",
    "IMAGENET_STRIDES",
    "IMAGENET_WIDTHS",
    "XIE2017",
    "ZAGORUYKO2016",
    "ModelEntry",
    "UnknownModelError",
    "create_model",
    "get_entry",
    "get_spec",
    "list_models",
    "register",
    "resolve_spec",
]
