"""The registry names the classic networks, with the published parameter counts and MACs."""

import pytest
import torch
from torch import nn

import resnetkit as rk
from resnetkit.summary import count_macs, count_params

REQUIRED = [
    *[f"resnet{d}" for d in (18, 34, 50, 101, 152)],
    "wide_resnet50_2",
    "wide_resnet101_2",
    "resnext50_32x4d",
    "resnext101_32x8d",
    *[f"resnet{d}" for d in (20, 32, 44, 56, 110, 1202)],
    *[f"plain{d}" for d in (20, 32, 44, 56, 110)],
    *[f"preact_resnet{d}" for d in (18, 34, 50, 101, 152)],
    "preact_resnet110",
    "preact_resnet164",
    "preact_resnet1001",
    "resnet18_cifar",
]


def meta_model(name: str, **overrides) -> rk.ResNet:
    with torch.device("meta"):
        return rk.create_model(name, **overrides)


def test_every_required_name_is_registered():
    assert set(REQUIRED) <= set(rk.list_models())


def test_list_models_filters_with_a_pattern():
    assert rk.list_models("plain*") == [f"plain{d}" for d in (20, 32, 44, 56, 110)]
    assert "resnet18_cifar" in rk.list_models("*cifar")


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("resnet101", 44_549_160),
        ("resnet152", 60_192_808),
        ("wide_resnet50_2", 68_883_240),
        ("resnext50_32x4d", 25_028_904),
        # torchvision's published counts for the bigger variants
        ("wide_resnet101_2", 126_886_696),
        ("resnext101_32x8d", 88_791_336),
        # the tutorials' CIFAR ResNet-18 (3x3 stem, 10 classes)
        ("resnet18_cifar", 11_173_962),
    ],
)
def test_imagenet_models_have_the_published_parameter_count_exactly(name, params):
    assert count_params(meta_model(name)) == params


@pytest.mark.parametrize(
    ("name", "millions"),
    [
        ("resnet20", 0.27),
        ("resnet32", 0.46),
        ("resnet44", 0.66),
        ("resnet56", 0.85),
        ("resnet110", 1.7),
        ("resnet1202", 19.4),
        ("preact_resnet164", 1.7),
        ("wrn28_10", 36.5),
        ("wrn16_8", 11.0),
        ("resnet9", 6.57),  # Page 2018
    ],
)
def test_cifar_models_match_the_papers_to_the_printed_precision(name, millions):
    decimals = len(str(millions).split(".")[1])
    assert round(count_params(meta_model(name)) / 1e6, decimals) == millions


def test_preact_resnet1001_matches_the_papers_10_2m_counting_weights_only():
    # He et al. 2016 report 10.2M; that figure counts conv and fc weights. With BatchNorm's
    # scale and shift the same network has 10.33M parameters.
    model = meta_model("preact_resnet1001")
    weights = sum(
        p.numel()
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
        for p in m.parameters()
    )
    assert round(weights / 1e6, 1) == 10.2
    assert round(count_params(model) / 1e6, 2) == 10.33


def test_plain_nets_have_the_same_parameters_as_the_resnets_with_shortcut_a():
    for depth in (20, 56):
        assert count_params(meta_model(f"plain{depth}")) == count_params(
            meta_model(f"resnet{depth}")
        )


@pytest.mark.parametrize(("name", "gmacs"), [("resnet18", 1.81), ("resnet50", 4.09)])
def test_forward_macs_at_224_match_the_published_figures(name, gmacs):
    assert round(count_macs(meta_model(name), (3, 224, 224)) / 1e9, 2) == gmacs


def test_create_model_applies_overrides():
    model = rk.create_model("resnet20", num_classes=7, in_chans=1)
    assert model.fc.out_features == 7
    assert model.conv1.in_channels == 1
    assert model.spec.name == "resnet20"


def test_create_model_accepts_a_spec_and_a_spec_file(tmp_path):
    spec = rk.get_spec("resnet20")
    path = tmp_path / "my.yaml"
    spec.to_yaml(path)
    from_file = rk.create_model(rk.ResNetSpec.from_yaml(path))
    assert count_params(from_file) == count_params(rk.create_model(spec))
    assert rk.create_model(str(path)).spec == spec


def test_unknown_model_suggests_close_names():
    with pytest.raises(rk.UnknownModelError, match=r"did you mean .*resnet50"):
        rk.create_model("resnet05")


def test_register_rejects_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        rk.register("resnet20", rk.get_spec("resnet20"), "dup", "")


def small_input(spec: rk.ResNetSpec) -> torch.Tensor:
    side = max(spec.min_input_size, 8 if spec.stem == "cifar" else 33)
    return torch.randn(2, spec.in_chans, side, side)


@pytest.mark.parametrize("name", rk.list_models())
def test_every_registered_model_runs_forward_and_backward(name):
    torch.manual_seed(0)
    model = rk.create_model(name, num_classes=5)
    x = small_input(model.spec)
    out = model(x)
    assert out.shape == (2, 5)
    out.square().mean().backward()
    # Every trainable parameter gets a finite gradient; fixed BatchNorm scales
    # (norm_scale false) are the only ones allowed none.
    trained = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trained)
    fixed = [p for p in model.parameters() if not p.requires_grad]
    assert not fixed or not model.spec.norm_scale
