"""Stages that open with conv-pool (Page 2018's ResNet-9): the spec field, the network it
builds, and how the rest of the toolkit sees it."""

import pytest
import torch
from torch import nn

import resnetkit as rk
from resnetkit.models.blocks import BasicBlock, ConvPoolEntry
from resnetkit.models.fold import fold_bn
from resnetkit.spec import ResNetSpec, SpecError
from resnetkit.summary import count_params


def conv_pool_spec(**changes) -> ResNetSpec:
    base = dict(
        stages=[(1, 8, 2), (0, 16, 2)],
        stem="cifar",
        stem_width=4,
        stage_entry="conv_pool",
        num_classes=3,
    )
    base.update(changes)
    return ResNetSpec(**base)


def test_a_stage_opens_with_conv_pool_bn_relu_then_keeps_its_width():
    model = rk.create_model(conv_pool_spec())
    entry, unit = model.layer1
    assert isinstance(entry, ConvPoolEntry) and isinstance(unit, BasicBlock)
    assert (entry.conv.in_channels, entry.conv.out_channels) == (4, 8)
    assert isinstance(entry.pool, nn.MaxPool2d)
    # The unit after the opening sees the stage's width at the stage's resolution: no stride,
    # so its shortcut is the identity.
    assert unit.conv1.stride == (1, 1) and isinstance(unit.downsample, nn.Identity)
    assert len(model.layer2) == 1 and isinstance(model.layer2[0], ConvPoolEntry)


def test_feature_maps_halve_at_each_pooled_stage():
    model = rk.create_model(conv_pool_spec()).eval()
    maps = model.features(torch.randn(2, 3, 32, 32))
    assert [tuple(m.shape[1:]) for m in maps] == [(8, 16, 16), (16, 8, 8)]
    assert [info["reduction"] for info in model.feature_info] == [2, 4]


def test_a_stride_one_stage_opens_without_pooling():
    model = rk.create_model(conv_pool_spec(stages=[(1, 8, 1)]))
    assert isinstance(model.layer1[0].pool, nn.Identity)


def test_resnet9_is_pages_network():
    # Page 2018: prep 64, then conv-pool to 128 (+ one residual unit), to 256, to 512 (+ one
    # unit), global pool, a 10-way classifier: 9 weighted layers, 6.57M parameters.
    spec = rk.get_spec("resnet9")
    assert spec.depth == 9
    assert [(s.blocks, s.width) for s in spec.stages] == [(1, 128), (0, 256), (1, 512)]
    convs = [(64, 3), (128, 64), (128, 128), (128, 128), (256, 128), (512, 256)]
    convs += [(512, 512), (512, 512)]
    bn_channels = 64 + 128 * 3 + 256 + 512 * 3
    expected = sum(o * i * 9 for o, i in convs) + 2 * bn_channels + 512 * 10 + 10
    assert count_params(rk.create_model("resnet9")) == expected
    assert round(expected / 1e6, 2) == 6.57


def test_resnet9_half_has_a_quarter_of_the_macs():
    full = rk.summary(rk.create_model("resnet9"), input_size=(3, 32, 32))
    half = rk.summary(rk.create_model("resnet9_half"), input_size=(3, 32, 32))
    assert half.total_macs * 4 == pytest.approx(full.total_macs, rel=0.02)


def test_resnet9_quarter_is_the_same_table_at_a_quarter_of_the_width():
    full, quarter = rk.get_spec("resnet9"), rk.get_spec("resnet9_quarter")
    assert quarter.stem_width * 4 == full.stem_width
    assert [(s.blocks, s.width * 4, s.stride) for s in quarter.stages] == [
        (s.blocks, s.width, s.stride) for s in full.stages
    ]
    # 28x28 grayscale (Fashion-MNIST) passes: 28 -> 14 -> 7 -> 3 after the three pools.
    model = rk.create_model("resnet9_quarter", in_chans=1).eval()
    assert model.forward_features(torch.randn(2, 1, 28, 28)).shape == (2, 128, 3, 3)


def test_the_smallest_input_passes_every_pool_and_one_pixel_less_is_refused():
    spec = conv_pool_spec(stages=[(1, 8, 2), (0, 16, 2), (0, 16, 2)])
    model = rk.create_model(spec).eval()
    assert spec.min_input_size == 8
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 3)
    with pytest.raises(ValueError, match="smaller than this network accepts"):
        model(torch.randn(1, 3, 7, 7))


def test_folding_keeps_the_opening_bn_and_the_outputs():
    torch.manual_seed(0)
    model = rk.create_model(conv_pool_spec())
    # Negative BN scales are where folding across a max-pool would go wrong; give some.
    with torch.no_grad():
        model.layer1[0].bn.weight.uniform_(-1.0, 1.0)
        model.layer1[0].bn.running_mean.uniform_(-0.5, 0.5)
    model.eval()
    folded = fold_bn(model)
    assert isinstance(folded.layer1[0].bn, nn.BatchNorm2d)
    assert isinstance(folded.layer1[1].bn1, nn.Identity)
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)


def test_zero_init_residual_starts_the_units_at_zero_and_leaves_the_opening_alone():
    model = rk.create_model(conv_pool_spec(zero_init_residual=True))
    assert torch.count_nonzero(model.layer1[1].bn2.weight) == 0
    assert torch.all(model.layer1[0].bn.weight == 1)


def test_stage_entry_is_written_only_when_not_the_default():
    assert "stage_entry" not in rk.get_spec("resnet20").to_dict()
    spec = conv_pool_spec()
    assert spec.to_dict()["stage_entry"] == "conv_pool"
    assert ResNetSpec.parse_yaml(spec.to_yaml()) == spec


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(stage_entry="pool"), "'stage_entry': got 'pool'; allowed values: unit, conv_pool"),
        (dict(stage_entry="unit"), r"'stages\[1\].blocks': got 0"),
        (dict(preact=True), "'preact'.*conv_pool"),
        (dict(block="bottleneck"), "'block'.*conv_pool"),
    ],
)
def test_conv_pool_specs_that_cannot_be_built_name_the_field(changes, message):
    with pytest.raises(SpecError, match=message):
        conv_pool_spec(**changes)


def test_conv_pool_stages_may_narrow_even_with_shortcut_a():
    # Shortcut A cannot drop channels between units; here the opening conv changes the width
    # and every unit keeps it, so A is as good as the identity.
    spec = conv_pool_spec(stages=[(1, 16, 2), (1, 8, 2)], shortcut="A")
    assert rk.create_model(spec)(torch.randn(1, 3, 8, 8)).shape == (1, 3)
