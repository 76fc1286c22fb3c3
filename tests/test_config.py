"""Training configuration: YAML recipes, flags on top, and one clear error per bad field."""

from pathlib import Path

import pytest

from resnetkit.config import ConfigError, TrainConfig

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_recipe_is_a_valid_config(path):
    cfg = TrainConfig.from_yaml(path)
    assert cfg.epochs >= 1


def test_yaml_round_trip(tmp_path):
    cfg = TrainConfig(model="resnet56", milestones=(82, 123), schedule="step")
    cfg.to_yaml(tmp_path / "c.yaml")
    assert TrainConfig.from_yaml(tmp_path / "c.yaml") == cfg


def test_replace_applies_overrides_with_validation():
    cfg = TrainConfig().replace(lr=0.05, epochs=3)
    assert (cfg.lr, cfg.epochs) == (0.05, 3)
    with pytest.raises(ConfigError, match="'epochs'"):
        cfg.replace(epochs=0)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("optimizer: adam\n", "'optimizer'"),
        ("schedule: poly\n", "'schedule'"),
        ("epochs: -1\n", "'epochs'"),
        ("epochs: ten\n", "'epochs'"),
        ("batch_size: 1.5\n", "'batch_size'"),
        ("lr: 0\n", "'lr'"),
        ("label_smoothing: 2\n", "'label_smoothing'"),
        ("precision: fp8\n", "'precision'"),
        ("learning_rate: 0.1\n", "'learning_rate': unknown field"),
        ("flip: maybe\n", "'flip'"),
        ("- just\n- a list\n", "expected a mapping"),
        ("epochs: [1\n", "not valid YAML"),
    ],
)
def test_invalid_config_names_the_field(tmp_path, text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_yaml(path)
    assert field in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")
