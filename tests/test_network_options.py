"""The spec's activation, fixed BatchNorm scales and scaled logits (the fast CIFAR trainers'
network), and the learning rate of BatchNorm parameters: what each builds and trains."""

import pytest
import torch
from torch import nn

import resnetkit as rk
from resnetkit.models.registry import resolve_spec
from resnetkit.spec import ResNetSpec
from resnetkit.train import build_optimizer, param_groups, set_bn_momentum, train
from resnetkit.training.callbacks import Callback
from resnetkit.training.config import TrainConfig
from resnetkit.weights.checkpoint import load_model_checkpoint
from train_helpers import tiny_config

DEEP_STEM = ResNetSpec(stages=[(1, 8, 1), (1, 16, 2)], stem="deep", stem_width=8)
MODELS = ["resnet20", "resnet9_half", "preact_resnet110", "resnet50", DEEP_STEM]


def count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(("act", "kind"), [("gelu", nn.GELU), ("silu", nn.SiLU)])
def test_the_activation_replaces_every_relu_and_keeps_the_state_dict(name, act, kind):
    spec = resolve_spec(name, num_classes=10)
    relu_model = rk.create_model(spec)
    model = rk.create_model(spec.replace(act=act))
    assert count(model, nn.ReLU) == 0
    assert count(model, kind) == count(relu_model, nn.ReLU) > 0
    assert list(model.state_dict()) == list(relu_model.state_dict())
    model.load_state_dict(relu_model.state_dict())  # the same weights fit either
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(model.eval()(x), relu_model.eval()(x))


def test_a_smooth_activation_trains_without_in_place_errors():
    model = rk.create_model(resolve_spec("resnet9_half", act="gelu", num_classes=3))
    out = model(torch.randn(4, 3, 32, 32))
    out.sum().backward()  # an in-place GELU would fail here
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_fixed_norm_scales_stay_one_while_the_shifts_train():
    spec = resolve_spec("resnet20", norm_scale=False, num_classes=3)
    model = rk.create_model(spec)
    scales = [m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert scales and not any(w.requires_grad for w in scales)
    shifts_before = [
        m.bias.detach().clone() for m in model.modules() if isinstance(m, nn.BatchNorm2d)
    ]
    optimizer = build_optimizer(model, TrainConfig(lr=0.5, norm_lr_scale=4.0))
    loss = nn.functional.cross_entropy(model(torch.randn(8, 3, 32, 32)), torch.arange(8) % 3)
    loss.backward()
    optimizer.step()
    assert all(torch.equal(w, torch.ones_like(w)) for w in scales)
    shifts = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert any(not torch.equal(a, b) for a, b in zip(shifts, shifts_before, strict=True))
    assert "weight" in dict(model.bn1.named_parameters())  # torchvision's keys are kept


def test_fixed_norm_scales_survive_a_rebuild_from_the_spec():
    spec = resolve_spec("resnet20", norm_scale=False, num_classes=3)
    rebuilt = rk.create_model(ResNetSpec.parse_json(spec.to_json()))
    assert not rebuilt.bn1.weight.requires_grad


@pytest.mark.parametrize("scale", [0.125, 2.0])
def test_logits_are_the_classifier_output_times_the_scale(scale):
    plain = rk.create_model("resnet20", num_classes=4).eval()
    scaled = rk.create_model(resolve_spec("resnet20", logit_scale=scale, num_classes=4)).eval()
    scaled.load_state_dict(plain.state_dict())
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(scaled(x), plain(x) * scale)
    scaled.reset_classifier(7)  # a new head keeps the scale
    assert scaled.logit_scale == scale and scaled.spec.logit_scale == scale


def test_defaults_are_not_written_so_older_specs_read_the_same():
    data = resolve_spec("resnet20").to_dict()
    assert not {"act", "norm_scale", "logit_scale"} & set(data)
    spec = resolve_spec("resnet20", act="gelu", norm_scale=False, logit_scale=0.125)
    assert {k: spec.to_dict()[k] for k in ("act", "norm_scale", "logit_scale")} == {
        "act": "gelu",
        "norm_scale": False,
        "logit_scale": 0.125,
    }
    assert ResNetSpec.parse_yaml(spec.to_yaml()) == spec


def test_norm_parameters_get_their_own_learning_rate_and_no_decay():
    model = rk.create_model("resnet20", num_classes=3)
    groups = param_groups(model, 5e-4, norm_lr_scale=64.0)
    norms = {
        id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()
    }
    (norm_group,) = [g for g in groups if g["lr_scale"] == 64.0]
    assert {id(p) for p in norm_group["params"]} == norms
    assert norm_group["weight_decay"] == 0.0
    everything = [id(p) for g in groups for p in g["params"]]
    assert sorted(everything) == sorted(id(p) for p in model.parameters())  # each once
    fc_bias_group = next(g for g in groups if any(p is model.fc.bias for p in g["params"]))
    assert fc_bias_group["lr_scale"] == 1.0


def test_the_training_loop_runs_norm_parameters_at_their_scaled_rate(tmp_path):
    cfg = tiny_config(tmp_path, epochs=1, max_steps=2, schedule="constant", norm_lr_scale=8.0)
    result = train(cfg)
    (state_file,) = sorted((result.run_dir / "checkpoints").glob("state-*.pt"))
    state = torch.load(state_file, weights_only=True)
    lrs = sorted({(g["lr_scale"], g["lr"]) for g in state["optimizer"]["param_groups"]})
    assert lrs == [(1.0, cfg.lr), (8.0, pytest.approx(8.0 * cfg.lr))]


def test_a_training_config_overrides_the_models_network_options(tmp_path):
    cfg = tiny_config(
        tmp_path, epochs=1, max_steps=1, act="silu", norm_scale=False, logit_scale=0.5
    )
    result = train(cfg)
    model = load_model_checkpoint(result.run_dir).model
    assert count(model, nn.SiLU) > 0 and count(model, nn.ReLU) == 0
    assert model.spec.logit_scale == 0.5 and not model.spec.norm_scale
    assert not model.bn1.weight.requires_grad
    scales = [m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(w, torch.ones_like(w)) for w in scales)  # trained, still exactly 1


def test_a_training_config_sets_every_batchnorms_momentum(tmp_path):
    class Momenta(Callback):
        def on_train_start(self, state, info):
            self.seen = {m.momentum for m in state.model.modules() if isinstance(m, nn.BatchNorm2d)}

    default, set_ = Momenta(), Momenta()
    train(tiny_config(tmp_path / "default", epochs=1, max_steps=1), callbacks=[default])
    train(tiny_config(tmp_path / "set", epochs=1, max_steps=1, bn_momentum=0.4), callbacks=[set_])
    assert default.seen == {0.1} and set_.seen == {0.4}


def test_a_momentum_of_0_4_moves_the_running_mean_40_percent_of_the_way():
    bn = nn.BatchNorm2d(2)
    set_bn_momentum(bn, 0.4)
    x = torch.randn(8, 2, 4, 4) + 5
    bn.train()(x)
    assert torch.allclose(bn.running_mean, 0.4 * x.mean((0, 2, 3)))
