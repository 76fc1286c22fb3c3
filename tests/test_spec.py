"""The spec is the table a ResNet is built from: validation and serialisation."""

import json

import pytest

import resnetkit as rk
from resnetkit.spec import ResNetSpec, SpecError, StageSpec


def small_spec(**changes) -> ResNetSpec:
    base = dict(stages=[(1, 8, 1), (1, 16, 2)], stem="cifar", stem_width=8, num_classes=3)
    base.update(changes)
    return ResNetSpec(**base)


def test_stages_written_as_tuples_or_mappings_are_the_same_spec():
    as_tuples = small_spec()
    as_dicts = small_spec(
        stages=[{"blocks": 1, "width": 8}, {"blocks": 1, "width": 16, "stride": 2}]
    )
    assert as_tuples == as_dicts
    assert as_tuples.stages[1] == StageSpec(blocks=1, width=16, stride=2)


def test_spec_is_immutable():
    spec = small_spec()
    with pytest.raises(AttributeError):
        spec.block = "bottleneck"


@pytest.mark.parametrize("name", ["resnet20", "resnet50", "preact_resnet164", "resnext50_32x4d"])
def test_yaml_round_trip_gives_an_equal_spec(tmp_path, name):
    spec = rk.get_spec(name)
    path = tmp_path / "spec.yaml"
    spec.to_yaml(path)
    assert ResNetSpec.from_yaml(path) == spec
    assert ResNetSpec.from_file(path) == spec


@pytest.mark.parametrize("name", ["resnet20", "wide_resnet50_2", "plain56"])
def test_json_round_trip_gives_an_equal_spec(tmp_path, name):
    spec = rk.get_spec(name)
    path = tmp_path / "spec.json"
    spec.to_json(path)
    assert ResNetSpec.from_json(path) == spec
    assert json.loads(path.read_text())["stages"][0] == {
        "blocks": spec.stages[0].blocks,
        "width": spec.stages[0].width,
        "stride": spec.stages[0].stride,
    }


INVALID = [
    ({"block": "triple"}, "'block'", "basic, bottleneck"),
    ({"stem": "huge"}, "'stem'", "imagenet, cifar, deep"),
    ({"shortcut": "D"}, "'shortcut'", "A, B, C, none"),
    ({"stages": [(1, 8, 3)]}, "'stages[0].stride'", "1, 2"),
    ({"stages": [(0, 8, 1)]}, "'stages[0].blocks'", ">= 1"),
    ({"stages": [(-2, 8, 1)]}, "'stages[0].blocks'", ">= 0"),
    ({"stages": [(1, -8, 1)]}, "'stages[0].width'", ">= 1"),
    ({"stages": []}, "'stages'", "at least one stage"),
    ({"num_classes": -1}, "'num_classes'", ">= 0"),
    ({"in_chans": 0}, "'in_chans'", ">= 1"),
    ({"groups": 3}, "'groups'", "not divisible by groups=3"),
    ({"drop_rate": 1.5}, "'drop_rate'", "[0, 1)"),
    ({"drop_path_rate": 1.0}, "'drop_path_rate'", "[0, 1)"),
    ({"drop_path_rate": -0.1}, "'drop_path_rate'", "[0, 1)"),
    ({"drop_path_rate": "0.1"}, "'drop_path_rate'", "[0, 1)"),
    ({"shortcut": "none", "drop_path_rate": 0.1}, "'drop_path_rate'", "plain network"),
    ({"preact": "yes"}, "'preact'", "true or false"),
    ({"shortcut": "none", "zero_init_residual": True}, "'zero_init_residual'", "plain network"),
    ({"stages": [(1, 16, 1), (1, 8, 2)], "shortcut": "A"}, "'shortcut'", "use shortcut 'B'"),
    ({"stages": [(1, 8, 1)], "stem": "deep", "stem_width": 7}, "'stem_width'", "even"),
    ({"act": "tanh"}, "'act'", "relu, gelu, silu"),
    ({"norm_scale": "no"}, "'norm_scale'", "true or false"),
    ({"logit_scale": 0}, "'logit_scale'", "> 0"),
    ({"logit_scale": float("inf")}, "'logit_scale'", "finite"),
    ({"logit_scale": True}, "'logit_scale'", "> 0"),
    ({"norm_scale": False, "zero_init_residual": True}, "'zero_init_residual'", "fixed at 1"),
]


