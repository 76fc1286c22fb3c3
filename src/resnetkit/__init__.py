"""resnetkit: deep residual networks from one declarative table."""

from .inference import optimize_for_inference
from .model import ResNet
from .pretrained import PretrainedError, list_pretrained, load_pretrained
from .pretrained_cfg import PretrainedCfgError
from .registry import (
    UnknownModelError,
    create_model,
    get_spec,
    list_models,
    register,
)
from .spec import ResNetSpec, SpecError, StageSpec
from .summary import count_macs, count_params, summary
from .transforms import EvalTransform, create_transform
from .weights import WeightsError, load_weights, save_weights

__version__ = "0.1.0"

__all__ = [
    "EvalTransform",
    "PretrainedCfgError",
    "PretrainedError",
    "ResNet",
    "ResNetSpec",
    "SpecError",
    "StageSpec",
    "UnknownModelError",
    "WeightsError",
    "__version__",
    "count_macs",
    "count_params",
    "create_model",
    "create_transform",
    "get_spec",
    "list_models",
    "list_pretrained",
    "load_pretrained",
    "load_weights",
    "optimize_for_inference",
    "register",
    "save_weights",
    "summary",
]
