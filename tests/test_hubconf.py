"""hubconf.py: torch.hub finds every registered model and builds it like create_model."""

import importlib.util
from pathlib import Path

import torch

import resnetkit as rk

ROOT = Path(__file__).resolve().parents[1]


def test_hubconf_has_an_entry_point_for_every_registered_model():
    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = {name for name in dir(hubconf) if callable(getattr(hubconf, name))}
    assert set(rk.list_models()) <= entries
    assert hubconf.dependencies == ["torch", "numpy", "safetensors", "yaml"]


def test_torch_hub_load_builds_the_model_with_its_weights():
    model = torch.hub.load(str(ROOT), "resnet20", source="local", pretrained=True)
    reference = rk.create_model("resnet20.fashion_mnist")
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in model.state_dict().items())
    small = torch.hub.load(str(ROOT), "resnet18", source="local", num_classes=7)
    assert small.num_classes == 7
