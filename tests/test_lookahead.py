"""Lookahead around an optimizer: slow weights every k steps, exact state for resume."""

import pytest
import torch

from resnetkit.config import ConfigError
from resnetkit.train import RunError, build_optimizer, train
from resnetkit.training.config import OptimConfig
from resnetkit.training.lookahead import Lookahead
from train_helpers import StopAfter, tiny_config


def quadratic_steps(optimizer, param, steps):
    for _ in range(steps):
        optimizer.zero_grad()
        (0.5 * (param**2).sum()).backward()  # gradient = param
        optimizer.step()


def test_k1_alpha1_is_the_inner_optimizer_unchanged():
    a, b = (
        torch.nn.Parameter(torch.tensor([4.0, -2.0])),
        torch.nn.Parameter(torch.tensor([4.0, -2.0])),
    )
    quadratic_steps(torch.optim.SGD([a], lr=0.1, momentum=0.9), a, 7)
    quadratic_steps(Lookahead(torch.optim.SGD([b], lr=0.1, momentum=0.9), 1, 1.0), b, 7)
    assert torch.equal(a, b)


def test_every_k_steps_the_weights_move_alpha_of_the_way_from_the_slow_copy():
    p = torch.nn.Parameter(torch.tensor([8.0]))
    opt = Lookahead(torch.optim.SGD([p], lr=0.5), k=2, alpha=0.25)
    quadratic_steps(opt, p, 1)
    assert p.item() == 4.0  # the inner step alone: 8 - 0.5 * 8
    quadratic_steps(opt, p, 1)
    # fast went 8 -> 4 -> 2; slow 8 moves a quarter of the way to 2: 6.5, and fast restarts there
    assert p.item() == 6.5 and opt.slow[0].item() == 6.5


def test_state_dict_round_trip_continues_exactly():
    def fresh():
        p = torch.nn.Parameter(torch.tensor([3.0, -1.0, 0.5]))
        return p, Lookahead(torch.optim.SGD([p], lr=0.1, momentum=0.9), k=3, alpha=0.5)

    p_full, full = fresh()
    quadratic_steps(full, p_full, 8)
    p_cut, cut = fresh()
    quadratic_steps(cut, p_cut, 4)
    saved = cut.state_dict()
    p_new, resumed = fresh()
    with torch.no_grad():
        p_new.copy_(p_cut)
    resumed.load_state_dict(saved)
    quadratic_steps(resumed, p_new, 4)
    assert torch.equal(p_new, p_full)


def test_a_state_saved_without_lookahead_is_refused_with_a_reason():
    p = torch.nn.Parameter(torch.zeros(2))
    plain = torch.optim.SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="without Lookahead"):
        Lookahead(torch.optim.SGD([p], lr=0.1)).load_state_dict(plain.state_dict())


def test_the_config_wraps_the_optimizer_and_the_schedule_still_sets_its_rates():
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(model, OptimConfig(lookahead_steps=5, lookahead_alpha=0.8))
    assert isinstance(optimizer, Lookahead) and optimizer.k == 5 and optimizer.alpha == 0.8
    optimizer.param_groups[0]["lr"] = 0.123
    assert optimizer.optimizer.param_groups[0]["lr"] == 0.123
    assert not isinstance(build_optimizer(model, OptimConfig()), Lookahead)


def test_training_with_lookahead_resumes_mid_epoch_exactly(tmp_path):
    changes = dict(epochs=2, checkpoint_every_steps=3, lookahead_steps=4)
    full = train(tiny_config(tmp_path / "full", **changes))
    cfg = tiny_config(tmp_path / "cut", **changes)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[StopAfter(11)])
    resumed = train(cfg, resume=tmp_path / "cut/runs/run")
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    assert resumed.history[-1]["test_acc"] == full.history[-1]["test_acc"]


def test_a_delayed_start_leaves_training_alone_then_starts_from_the_trained_weights():
    a, b = (
        torch.nn.Parameter(torch.tensor([8.0, -4.0])),
        torch.nn.Parameter(torch.tensor([8.0, -4.0])),
    )
    quadratic_steps(torch.optim.SGD([a], lr=0.5), a, 6)
    delayed = Lookahead(torch.optim.SGD([b], lr=0.5), k=2, alpha=0.5, start_step=5)
    quadratic_steps(delayed, b, 6)
    # Steps 2 and 4 come before the start: no averaging. Step 6 starts the slow copy there.
    assert torch.equal(a, b) and torch.equal(delayed.slow[0], b.detach())
    quadratic_steps(delayed, b, 2)  # step 8: the first real average, halfway to the fast weights
    assert torch.allclose(b, a.detach() * (1 + 0.25) / 2)


