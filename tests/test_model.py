"""The model API: features, head, classifier swap, input checks, init, export."""

import pytest
import torch
from torch import nn

import resnetkit as rk
from resnetkit.blocks import ShortcutA


def test_stage_outputs_have_the_channels_and_reductions_of_feature_info():
    model = rk.create_model("resnet50").eval()
    feats = model.features(torch.randn(2, 3, 64, 64))
    assert len(feats) == 4
    for feat, info in zip(feats, model.feature_info, strict=True):
        assert feat.shape == (2, info["num_chs"], 64 // info["reduction"], 64 // info["reduction"])
    assert [i["reduction"] for i in model.feature_info] == [4, 8, 16, 32]
    assert [i["num_chs"] for i in model.feature_info] == [256, 512, 1024, 2048]


def test_cifar_resnet_stages_are_16_32_64_at_strides_1_2_4():
    model = rk.create_model("resnet20").eval()
    shapes = [tuple(f.shape) for f in model.features(torch.randn(1, 3, 32, 32))]
    assert shapes == [(1, 16, 32, 32), (1, 32, 16, 16), (1, 64, 8, 8)]


@pytest.mark.parametrize("name", ["resnet20", "preact_resnet110"])
def test_last_feature_equals_forward_features_and_head_gives_logits(name):
    model = rk.create_model(name).eval()
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(model.features(x)[-1], model.forward_features(x))
    torch.testing.assert_close(model.forward_head(model.forward_features(x)), model(x))
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (
        3,
        model.num_features,
    )


def test_head_flattens_per_sample_so_each_logit_depends_on_its_own_image_only():
    model = rk.create_model("resnet20").eval()
    x = torch.randn(4, 3, 32, 32)
    together = model(x)
    alone = torch.cat([model(x[i : i + 1]) for i in range(4)])
    assert together.shape == (4, 10)
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_reset_classifier_keeps_the_backbone():
    model = rk.create_model("resnet18")
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    model.reset_classifier(10)
    assert model.fc.out_features == 10 and model.num_classes == 10
    after = model.state_dict()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 512)


def test_input_smaller_than_the_network_accepts_is_rejected_clearly():
    model = rk.create_model("resnet50")
    assert model.min_input_size == 17
    model(torch.randn(1, 3, 17, 17).expand(2, -1, -1, -1))
    with pytest.raises(ValueError, match="smaller than this network accepts: at least 17x17"):
        model(torch.randn(2, 3, 16, 16))


def test_wrong_channels_and_missing_batch_dimension_are_rejected_clearly():
    model = rk.create_model("resnet20")
    with pytest.raises(ValueError, match="expected 3 input channels, got 1"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="4-D batch"):
        model(torch.randn(3, 32, 32))


def test_convolutions_use_he_init_and_batchnorm_starts_at_identity():
    torch.manual_seed(0)
    model = rk.create_model("resnet50")
    conv = model.layer3[1].conv2  # 3x3, 256 -> 256
    fan_out = conv.out_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_zero_init_residual_makes_every_v1_unit_start_as_relu_of_its_shortcut():
    model = rk.create_model("resnet18", zero_init_residual=True).eval()
    block = model.layer2[1]
    x = torch.randn(2, 128, 8, 8)
    torch.testing.assert_close(block(x), torch.relu(x))
    assert torch.all(model.layer1[0].bn2.weight == 0)


def test_zero_init_residual_makes_every_v2_identity_unit_an_identity():
    model = rk.create_model("preact_resnet110", zero_init_residual=True).eval()
    x = torch.randn(2, 32, 8, 8)
    torch.testing.assert_close(model.layer2[3](x), x)


def test_shortcut_a_models_have_parameter_free_shortcuts_and_plain_models_have_none():
    resnet = rk.create_model("resnet20")
    shortcuts = [m for m in resnet.modules() if isinstance(m, ShortcutA)]
    assert len(shortcuts) == 2
    assert all(sum(p.numel() for p in s.parameters()) == 0 for s in shortcuts)
    plain = rk.create_model("plain20")
    assert all(unit.downsample is None for stage in plain.stages() for unit in stage)


def test_shortcut_c_projects_in_every_block_and_b_only_where_the_shape_changes():
    b = rk.create_model("resnet18")
    c = rk.create_model("resnet18", shortcut="C")
    units_b = [u for s in b.stages() for u in s]
    units_c = [u for s in c.stages() for u in s]
    assert sum(isinstance(u.downsample, nn.Sequential) for u in units_b) == 3
    assert all(isinstance(u.downsample, nn.Sequential) for u in units_c)


def test_v2_model_has_a_final_bn_relu_and_v1_does_not():
    assert isinstance(rk.create_model("preact_resnet18").final_bn, nn.BatchNorm2d)
    assert rk.create_model("resnet18").final_bn is None
    # a v2 CIFAR stem is a bare conv: the first unit activates it
    v2 = rk.create_model("preact_resnet164")
    assert v2.bn1 is None and v2.layer1[0].preact_mode == "shared"


def test_deep_stem_is_three_3x3_convs():
    model = rk.create_model("resnet50", stem="deep", stem_width=64)
    convs = [m for m in model.conv1 if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 3
    assert [c.stride for c in convs] == [(2, 2), (1, 1), (1, 1)]
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1000)


def test_dropout_before_the_classifier():
    model = rk.create_model("resnet20", drop_rate=0.5)
    assert isinstance(model.dropout, nn.Dropout) and model.dropout.p == 0.5
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), model(x))


@pytest.mark.parametrize("name", ["resnet20", "preact_resnet164", "resnet50"])
def test_drop_path_changes_neither_parameters_nor_state_dict_names(name):
    plain = rk.create_model(name)
    dropping = rk.create_model(name, drop_path_rate=0.2)
    shapes = {k: v.shape for k, v in plain.state_dict().items()}
    assert {k: v.shape for k, v in dropping.state_dict().items()} == shapes
    assert [n for n, _ in dropping.named_modules()] == [n for n, _ in plain.named_modules()]


def test_drop_path_rate_rises_over_the_units_of_the_whole_network():
    model = rk.create_model("resnet20", drop_path_rate=0.1)  # 9 units in three stages
    rates = [unit.drop_path_rate for stage in model.stages() for unit in stage]
    assert rates == pytest.approx([0.1 * i / 8 for i in range(9)])


def test_drop_path_leaves_evaluation_deterministic_and_training_stochastic():
    model = rk.create_model("resnet20", drop_path_rate=0.5, num_classes=3)
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    first = model(x)
    torch.manual_seed(1)
    assert not torch.allclose(first, model(x))


def test_channels_last_gives_the_same_logits():
    model = rk.create_model("resnet18").eval()
    x = torch.randn(2, 3, 64, 64)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["resnet20", "preact_resnet110", "resnet50"])
def test_torch_export_with_a_dynamic_batch_matches_eager(name):
    model = rk.create_model(name, num_classes=4).eval()
    side = 32 if model.spec.stem == "cifar" else 64
    x = torch.randn(2, 3, side, side)
    batch = torch.export.Dim("batch", min=1, max=64)
    exported = torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}})
    bigger = torch.randn(5, 3, side, side)
    torch.testing.assert_close(exported.module()(bigger), model(bigger), rtol=1e-4, atol=1e-5)