@pytest.mark.parametrize(("changes", "field_text", "allowed_text"), INVALID)
def test_invalid_spec_names_the_field_and_what_is_allowed(changes, field_text, allowed_text):
    with pytest.raises(SpecError) as info:
        small_spec(**changes)
    message = str(info.value)
    assert field_text in message
    assert allowed_text in message
    assert "\n" not in message


def test_drop_path_rate_is_written_only_when_on_and_round_trips():
    assert "drop_path_rate" not in small_spec().to_dict()  # specs read as before the field
    spec = small_spec(drop_path_rate=0.2)
    assert spec.to_dict()["drop_path_rate"] == 0.2
    assert ResNetSpec.parse_yaml(spec.to_yaml()) == spec
    assert ResNetSpec.parse_json(spec.to_json()) != small_spec()


def test_unknown_field_in_a_file_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stages: [[1, 8, 1]]\nblok: basic\n")
    with pytest.raises(SpecError, match="'blok': unknown field"):
        ResNetSpec.from_yaml(path)


def test_broken_yaml_is_a_spec_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stages: [[1, 8, 1]\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        ResNetSpec.from_yaml(path)


def test_missing_spec_file_is_a_spec_error():
    with pytest.raises(SpecError, match="not found"):
        ResNetSpec.from_yaml("does/not/exist.yaml")


def test_replace_validates_like_a_new_spec():
    spec = small_spec()
    assert spec.replace(num_classes=7).num_classes == 7
    with pytest.raises(SpecError, match="'colour': unknown field"):
        spec.replace(colour="red")
    with pytest.raises(SpecError, match="'block'"):
        spec.replace(block="wide")


def test_depth_counts_weighted_layers_as_the_papers_do():
    assert rk.get_spec("resnet20").depth == 20
    assert rk.get_spec("resnet50").depth == 50
    assert rk.get_spec("preact_resnet164").depth == 164
    assert rk.get_spec("preact_resnet1001").depth == 1001
    assert rk.get_spec("resnet1202").depth == 1202


def test_inner_width_follows_resnext_and_wide_conventions():
    assert rk.get_spec("resnet50").inner_width(64) == 64
    assert rk.get_spec("wide_resnet50_2").inner_width(64) == 128
    assert rk.get_spec("resnext50_32x4d").inner_width(64) == 128
    assert rk.get_spec("resnext101_32x8d").inner_width(64) == 256


def test_from_json_accepts_text_longer_than_a_file_name():
    spec = small_spec(name="x" * 300)
    text = json.dumps(spec.to_dict())  # one line, > 255 characters
    assert len(text) > 255 and "\n" not in text
    assert ResNetSpec.from_json(text) == spec


def test_parse_json_never_reads_a_file(tmp_path):
    path = tmp_path / "spec.json"
    small_spec().to_json(path)
    with pytest.raises(SpecError, match="not valid JSON"):
        ResNetSpec.parse_json(str(path))


def test_checkpoint_spec_metadata_naming_a_local_file_is_not_read(tmp_path):
    from resnetkit.checkpoint import CheckpointError, load_model_checkpoint
    from resnetkit.weights import save_weights

    secret = tmp_path / "secret.json"
    small_spec().to_json(secret)
    model = rk.create_model(small_spec())
    path = tmp_path / "crafted.safetensors"
    save_weights(model, path)
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(path)), str(path), metadata={"spec": str(secret)})
    with pytest.raises((SpecError, CheckpointError), match="not valid JSON"):
        load_model_checkpoint(path)


def test_a_spec_key_given_twice_is_refused():
    text = "stages: [[1, 8, 1]]\nstem: cifar\nstem_width: 8\nstem: imagenet\n"
    with pytest.raises(SpecError, match=r"'stem' is given twice \(again on line 4\)"):
        ResNetSpec.parse_yaml(text)
