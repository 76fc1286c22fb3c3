"""Property-based tests: any valid spec builds and runs; anything else is a clean error."""

import contextlib
import string

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resnetkit.config import ConfigError, TrainConfig
from resnetkit.model import ResNet
from resnetkit.spec import ResNetSpec, SpecError

stage = st.tuples(st.integers(1, 2), st.sampled_from([4, 8, 16]), st.sampled_from([1, 2]))


@st.composite
def valid_specs(draw):
    block = draw(st.sampled_from(["basic", "bottleneck"]))
    shortcut = draw(st.sampled_from(["A", "B", "C", "none"]))
    widths_grow = draw(st.lists(stage, min_size=1, max_size=3))
    # Shortcut A only pads channels, so its stage widths must not shrink.
    stages = sorted(widths_grow, key=lambda s: s[1]) if shortcut == "A" else widths_grow
    groups = draw(st.sampled_from([1, 2, 4]))
    return ResNetSpec(
        stages=stages,
        block=block,
        stem=draw(st.sampled_from(["cifar", "imagenet", "deep"])),
        stem_width=draw(st.sampled_from([4, 8, 16])) if shortcut != "A" else 4,
        preact=draw(st.booleans()),
        shortcut=shortcut,
        groups=groups,
        width_per_group=64 if groups == 1 else 16 * groups,
        zero_init_residual=draw(st.booleans()) if shortcut != "none" else False,
        in_chans=draw(st.integers(1, 4)),
        num_classes=draw(st.integers(1, 7)),
        drop_rate=draw(st.sampled_from([0.0, 0.3])),
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=valid_specs())
def test_any_valid_spec_builds_runs_and_round_trips(spec):
    try:
        model = ResNet(spec)
    except SpecError:
        return  # e.g. basic-block groups that do not divide the incoming channels
    side = max(spec.min_input_size, 8)
    x = torch.randn(2, spec.in_chans, side, side)
    out = model(x)
    assert out.shape == (2, spec.num_classes)
    out.sum().backward()
    assert ResNetSpec.from_yaml(spec.to_yaml()) == spec
    assert ResNetSpec.from_json(spec.to_json()) == spec


field_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(string.printable, max_size=8),
    st.lists(st.integers(-3, 40), max_size=4),
)


@settings(max_examples=150, deadline=None)
@given(
    changes=st.dictionaries(
        st.sampled_from(
            [
                "stages",
                "block",
                "stem",
                "shortcut",
                "groups",
                "width_per_group",
                "in_chans",
                "num_classes",
                "drop_rate",
                "preact",
                "stem_width",
                "zero_init_residual",
                "bogus",
            ]
        ),
        field_values,
        min_size=1,
        max_size=3,
    )
)
def test_any_spec_mapping_either_builds_or_raises_spec_error(changes):
    data = {"stages": [[1, 8, 1]], **changes}
    try:
        spec = ResNetSpec.from_dict(data)
    except SpecError as exc:
        assert "\n" not in str(exc)
        return
    ResNet(spec)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_config_parser_only_ever_raises_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(text)
    with contextlib.suppress(ConfigError):
        TrainConfig.from_yaml(path)


@settings(max_examples=200, deadline=None)
@given(
    data=st.dictionaries(
        st.sampled_from(
            [
                "epochs",
                "lr",
                "batch_size",
                "flip",
                "milestones",
                "optimizer",
                "schedule",
                "precision",
                "subset",
                "extra",
                "label_smoothing",
                "seed",
                "unknown_key",
                "warmup_epochs",
                "threads",
            ]
        ),
        field_values,
        max_size=4,
    )
)
def test_config_mappings_only_ever_raise_config_error(data):
    try:
        TrainConfig.from_dict(data)
    except ConfigError as exc:
        assert "\n" not in str(exc)


def test_yaml_that_is_not_a_mapping_is_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump([1, 2, 3]))
    with pytest.raises(ConfigError):
        TrainConfig.from_yaml(path)
