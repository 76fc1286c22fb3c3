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


@pytest.mark.parametrize(
    "field", ["lr", "warmup_epochs", "gamma", "label_smoothing", "momentum", "weight_decay"]
)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_or_infinite_schedule_fields_are_config_errors(field, value):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        TrainConfig(**{field: value})


def test_nan_milestone_is_a_config_error():
    with pytest.raises(ConfigError, match=r"'milestones'.*finite"):
        TrainConfig(schedule="step", milestones=(1.0, float("nan")))


def test_type_errors_name_a_human_type_not_a_python_class():
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"epochs": "ten"})
    assert "expected an integer" in str(info.value) and "class" not in str(info.value)
    with pytest.raises(ConfigError, match="expected a number"):
        TrainConfig.from_dict({"lr": "fast"})
    with pytest.raises(ConfigError, match="expected an integer or empty"):
        TrainConfig.from_dict({"subset": "some"})


def test_config_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("model: r\xe9snet20\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        TrainConfig.from_yaml(path)


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../x", "/abs", "", " ", "a\\b"])
def test_run_name_must_be_a_plain_folder_name(name):
    with pytest.raises(ConfigError, match=r"'name'.*plain folder name"):
        TrainConfig(name=name)


def test_image_size_beyond_the_bound_is_a_config_error():
    with pytest.raises(ConfigError, match=r"'image_size'.*at most"):
        TrainConfig(image_size=10**6)


@pytest.mark.parametrize("field", ["epochs", "batch_size", "subset", "threads", "seed"])
def test_integers_too_large_for_torch_are_config_errors(field):
    with pytest.raises(ConfigError, match=f"'{field}'.*at most"):
        TrainConfig(**{field: 10**20})
