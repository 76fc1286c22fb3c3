"""torch.hub entry points: `torch.hub.load("<owner>/resnetkit", "resnet50", pretrained=True)`.

Every registered model is an entry point; keyword arguments go to `resnetkit.create_model`
(`pretrained=True` for the default weights, a tag such as "imagenet_v2", `num_classes`,
`in_chans`, `features_only`, ...). torch.hub clones the repository, so the package is imported
from its `src/` folder without installing it.
"""

import sys
from pathlib import Path

dependencies = ["torch", "numpy", "safetensors", "yaml"]

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from resnetkit import create_model, list_models  # noqa: E402


def _entry_point(name):
    def build(pretrained=False, **kwargs):
        return create_model(name, pretrained=pretrained, **kwargs)

    build.__name__ = name
    build.__doc__ = f"resnetkit's {name}; keyword arguments as for resnetkit.create_model."
    return build


for _name in list_models():
    globals()[_name] = _entry_point(_name)
