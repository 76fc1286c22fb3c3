"""torchvision-format checkpoints load strictly; files are read safely."""

import os
import pickle

import pytest
import torch

import resnetkit as rk
from resnetkit.weights import WeightsError, load_weights, read_metadata, read_state_dict

TORCHVISION_LAYOUT = {
    "resnet18": ("basic", [2, 2, 2, 2], 1, 64),
    "resnet50": ("bottleneck", [3, 4, 6, 3], 1, 64),
    "resnext50_32x4d": ("bottleneck", [3, 4, 6, 3], 32, 4),
    "wide_resnet50_2": ("bottleneck", [3, 4, 6, 3], 1, 128),
}


def torchvision_state_dict(name: str, num_classes: int = 1000) -> dict[str, torch.Tensor]:
    """Keys and shapes of torchvision's ResNet, written out from its published layout
    (torchvision itself cannot be imported here)."""
    block, layers, groups, base_width = TORCHVISION_LAYOUT[name]
    expansion = 1 if block == "basic" else 4
    state: dict[str, torch.Tensor] = {}

    def bn(prefix: str, c: int) -> None:
        state[f"{prefix}.weight"] = torch.rand(c) + 0.5
        state[f"{prefix}.bias"] = torch.randn(c)
        state[f"{prefix}.running_mean"] = torch.randn(c)
        state[f"{prefix}.running_var"] = torch.rand(c) + 0.5
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(7)

    state["conv1.weight"] = torch.randn(64, 3, 7, 7)
    bn("bn1", 64)
    inplanes = 64
    for i, (blocks, planes) in enumerate(zip(layers, [64, 128, 256, 512], strict=True)):
        for j in range(blocks):
            p = f"layer{i + 1}.{j}"
            stride = 2 if i > 0 and j == 0 else 1
            if block == "basic":
                state[f"{p}.conv1.weight"] = torch.randn(planes, inplanes, 3, 3)
                bn(f"{p}.bn1", planes)
                state[f"{p}.conv2.weight"] = torch.randn(planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
            else:
                width = int(planes * (base_width / 64.0)) * groups
                state[f"{p}.conv1.weight"] = torch.randn(width, inplanes, 1, 1)
                bn(f"{p}.bn1", width)
                state[f"{p}.conv2.weight"] = torch.randn(width, width // groups, 3, 3)
                bn(f"{p}.bn2", width)
                state[f"{p}.conv3.weight"] = torch.randn(planes * 4, width, 1, 1)
                bn(f"{p}.bn3", planes * 4)
            if stride != 1 or inplanes != planes * expansion:
                state[f"{p}.downsample.0.weight"] = torch.randn(planes * expansion, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    state["fc.weight"] = torch.randn(num_classes, 512 * expansion)
    state["fc.bias"] = torch.randn(num_classes)
    return state


@pytest.mark.parametrize("name", list(TORCHVISION_LAYOUT))
def test_torchvision_checkpoint_loads_strictly_from_pth(tmp_path, name):
    state = torchvision_state_dict(name)
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    model = load_weights(rk.create_model(name), path, strict=True)
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def test_checkpoint_from_ddp_with_module_prefix_and_nested_state_dict_loads(tmp_path):
    state = torchvision_state_dict("resnet18")
    path = tmp_path / "ddp.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = load_weights(rk.create_model("resnet18"), path)
    assert torch.equal(model.conv1.weight, state["conv1.weight"])


def test_real_torchvision_model_loads_when_torchvision_is_importable():
    tv_models = pytest.importorskip("torchvision.models")
    for name in ("resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2"):
        reference = getattr(tv_models, name)().eval()
        ours = load_weights(rk.create_model(name), reference.state_dict()).eval()
        x = torch.randn(1, 3, 64, 64)
        torch.testing.assert_close(ours(x), reference(x))


def test_other_class_count_needs_skip_classifier_and_keeps_the_backbone(tmp_path):
    state = torchvision_state_dict("resnet18")
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    model = rk.create_model("resnet18", num_classes=10)
    with pytest.raises(WeightsError, match="skip_classifier=True"):
        load_weights(model, path)
    load_weights(model, path, skip_classifier=True)
    assert torch.equal(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert model.fc.out_features == 10


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    state = torchvision_state_dict("resnet18")
    del state["layer1.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError) as info:
        load_weights(rk.create_model("resnet18"), state)
    assert "missing keys layer1.0.conv1.weight" in str(info.value)
    assert "unexpected keys extra.weight" in str(info.value)


def test_safetensors_round_trip_keeps_weights_and_spec(tmp_path):
    model = rk.create_model("resnet20")
    path = rk.save_weights(model, tmp_path / "w.safetensors", {"class_names": ["a", "b"]})
    fresh = load_weights(rk.create_model("resnet20"), path)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)
    meta = read_metadata(path)
    assert rk.ResNetSpec.from_json(meta["spec"]) == model.spec
    assert meta["class_names"] == '["a", "b"]'
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"conv1.weight": RunsCode(marker)}, handle, protocol=2)
    with pytest.raises(WeightsError, match="weights_only=True"):
        read_state_dict(path)
    assert not marker.exists()


def test_corrupt_safetensors_is_reported_with_its_path(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(WeightsError, match=r"broken\.safetensors"):
        read_state_dict(path)


def test_saved_files_get_ordinary_permissions_not_mkstemps_private_ones(tmp_path):
    old = os.umask(0o022)
    try:
        path = rk.save_weights(rk.create_model("resnet8"), tmp_path / "w.safetensors")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_malicious_pickle_error_never_suggests_weights_only_false(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"conv1.weight": RunsCode(tmp_path / "ran")}, handle, protocol=2)
    with pytest.raises(WeightsError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert "set to `False`" not in message and "weights_only=False" not in message
    assert "\n" not in message and "never loaded" in message
