"""Training configuration: YAML recipes, flags on top, and one clear error per bad field."""

from pathlib import Path

import pytest
import yaml

from resnetkit.config import (
    SECTIONS,
    AugmentConfig,
    ConfigError,
    OptimConfig,
    RuntimeConfig,
    TrainConfig,
    config_options,
)
from resnetkit.core.yaml_text import load_yaml

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_recipe_is_a_valid_config(path):
    cfg = TrainConfig.from_yaml(path)  # which also refuses a key given twice
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


def test_sectioned_yaml_loads_the_same_config_as_flat_yaml(tmp_path):
    flat = tmp_path / "flat.yaml"
    flat.write_text("model: resnet8\nlr: 0.05\nepochs: 3\nseed: 7\ntta_flip: true\n")
    sectioned = tmp_path / "sectioned.yaml"
    sectioned.write_text(
        "model: resnet8\noptim: {lr: 0.05, epochs: 3}\nrun:\n  seed: 7\neval: {tta_flip: true}\n"
    )
    assert TrainConfig.from_yaml(sectioned) == TrainConfig.from_yaml(flat)


def test_flat_keywords_and_sections_build_the_same_config_and_flat_names_read_through():
    flat = TrainConfig(lr=0.05, epochs=3, crop_padding=4, precision="fp32")
    sections = TrainConfig(
        optim=OptimConfig(lr=0.05, epochs=3),
        augment=AugmentConfig(crop_padding=4),
        runtime=RuntimeConfig(precision="fp32"),
    )
    assert flat == sections
    assert flat.lr == flat.optim.lr == 0.05 and flat.crop_padding == flat.augment.crop_padding
    # Flat names apply on top of a given section.
    assert TrainConfig(optim=OptimConfig(lr=0.05, epochs=3), lr=0.2).optim == OptimConfig(
        lr=0.2, epochs=3
    )
    with pytest.raises(AttributeError):
        _ = flat.learning_rate


def test_every_field_name_is_unique_across_sections_and_never_a_section_name():
    names = [spec.name for _, spec in config_options()]
    assert len(names) == len(set(names))
    assert not set(names) & set(SECTIONS)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"optim": {"seed": 1}}, r"'optim.seed': unknown field; 'seed' belongs to section run"),
        ({"optim": 3}, r"invalid config section 'optim'"),
        ({"lr": 0.1, "optim": {"lr": 0.2}}, r"'lr': given twice"),
        ({"epoch": 3}, r"'epoch': unknown field; did you mean 'epochs'\?.*allowed fields"),
    ],
)
def test_misplaced_duplicated_or_unknown_keys_are_named_in_one_line(data, message):
    with pytest.raises(ConfigError, match=message) as info:
        TrainConfig.from_dict(data)
    assert "\n" not in str(info.value)


def test_config_yaml_stays_flat_so_older_versions_can_read_it(tmp_path):
    cfg = TrainConfig(model="resnet56", milestones=(82, 123), schedule="step", val_fraction=0)
    text = cfg.to_yaml()
    data = yaml.safe_load(text)
    assert set(data) == {spec.name for _, spec in config_options()}
    assert not any(isinstance(v, dict) for v in data.values())
    assert "# optim\n" in text  # a comment heads each section's keys
    assert TrainConfig.from_dict(data) == cfg


def test_defaults_fill_only_fields_the_file_leaves_out(tmp_path):
    path = tmp_path / "old-run.yaml"
    path.write_text("epochs: 2\n")
    assert TrainConfig.from_yaml(path, defaults={"seed": 3}).seed == 3
    path.write_text("epochs: 2\nrun: {seed: 1}\n")
    assert TrainConfig.from_yaml(path, defaults={"seed": 3}).seed == 1


def test_a_validation_split_is_held_out_by_default():
    assert TrainConfig().val_fraction == 0.1
    with pytest.raises(ConfigError, match=r"'val_fraction'.*0\.0 to 0\.9"):
        TrainConfig(val_fraction=0.95)


def test_clipping_and_accumulation_are_off_by_default_and_validated_in_one_line():
    cfg = TrainConfig()
    assert cfg.clip_grad_norm is None and cfg.accum_steps == 1
    assert TrainConfig(clip_grad_norm=1.0, accum_steps=4).optim.accum_steps == 4
    for changes, message in (
        ({"clip_grad_norm": 0.0}, "'clip_grad_norm': got 0.0; expected a number > 0"),
        ({"clip_grad_norm": "big"}, "'clip_grad_norm': got 'big'; expected a number or empty"),
        ({"accum_steps": 0}, "'accum_steps': got 0; expected an integer >= 1"),
    ):
        with pytest.raises(ConfigError, match=message) as info:
            TrainConfig(**changes)
        assert "\n" not in str(info.value)


def test_lower_resolution_epochs_must_leave_full_size_epochs_at_the_end():
    assert TrainConfig(epochs=10, low_res_size=16, low_res_epochs=9).low_res_epochs == 9
    with pytest.raises(ConfigError, match=r"'low_res_epochs': got 10; expected fewer than epochs"):
        TrainConfig(epochs=10, low_res_size=16, low_res_epochs=10)


def test_training_ingredients_round_trip_through_config_yaml(tmp_path):
    cfg = TrainConfig(
        mixup_alpha=0.2,
        cutmix_alpha=1.0,
        rrc_scale=(0.35, 1.0),
        random_resized_crop=True,
        clip_grad_norm=2.0,
        accum_steps=2,
    )
    cfg.to_yaml(tmp_path / "c.yaml")
    loaded = TrainConfig.from_yaml(tmp_path / "c.yaml")
    assert loaded == cfg and loaded.augment.rrc_scale == (0.35, 1.0)


@pytest.mark.parametrize(
    "text",
    [
        "lr: 0.1\nepochs: 3\nlr: 0.4\n",
        "optim:\n  lr: 0.1\n  lr: 0.4\n",
    ],
)
def test_a_key_given_twice_is_refused_not_silently_overridden(tmp_path, text):
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_yaml(path)
    message = str(info.value)
    assert "'lr' is given twice" in message and "line 3" in message
    assert "\n" not in message


def test_a_merge_key_may_be_overridden_as_yaml_allows():
    text = "optim_base: &base\n  lr: 0.1\n  momentum: 0.8\noptim:\n  <<: *base\n  lr: 0.2\n"
    data = load_yaml(text)
    assert data["optim"] == {"lr": 0.2, "momentum": 0.8}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1: a\n1: b\n", "1 is given twice"), ("? [1, 2]\n: a\n", "unhashable")],
)
def test_other_bad_keys_are_one_line_config_errors(tmp_path, text, expected):
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_yaml(path)
    assert expected in str(info.value) and "\n" not in str(info.value)
