"""resnetkit: deep residual networks from one declarative table.

The package is layered (see docs/architecture.md): `core` at the bottom, then `models` and
`data`, `weights`, `explain` and `deploy`, `training`, `experiments`, and `cli` on top; imports
point down. The modules at this level other than this one are the old paths of modules that
moved into those subpackages, kept as aliases for user code.
"""

# Imported before `summary` the function is bound below: the first import of an alias module
# sets the package attribute of that name, which would otherwise replace the function.
from . import summary as _summary_module  # noqa: F401

# isort: split
from .deploy.inference import optimize_for_inference
from .models.pretrained_cfg import PretrainedCfgError
from .models.registry import UnknownModelError, get_spec, register
from .models.resnet import ResNet
from .models.spec import ResNetSpec, SpecError, StageSpec
from .models.summary import count_macs, count_params, summary
from .training.fit import fit
from .weights.catalogue import PretrainedError, list_pretrained
from .weights.download import load_pretrained
from .weights.factory import create_model, list_models
from .weights.io import WeightsError, load_weights, save_weights
from .weights.transforms import EvalTransform, create_transform

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
    "fit",
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
