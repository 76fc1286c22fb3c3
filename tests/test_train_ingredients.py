"""The loop's optional training ingredients: stochastic depth, gradient clipping, gradient
accumulation, mixup/cutmix and the raw weights kept beside their average. Each is off by
default; the tests in test_train.py check that the loop is unchanged then."""

import csv
import types

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from resnetkit import train as train_module
from resnetkit.checkpoint import list_states, load_model_checkpoint
from resnetkit.config import ConfigError, OptimConfig
from resnetkit.data.mixing import smooth_one_hot
from resnetkit.train import RunError, train
from resnetkit.training.callbacks import Callback
from resnetkit.training.state import TrainState
from train_helpers import StopAfter, tiny_config

TIME_FIELDS = {"images_per_s", "epoch_time", "elapsed"}


def without_times(history):
    return [{k: v for k, v in row.items() if k not in TIME_FIELDS} for row in history]


def test_drop_path_rate_reaches_the_model_and_is_recorded_in_config_yaml(tmp_path):
    result = train(tiny_config(tmp_path, epochs=1, drop_path_rate=0.2, tensorboard=False))
    assert "drop_path_rate: 0.2" in (result.run_dir / "config.yaml").read_text()
    loaded = load_model_checkpoint(result.run_dir / "checkpoints/last.safetensors")
    assert loaded.model.spec.drop_path_rate == 0.2
    rates = [m.drop_path_rate for m in loaded.model.modules() if hasattr(m, "drop_path_rate")]
    assert rates and max(rates) == pytest.approx(0.2)


def test_drop_path_rate_on_a_plain_network_is_refused_in_one_line(tmp_path):
    cfg = tiny_config(tmp_path, model="plain20", drop_path_rate=0.1, tensorboard=False)
    with pytest.raises(ConfigError, match=r"'drop_path_rate'.*plain network") as info:
        train(cfg)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "runs" / "run").exists()


class GradNorms(Callback):
    """Records, after each optimizer step, the norm the metrics report and the gradients' own."""

    def __init__(self):
        self.reported, self.after = [], []

    def on_step_end(self, state, metrics):
        grads = [p.grad for p in state.model.parameters() if p.grad is not None]
        self.after.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        self.reported.append(metrics.grad_norm if metrics is not None else None)


def test_clipping_bounds_the_gradient_norm_and_reports_the_norm_before_it(tmp_path):
    norms = GradNorms()
    cfg = tiny_config(tmp_path, epochs=1, clip_grad_norm=0.01, tensorboard=False)
    train(cfg, callbacks=[norms])
    assert len(norms.after) == 8
    assert all(after <= 0.01 * (1 + 1e-4) for after in norms.after)
    assert all(before is not None and before > 0.01 for before in norms.reported)


def test_without_clipping_no_gradient_norm_is_measured(tmp_path):
    norms = GradNorms()
    train(tiny_config(tmp_path, epochs=1, tensorboard=False), callbacks=[norms])
    assert norms.reported == [None] * 8 and max(norms.after) > 0.01


def test_the_metrics_log_writes_the_gradient_norm_of_logging_steps_to_tensorboard(tmp_path):
    from resnetkit.training.callbacks import StepMetrics
    from resnetkit.training.metrics import MetricsLog

    scalars = []

    class Writer:
        def add_scalar(self, tag, value, step):
            scalars.append((tag, value, step))

    log = MetricsLog(tmp_path, tensorboard=False)
    log.writer = Writer()
    log.on_step_end(None, StepMetrics(20, 0, 20, 50, 1.0, 0.5, 100.0, grad_norm=3.5))
    log.on_step_end(None, None)  # not a logging step
    log.on_step_end(None, StepMetrics(40, 0, 40, 50, 1.0, 0.5, 100.0))  # clipping off
    assert scalars == [("train/grad_norm", 3.5, 20)]


# -- gradient accumulation ----------------------------------------------------------------------


class FinalWeights(Callback):
    """The trained weights at the end, and each optimizer step's position and learning rate."""

    def __init__(self):
        self.steps, self.weights, self.info, self.ema_updates = [], None, None, None

    def on_train_start(self, state, info):
        self.info = info

    def on_step_end(self, state, metrics):
        lr = state.optimizer.param_groups[0]["lr"]
        self.steps.append((state.epoch, state.batch, state.step, lr))

    def on_train_end(self, state):
        self.weights = {k: v.clone() for k, v in state.model.state_dict().items()}
        self.ema_updates = state.ema.updates if state.ema is not None else None


