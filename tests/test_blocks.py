"""Residual units compute exactly the formulas of the two papers."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import resnetkit as rk
from resnetkit.blocks import (
    BLOCK_TYPES,
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
    ShortcutA,
    block_class,
    drop_path,
    drop_path_rates,
    make_block,
    make_shortcut,
)


def randomise_bn(module: nn.Module) -> None:
    """Give every BN non-trivial statistics so a wrong order changes the output."""
    generator = torch.Generator().manual_seed(0)
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            c = bn.num_features
            bn.weight.data = torch.rand(c, generator=generator) + 0.5
            bn.bias.data = torch.randn(c, generator=generator)
            bn.running_mean = torch.randn(c, generator=generator)
            bn.running_var = torch.rand(c, generator=generator) + 0.5


def call_order(module: nn.Module, x: torch.Tensor) -> list[str]:
    order = []
    for name, child in module.named_modules():
        if name and next(child.children(), None) is None and not isinstance(child, nn.Identity):
            child.register_forward_hook(lambda m, i, o, name=name: order.append(name))
    module(x)
    return order


def test_v1_basic_block_adds_the_identity_before_the_final_relu():
    block = BasicBlock(8, 8, 1, "B").eval()
    randomise_bn(block)
    x = torch.randn(2, 8, 6, 6)
    branch = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
    torch.testing.assert_close(block(x), F.relu(branch + x))


def test_v1_projection_shortcut_is_conv1x1_then_batchnorm_without_relu():
    block = BasicBlock(8, 16, 2, "B").eval()
    randomise_bn(block)
    conv, bn = block.downsample
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (2, 2)
    assert isinstance(bn, nn.BatchNorm2d)
    x = torch.randn(2, 8, 6, 6)
    branch = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
    torch.testing.assert_close(block(x), F.relu(branch + bn(conv(x))))


def test_v1_bottleneck_expands_by_four_and_puts_the_stride_on_the_3x3():
    block = Bottleneck(64, 32, 2, "B").eval()
    randomise_bn(block)
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    x = torch.randn(2, 64, 8, 8)
    out = F.relu(block.bn1(block.conv1(x)))
    out = F.relu(block.bn2(block.conv2(out)))
    out = block.bn3(block.conv3(out))
    expected = F.relu(out + block.downsample(x))
    assert block(x).shape == (2, 128, 4, 4)
    torch.testing.assert_close(block(x), expected)


def test_v2_basic_block_is_bn_relu_conv_with_a_clean_identity_addition():
    block = PreActBasicBlock(8, 8, 1, "B").eval()
    randomise_bn(block)
    assert call_order(block, torch.randn(1, 8, 4, 4)) == [
        "bn1",
        "relu",
        "conv1",
        "bn2",
        "relu",
        "conv2",
    ]
    x = torch.randn(2, 8, 6, 6)
    branch = block.conv2(F.relu(block.bn2(block.conv1(F.relu(block.bn1(x))))))
    out = block(x)
    torch.testing.assert_close(out, branch + x)
    assert (out < 0).any(), "a v2 unit has no ReLU after the addition"


def test_v2_bottleneck_order():
    block = PreActBottleneck(16, 4, 1, "B").eval()
    order = call_order(block, torch.randn(1, 16, 4, 4))
    assert [n for n in order if n != "relu"] == ["bn1", "conv1", "bn2", "conv2", "bn3", "conv3"]


def test_v2_unit_that_changes_shape_activates_before_splitting():
    block = make_block("basic", True, 8, 16, 2, "B", 1, 16)
    assert block.preact_mode == "shared"
    block.eval()
    randomise_bn(block)
    x = torch.randn(2, 8, 6, 6)
    activated = F.relu(block.bn1(x))
    branch = block.conv2(F.relu(block.bn2(block.conv1(activated))))
    torch.testing.assert_close(block(x), branch + block.downsample(activated))
    assert len(block.downsample) == 1, "the v2 projection is a bare conv (no BN)"


def test_v2_first_unit_after_a_bn_relu_stem_does_not_activate_again():
    block = make_block("bottleneck", True, 64, 64, 1, "B", 1, 64, first_unit=True)
    assert block.preact_mode == "none" and block.bn1 is None


def test_v2_first_unit_after_a_bare_conv_stem_activates_before_splitting():
    block = make_block("basic", True, 16, 16, 1, "B", 1, 16, first_unit=True, stem_activates=False)
    assert block.preact_mode == "shared"


def test_shortcut_a_has_no_parameters_and_zero_pads_subsampled_input():
    shortcut = ShortcutA(4, 8, 2)
    assert sum(p.numel() for p in shortcut.parameters()) == 0
    x = torch.randn(2, 4, 6, 6)
    out = shortcut(x)
    assert out.shape == (2, 8, 3, 3)
    torch.testing.assert_close(out[:, :4], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, 4:]) == 0


def test_shortcut_kinds():
    assert make_shortcut("none", 8, 8, 1, False) is None
    assert isinstance(make_shortcut("A", 8, 8, 1, False), nn.Identity)
    assert isinstance(make_shortcut("B", 8, 8, 1, False), nn.Identity)
    assert isinstance(make_shortcut("B", 8, 16, 1, False), nn.Sequential)
    assert isinstance(make_shortcut("C", 8, 8, 1, False), nn.Sequential)


@pytest.mark.parametrize("cls", [BasicBlock, PreActBasicBlock])
def test_plain_unit_has_no_shortcut_so_a_zero_branch_outputs_zero(cls):
    block = cls(8, 8, 1, "none").eval()
    assert block.downsample is None
    nn.init.zeros_(block.conv2.weight)
    assert torch.count_nonzero(block(torch.randn(2, 8, 6, 6))) == 0


@pytest.mark.parametrize(
    "block", [BasicBlock(8, 16, 2, "B"), Bottleneck(16, 8, 2, "C"), PreActBasicBlock(8, 16, 2, "B")]
)
def test_convs_feeding_batchnorm_have_no_bias(block):
    assert all(m.bias is None for m in block.modules() if isinstance(m, nn.Conv2d))


# -- what each unit declares about itself --------------------------------------------------------


@pytest.mark.parametrize("block", sorted(BLOCK_TYPES))
@pytest.mark.parametrize("preact", [False, True])
def test_a_units_output_has_width_times_its_declared_expansion_channels(block, preact):
    cls = block_class(block, preact)
    unit = make_block(block, preact, 16, 8, 2, "B", 1, 0)
    assert type(unit) is cls
    assert unit(torch.randn(1, 16, 8, 8)).shape[1] == 8 * cls.expansion
    # The spec asks the unit class; it keeps no table of its own.
    spec = rk.ResNetSpec(stages=[(1, 8, 1)], block=block, preact=preact, stem_width=16)
    assert spec.expansion == cls.expansion and spec.num_features == 8 * cls.expansion


def test_bottlenecks_expand_by_four_and_basic_units_by_one():
    assert [block_class("basic", v).expansion for v in (False, True)] == [1, 1]
    assert [block_class("bottleneck", v).expansion for v in (False, True)] == [4, 4]


# name: (unit, input channels)
FOLD_UNITS = {
    "v1 basic, identity": (lambda: BasicBlock(8, 8, 1, "B"), 8),
    "v1 basic, projection": (lambda: BasicBlock(8, 16, 2, "B"), 8),
    "v1 basic, shortcut A": (lambda: BasicBlock(8, 16, 2, "A"), 8),
    "v1 bottleneck, projection": (lambda: Bottleneck(8, 4, 2, "C", groups=2, inner=8), 8),
    "v2 basic, projection": (lambda: PreActBasicBlock(8, 16, 2, "B", preact_mode="shared"), 8),
    "v2 bottleneck": (lambda: PreActBottleneck(16, 4, 1, "B"), 16),
}


@pytest.mark.parametrize("case", list(FOLD_UNITS))
def test_each_declared_fold_pair_is_a_conv_whose_output_only_feeds_its_bn(case):
    make, in_ch = FOLD_UNITS[case]
    unit = make().eval()
    seen_in, seen_out = {}, {}

    def record(module, inputs, output, name):
        seen_in[name], seen_out[name] = inputs[0], output

    for name, module in unit.named_modules():
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
            module.register_forward_hook(lambda m, i, o, name=name: record(m, i, o, name))
    unit(torch.randn(2, in_ch, 8, 8))
    pairs = unit.fold_pairs()
    assert pairs
    for conv, bn in pairs:
        assert isinstance(unit.get_submodule(conv), nn.Conv2d)
        assert isinstance(unit.get_submodule(bn), nn.BatchNorm2d)
        assert seen_in[bn] is seen_out[conv], (conv, bn)  # the BN reads the conv's output as is


def test_only_a_v1_projection_shortcut_declares_a_pair():
    assert ("downsample.0", "downsample.1") in BasicBlock(8, 16, 2, "B").fold_pairs()
    assert ("downsample.0", "downsample.1") not in BasicBlock(8, 8, 1, "B").fold_pairs()
    assert ("downsample.0", "downsample.1") not in BasicBlock(8, 16, 2, "A").fold_pairs()
    assert PreActBasicBlock(8, 16, 2, "B").fold_pairs() == (("conv1", "bn2"),)


def test_drop_path_is_the_identity_in_eval_and_at_rate_zero():
    x = torch.randn(8, 4, 3, 3)
    assert drop_path(x, 0.0, training=True) is x
    assert drop_path(x, 0.5, training=False) is x


def test_drop_path_zeroes_whole_samples_at_the_rate_and_rescales_the_survivors():
    torch.manual_seed(0)
    out = drop_path(torch.ones(20_000, 2, 3, 3), 0.3, training=True)
    per_sample = out.flatten(1)
    dropped = (per_sample == 0).all(1)
    kept = (per_sample == 1 / 0.7).all(1)
    assert bool((dropped | kept).all()), "a sample is dropped or kept whole"
    assert abs(dropped.float().mean().item() - 0.3) < 0.02  # 6 standard deviations
    assert abs(out.mean().item() - 1.0) < 0.03  # the expectation is unchanged


@pytest.mark.parametrize("cls", [BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck])
def test_a_unit_with_drop_path_equals_the_unit_without_it_in_eval(cls):
    plain = cls(16, 4 if cls.expansion == 4 else 16, 1, "B").eval()
    randomise_bn(plain)
    dropping = cls(16, plain.conv1.out_channels, 1, "B", drop_path_rate=0.9).eval()
    dropping.load_state_dict(plain.state_dict())
    x = torch.randn(4, 16, 5, 5)
    torch.testing.assert_close(dropping(x), plain(x))


@pytest.mark.parametrize(
    ("cls", "skipped"),
    [
        (BasicBlock, F.relu),
        (Bottleneck, F.relu),
        (PreActBasicBlock, None),
        (PreActBottleneck, None),
    ],
)
def test_in_training_a_dropped_unit_passes_only_its_shortcut(cls, skipped):
    torch.manual_seed(0)
    block = cls(16, 4 if cls.expansion == 4 else 16, 1, "B", drop_path_rate=0.5).train()
    x = torch.randn(400, 16, 2, 2)
    shortcut_only = skipped(x) if skipped else x  # v1 ends in a ReLU, v2 adds the identity only
    with torch.no_grad():
        out = block(x)
    dropped = (out == shortcut_only).flatten(1).all(1).float().mean().item()
    assert 0.4 < dropped < 0.6  # binomial(400, 0.5): 4 standard deviations either side


def test_drop_path_rates_rise_linearly_from_zero_to_the_rate_at_the_last_unit():
    assert drop_path_rates(0.2, 5) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert drop_path_rates(0.2, 1) == [0.0]
    assert drop_path_rates(0.0, 3) == [0.0, 0.0, 0.0]
