"""features_only backbones: timm's numbering (0 = stem activation, 1.. = stages), the maps the
full model computes, and a feature_info that sizes a neck without running the network."""

import pytest
import torch

import resnetkit as rk


def test_resnet50_features_match_timms_channels_and_reductions():
    model = rk.create_model("resnet50", features_only=True, out_indices=(0, 1, 2, 3, 4))
    outputs = model(torch.randn(1, 3, 64, 64))
    assert model.feature_info.channels() == [64, 256, 512, 1024, 2048]
    assert model.feature_info.reduction() == [2, 4, 8, 16, 32]
    assert [o.shape[1] for o in outputs] == model.feature_info.channels()
    assert [64 // o.shape[-1] for o in outputs] == model.feature_info.reduction()


@pytest.mark.parametrize("name", ["resnet20", "preact_resnet18", "resnext50_32x4d"])
def test_stage_maps_equal_the_full_models_features(name):
    torch.manual_seed(0)
    full = rk.create_model(name).eval()
    backbone = rk.create_model(name, features_only=True).eval()
    backbone.body.load_state_dict(full.state_dict(), strict=False)
    x = torch.randn(2, 3, 64, 64)
    for ours, theirs in zip(backbone(x), full.features(x), strict=True):
        torch.testing.assert_close(ours, theirs)
    assert backbone.feature_info.module_name() == full.stage_names


def test_chosen_and_negative_indices_keep_the_callers_order():
    model = rk.create_model("resnet18", features_only=True, out_indices=(-1, 2))
    outputs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outputs] == [512, 128]
    assert model.out_indices == (4, 2)


def test_the_classifier_is_dropped():
    model = rk.create_model("resnet18", features_only=True)
    assert not any("fc." in name for name, _ in model.named_parameters())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"features_only": True, "out_indices": (4,)}, "0 is the stem, 1..3 the stages"),
        ({"out_indices": (1,)}, "needs features_only=True"),
    ],
)
def test_impossible_requests_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rk.create_model("resnet20", **kwargs)


def test_bundled_weights_load_into_a_backbone():
    backbone = rk.create_model("resnet20.fashion_mnist", features_only=True, out_indices=(3,))
    full = rk.create_model("resnet20.fashion_mnist").eval()
    x = torch.randn(1, 1, 28, 28)
    torch.testing.assert_close(backbone.eval()(x)[0], full.forward_features(x))
