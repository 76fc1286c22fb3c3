"""The loop's optional training ingredients: stochastic depth, gradient clipping, gradient
accumulation, mixup/cutmix and the raw weights kept beside their average. Each is off by
default; the tests in test_train.py check that the loop is unchanged then."""

import pytest
import torch

from resnetkit.checkpoint import load_model_checkpoint
from resnetkit.config import ConfigError
from resnetkit.train import train
from resnetkit.training.callbacks import Callback
from train_helpers import tiny_config


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
