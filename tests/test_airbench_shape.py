"""The pieces of airbench's network shape as spec fields: the 2x2 patch stem, the global
max-pool, Dirac-initialised convs, and the registered resnet9_airbench built from them."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import resnetkit as rk
from resnetkit.spec import ResNetSpec, SpecError
from resnetkit.summary import count_params


def patch_spec(**changes) -> ResNetSpec:
    base = dict(
        stages=[(1, 8, 2), (0, 16, 2)],
        stem="patch",
        stem_width=12,
        stage_entry="conv_pool",
        num_classes=3,
    )
    base.update(changes)
    return ResNetSpec(**base)


def test_the_patch_stem_is_a_2x2_conv_with_bias_and_an_activation_but_no_norm():
    model = rk.create_model(patch_spec(act="gelu"))
    conv = model.conv1
    assert conv.kernel_size == (2, 2) and conv.padding == (0, 0) and conv.bias is not None
    assert model.bn1 is None and isinstance(model.relu, nn.GELU)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model.forward_stem(x), F.gelu(conv(x)))
    # It loses a pixel per side: 32 -> 31, then the 2x2 pools floor: 15, 7.
    assert [tuple(m.shape[2:]) for m in model.eval().features(x)] == [(15, 15), (7, 7)]


def test_the_patch_stem_needs_a_pixel_more_than_the_pools_and_says_so():
    model = rk.create_model(patch_spec()).eval()
    assert model.min_input_size == 5
    model(torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match="at least 5x5"):
        model(torch.randn(1, 3, 4, 4))


def test_the_patch_stem_has_nothing_to_fold_and_keeps_its_bias_in_the_state_dict():
    model = rk.create_model(patch_spec())
    assert model.fold_pairs() == ()
    assert "conv1.bias" in model.state_dict() and "bn1.weight" not in model.state_dict()


def test_a_v2_network_with_a_patch_stem_is_refused():
    with pytest.raises(SpecError, match=r"'stem'.*preact false"):
        ResNetSpec(stages=[(1, 8, 1)], stem="patch", preact=True, stem_width=12)


@pytest.mark.parametrize("field,value", [("global_pool", "mean"), ("conv_init", "xavier")])
def test_unknown_pooling_and_init_names_are_refused(field, value):
    with pytest.raises(SpecError, match=f"'{field}'"):
        patch_spec(**{field: value})


def test_a_max_pooled_head_takes_each_channels_largest_value():
    model = rk.create_model(patch_spec(global_pool="max")).eval()
    features = torch.randn(2, 16, 7, 7)
    pooled = model.forward_head(features, pre_logits=True)
    assert torch.equal(pooled, features.amax(dim=(2, 3)))
    average = rk.create_model(patch_spec()).eval()
    assert torch.allclose(average.forward_head(features, pre_logits=True), features.mean((2, 3)))


def test_dirac_init_makes_each_3x3_conv_pass_its_first_channels_through():
    torch.manual_seed(0)
    model = rk.create_model(patch_spec(conv_init="dirac"))
    entry_conv = model.layer1[0].conv  # 12 -> 8 channels: its 8 filters copy channels 0..7
    unit_conv = model.layer1[1].conv1  # 8 -> 8: every filter copies its own channel
    widen = model.layer2[0].conv  # 8 -> 16: the first 8 copy, the rest keep He's init
    x = torch.randn(2, 12, 9, 9)
    assert torch.allclose(entry_conv(x), x[:, :8])
    y = torch.randn(2, 8, 9, 9)
    assert torch.allclose(unit_conv(y), y)
    out = widen(y)
    assert torch.allclose(out[:, :8], y) and not torch.allclose(out[:, 8:], torch.zeros(1))
    # Without it, the same conv is He's random init, no identity.
    plain = rk.create_model(patch_spec())
    assert not torch.allclose(plain.layer1[1].conv1(y), y)


def test_defaults_are_not_written_and_the_new_fields_round_trip():
    assert "global_pool" not in patch_spec().to_dict()
    assert "conv_init" not in patch_spec().to_dict()
    spec = patch_spec(global_pool="max", conv_init="dirac")
    assert ResNetSpec.parse_yaml(spec.to_yaml()) == spec


def test_resnet9_airbench_is_resnet9s_table_in_airbench_shape():
    spec = rk.get_spec("resnet9_airbench")
    assert spec.depth == 9 and spec.stem == "patch" and spec.stem_width == 2 * 3 * 2 * 2
    assert [(s.blocks, s.width) for s in spec.stages] == [(1, 64), (0, 256), (1, 256)]
    assert (spec.act, spec.norm_scale, spec.global_pool) == ("gelu", False, "max")
    assert spec.logit_scale == pytest.approx(1 / 9)
    # Parameters: the stem conv (with bias), 3x3 convs without bias, two per BatchNorm channel,
    # the classifier with bias.
    convs = [(64, 24), (64, 64), (64, 64), (256, 64), (256, 256), (256, 256), (256, 256)]
    bn_channels = 64 * 3 + 256 + 256 * 3
    expected = 24 * 3 * 4 + 24 + sum(o * i * 9 for o, i in convs) + 2 * bn_channels
    assert count_params(rk.create_model("resnet9_airbench")) == expected + 256 * 10 + 10
    assert rk.create_model("resnet9_airbench").pretrained_cfg["crop_pct"] == 1.0