def strip_batchnorm(monkeypatch):
    """Build the tiny network without BatchNorm, so a batch's gradient does not depend on how
    the batch is split."""
    build = train_module.build_model

    def build_model(*args, **kwargs):
        model = build(*args, **kwargs)
        for module in list(model.modules()):
            for name, child in module.named_children():
                if isinstance(child, torch.nn.BatchNorm2d):
                    setattr(module, name, torch.nn.Identity())
        return model

    monkeypatch.setattr(train_module, "build_model", build_model)


def test_two_accumulated_batches_train_as_one_batch_twice_their_size(tmp_path, monkeypatch):
    strip_batchnorm(monkeypatch)
    # No augmentation (its draws are per batch index); the same data order for both.
    same = dict(crop_padding=0, flip=False, tensorboard=False, lr=0.02, momentum=0.9)
    big, accumulated = FinalWeights(), FinalWeights()
    one = train(tiny_config(tmp_path / "big", batch_size=64, **same), callbacks=[big])
    two = train(
        tiny_config(tmp_path / "acc", batch_size=32, accum_steps=2, **same), callbacks=[accumulated]
    )
    assert [r["step"] for r in two.history] == [r["step"] for r in one.history] == [4, 8]
    assert [lr for *_, lr in accumulated.steps] == [lr for *_, lr in big.steps]
    for key, value in big.weights.items():
        torch.testing.assert_close(accumulated.weights[key], value, rtol=1e-4, atol=1e-6)
    for a, b in zip(one.history, two.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["train_acc"] == b["train_acc"]
    # Accumulating really changes the update: without it the same batches take twice the steps.
    plain = train(tiny_config(tmp_path / "plain", batch_size=32, **same))
    assert [r["step"] for r in plain.history] == [8, 16]


def test_steps_schedule_and_weight_average_count_optimizer_steps_with_a_short_last_window(
    tmp_path,
):
    calls = []

    def loss_fn(logits, labels):
        calls.append(len(labels))
        return F.cross_entropy(logits, labels)

    seen = FinalWeights()
    cfg = tiny_config(tmp_path, subset=224, accum_steps=3, ema_decay=0.9, tensorboard=False)
    result = train(cfg, callbacks=[seen], loss_fn=loss_fn)  # 7 batches: windows of 3, 3, 1
    assert seen.info.steps_per_epoch == 3 and seen.info.total_steps == 6
    assert [(epoch, batch, step) for epoch, batch, step, _ in seen.steps] == [
        (0, 3, 1), (0, 6, 2), (0, 7, 3), (1, 3, 4), (1, 6, 5), (1, 7, 6)
    ]  # fmt: skip
    assert len(calls) == 14 and [r["step"] for r in result.history] == [3, 6]
    assert seen.ema_updates == 6  # once per optimizer step, not per batch
    schedule = train_module.build_schedule(cfg.optim, 3, 6)  # the one-cycle over 6 steps
    assert [lr for *_, lr in seen.steps] == [schedule(step) for step in range(6)]


def test_max_steps_counts_optimizer_steps(tmp_path):
    seen = FinalWeights()
    cfg = tiny_config(tmp_path, accum_steps=2, max_steps=5, tensorboard=False)
    result = train(cfg, callbacks=[seen])  # 8 batches an epoch: 4 steps
    assert [r["step"] for r in result.history] == [4, 5]
    assert seen.steps[-1][:3] == (1, 2, 5)


def test_a_resumed_state_inside_an_accumulation_window_is_refused_clearly():
    loop = types.SimpleNamespace(
        cfg=types.SimpleNamespace(optim=types.SimpleNamespace(accum_steps=4)), run_dir="runs/x"
    )
    state = types.SimpleNamespace(batch=6, epoch=1)
    with pytest.raises(RunError, match="inside an accumulation window of 4 batches"):
        train_module.check_window_start(loop, state, batches=10)
    for batch in (0, 4, 8, 10):  # window starts, and the end of the epoch
        state.batch = batch
        train_module.check_window_start(loop, state, batches=10)


def test_under_ddp_only_the_last_batch_of_a_window_all_reduces(tmp_path):
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
        with train_module.gradient_sync(ddp, sync=False):
            assert not ddp.require_backward_grad_sync
        with train_module.gradient_sync(ddp, sync=True):
            assert ddp.require_backward_grad_sync
        compiled = types.SimpleNamespace(_orig_mod=ddp)  # as torch.compile wraps it
        with train_module.gradient_sync(compiled, sync=False):
            assert not ddp.require_backward_grad_sync
    finally:
        dist.destroy_process_group()


# -- mixup and cutmix ---------------------------------------------------------------------------


def test_with_mixing_the_default_loss_folds_label_smoothing_in_once():
    logits, labels = torch.randn(6, 10), torch.tensor([0, 3, 9, 1, 1, 2])
    loss = train_module.default_loss(OptimConfig(label_smoothing=0.1), mixing=True)
    targets = smooth_one_hot(labels, 10, 0.1)  # what mix_batch gives an unmixed batch
    expected = F.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(loss(logits, targets), expected)


def test_running_accuracy_counts_soft_targets_against_their_dominant_class():
    state = TrainState(torch.nn.Linear(2, 3), torch.optim.SGD([torch.zeros(1)], lr=0.1))
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    targets = torch.tensor([[0.7, 0.3, 0.0], [0.6, 0.0, 0.4]])
    state.count_batch(torch.tensor(1.0), logits, targets)
    assert state.running.tolist() == [2.0, 1.0, 2.0]


def test_mixing_gives_the_loss_soft_targets_and_a_user_loss_still_trains(tmp_path):
    targets = []

    def loss_fn(logits, target):  # written for labels; F.cross_entropy takes probabilities too
        targets.append(target)
        return F.cross_entropy(logits, target)

    cfg = tiny_config(tmp_path, epochs=1, mixup_alpha=1.0, cutmix_alpha=1.0, label_smoothing=0.1)
    result = train(cfg, loss_fn=loss_fn)
    assert len(targets) == 8 and all(t.shape == (32, 10) for t in targets)
    for t in targets:
        torch.testing.assert_close(t.sum(1), torch.ones(32))
        assert t.min() >= 0.01 - 1e-7  # the smoothing's share, once
    assert any((t.max(1).values < 0.9).any() for t in targets)  # mixed, not one-hot
    assert result.history[-1]["train_loss"] > 0
    report = (result.run_dir / "report.md").read_text()
    assert "against the dominant label of each mixed image" in report


def test_resume_with_every_ingredient_on_matches_an_uninterrupted_run(tmp_path):
    changes = dict(
        accum_steps=2,  # 8 batches an epoch: 4 optimizer steps
        checkpoint_every_steps=3,
        mixup_alpha=0.4,
        cutmix_alpha=1.0,
        mix_prob=0.8,
        label_smoothing=0.1,
        clip_grad_norm=0.5,
        ema_decay=0.9,
        drop_path_rate=0.2,
        trivial_augment=True,
        random_erase=0.25,
        tensorboard=False,
    )
    full = train(tiny_config(tmp_path / "full", **changes))
    cfg = tiny_config(tmp_path / "cut", **changes)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[StopAfter(7)])  # the last state: step 6, epoch 2, batch 4
    assert list_states(tmp_path / "cut/runs/run/checkpoints")[-1].name.endswith("000000006.pt")
    resumed = train(cfg, resume=tmp_path / "cut/runs/run")
    assert without_times(resumed.history) == without_times(full.history)
    for name in ("last.safetensors", "last_raw.safetensors"):
        a = load_model_checkpoint(full.run_dir / "checkpoints" / name).model.state_dict()
        b = load_model_checkpoint(resumed.run_dir / "checkpoints" / name).model.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    rows = list(csv.DictReader((resumed.run_dir / "metrics.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows] == [4, 8]


# -- the raw weights beside their average ------------------------------------------------------


def test_with_a_weight_average_the_raw_weights_are_saved_and_reported_beside_it(tmp_path):
    from resnetkit.cli.commands import train_summary

    result = train(tiny_config(tmp_path, ema_decay=0.9, tensorboard=False))
    checkpoints = result.run_dir / "checkpoints"
    raw = load_model_checkpoint(checkpoints / "last_raw.safetensors")
    averaged = load_model_checkpoint(checkpoints / "last.safetensors")
    assert raw.metadata["weights"].startswith("trained") and "test_acc" not in raw.metadata
    assert averaged.metadata["weights"].startswith("ema")
    assert any(
        not torch.equal(v, averaged.model.state_dict()[k])
        for k, v in raw.model.state_dict().items()
    )
    raw_acc = result.raw_final.top1
    assert 0.0 <= raw_acc <= 1.0
    assert f"final test accuracy {raw_acc:.2%}" in (result.run_dir / "report.md").read_text()
    assert f"raw weights {raw_acc:.2%}" in train_summary(result, "1s")


def test_without_a_weight_average_there_is_no_raw_copy(tmp_path):
    result = train(tiny_config(tmp_path, epochs=1, tensorboard=False))
    assert result.raw_final is None
    assert not (result.run_dir / "checkpoints/last_raw.safetensors").exists()
    assert "raw weights" not in (result.run_dir / "report.md").read_text()
