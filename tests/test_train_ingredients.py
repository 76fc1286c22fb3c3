"""The loop's optional training ingredients: stochastic depth, gradient clipping, gradient
accumulation, mixup/cutmix and the raw weights kept beside their average. Each is off by
default; the tests in test_train.py check that the loop is unchanged then."""

import pytest

from resnetkit.checkpoint import load_model_checkpoint
from resnetkit.config import ConfigError
from resnetkit.train import train
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
