"""The exponential moving average of the weights: its arithmetic, and that training evaluates,
ships and resumes it."""

import pytest
import torch
from torch import nn

from resnetkit.checkpoint import load_model_checkpoint
from resnetkit.ema import WeightEma
from resnetkit.train import train
from train_helpers import StopAfter, tiny_config


def test_an_update_moves_each_weight_by_one_minus_the_decay():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = WeightEma(model, decay=0.9)
    ema.updates = 1000  # past the warm-up, so the decay is the configured one
    before = [p.clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model[1].running_mean.fill_(2.0)
    ema.update(model, step=1)
    for old, new in zip(before, ema.module.parameters(), strict=True):
        torch.testing.assert_close(new, old + 0.1)
    torch.testing.assert_close(ema.module[1].running_mean, torch.full((2,), 0.2))


def test_early_updates_use_a_smaller_decay_so_the_start_does_not_dominate():
    ema = WeightEma(nn.Linear(2, 2), decay=0.999)
    assert ema.effective_decay() == pytest.approx(0.1)
    ema.updates = 90
    assert ema.effective_decay() == pytest.approx(0.91)


def test_updates_happen_every_n_steps_with_the_compounded_decay():
    ema = WeightEma(nn.Linear(2, 2), decay=0.99, every=4)
    ema.updates = 10_000
    assert ema.effective_decay() == pytest.approx(0.99**4)
    model = nn.Linear(2, 2)
    ema.update(model, step=3)
    assert ema.updates == 10_000
    ema.update(model, step=4)
    assert ema.updates == 10_001


def test_ema_gradients_are_off_and_the_average_is_in_eval_mode():
    ema = WeightEma(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), decay=0.9)
    assert not ema.module.training
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_the_shipped_weights_are_the_average_not_the_last_step(tmp_path):
    plain = train(tiny_config(tmp_path / "plain", epochs=1))
    averaged = train(tiny_config(tmp_path / "ema", epochs=1, ema_decay=0.9))
    a = load_model_checkpoint(plain.run_dir / "checkpoints/last.safetensors")
    b = load_model_checkpoint(averaged.run_dir / "checkpoints/last.safetensors")
    assert b.metadata["weights"].startswith("ema")
    assert a.metadata["weights"] == "trained"
    differs = [not torch.equal(a.model.state_dict()[k], v) for k, v in b.model.state_dict().items()]
    assert any(differs)  # same seed and data: only the averaging tells them apart


def test_resume_with_ema_equals_an_uninterrupted_run(tmp_path):
    from test_train import without_times

    changes = dict(epochs=2, checkpoint_every_steps=3, ema_decay=0.8)
    full = train(tiny_config(tmp_path / "full", **changes))
    cfg = tiny_config(tmp_path / "cut", **changes)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[StopAfter(11)])
    resumed = train(cfg, resume=tmp_path / "cut/runs/run")
    assert without_times(resumed.history) == without_times(full.history)
    a = load_model_checkpoint(full.run_dir / "checkpoints/last.safetensors").model.state_dict()
    b = load_model_checkpoint(resumed.run_dir / "checkpoints/last.safetensors").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