def test_with_a_power_the_share_falls_from_one_to_alpha_as_training_ends():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = Lookahead(torch.optim.SGD([p], lr=0.1), k=5, alpha=0.226, total_steps=100, power=3)
    assert opt.share(0) == 1.0
    assert opt.share(50) == pytest.approx(1 - 0.774 * 0.125)
    assert opt.share(100) == pytest.approx(0.226)
    assert Lookahead(torch.optim.SGD([p], lr=0.1), alpha=0.3).share(50) == 0.3


def test_a_state_saved_before_the_delayed_start_continues_exactly():
    def fresh():
        p = torch.nn.Parameter(torch.tensor([2.0, -3.0]))
        return p, Lookahead(torch.optim.SGD([p], lr=0.1, momentum=0.9), k=2, start_step=4)

    p_full, full = fresh()
    quadratic_steps(full, p_full, 9)
    p_cut, cut = fresh()
    quadratic_steps(cut, p_cut, 3)
    saved = cut.state_dict()
    assert cut.started is False
    p_new, resumed = fresh()
    with torch.no_grad():
        p_new.copy_(p_cut)
    resumed.load_state_dict(saved)
    assert resumed.started is False
    quadratic_steps(resumed, p_new, 6)
    assert resumed.started is True
    assert torch.equal(p_new, p_full)


def test_the_config_starts_lookahead_after_its_epochs():
    model = torch.nn.Linear(3, 2)
    optim = OptimConfig(
        lookahead_steps=5, lookahead_start_epochs=3, lookahead_power=3, lookahead_alpha=0.25
    )
    optimizer = build_optimizer(model, optim, steps_per_epoch=10, total_steps=100)
    assert (optimizer.start_step, optimizer.total_steps, optimizer.power) == (30, 100, 3)


TIMED = dict(lookahead_steps=2, lookahead_start_epochs=1, lookahead_power=3, lookahead_alpha=0.3)


def test_a_run_cut_before_its_delayed_lookahead_starts_resumes_exactly(tmp_path):
    # 256 images in batches of 32: 8 steps an epoch, so Lookahead starts at step 8; the cut at
    # step 5 leaves a checkpoint (step 3) saved before it started.
    changes = dict(epochs=2, checkpoint_every_steps=3, **TIMED)
    full = train(tiny_config(tmp_path / "full", **changes))
    cfg = tiny_config(tmp_path / "cut", **changes)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[StopAfter(5)])
    resumed = train(cfg, resume=tmp_path / "cut/runs/run")
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    plain = train(tiny_config(tmp_path / "plain", epochs=2))
    assert full.history[0]["train_loss"] == plain.history[0]["train_loss"]  # not started yet
    assert full.history[1]["train_loss"] != plain.history[1]["train_loss"]


def test_a_falling_share_is_laid_out_over_the_run_so_resume_cannot_extend_it(tmp_path):
    cfg = tiny_config(tmp_path, epochs=2, schedule="constant", tensorboard=False, **TIMED)
    run_dir = train(cfg).run_dir
    with pytest.raises(RunError, match="Lookahead share falls"):
        train(None, resume=run_dir, resume_changes={"epochs": 3})


@pytest.mark.parametrize(
    "fields,named",
    [
        (dict(lookahead_power=3), "lookahead_power"),
        (dict(lookahead_start_epochs=1), "lookahead_start_epochs"),
        (dict(lookahead_steps=5, lookahead_start_epochs=4, epochs=4), "lookahead_start_epochs"),
        (dict(final_lr_ratio=0.1, schedule="onecycle"), "final_lr_ratio"),
    ],
)
def test_settings_that_would_do_nothing_are_refused_by_name(fields, named):
    with pytest.raises(ConfigError, match=f"'{named}'"):
        OptimConfig(**fields)


def test_a_timed_lookahead_needs_the_runs_length():
    with pytest.raises(ValueError, match="steps_per_epoch and total_steps"):
        build_optimizer(torch.nn.Linear(3, 2), OptimConfig(lookahead_steps=5, lookahead_power=3))
