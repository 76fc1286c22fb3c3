"""`model.pretrained_cfg`: every model says, in timm's keys, what input its weights expect;
the dict travels from the catalogue, the bundled file and training checkpoints."""

import json

import pytest
import torch

import resnetkit as rk
from resnetkit.checkpoint import CheckpointError, load_model_checkpoint
from resnetkit.data import DatasetInfo
from resnetkit.pretrained import find_bundled, get_pretrained, imagenet_class_names
from resnetkit.pretrained_cfg import (
    PretrainedCfgError,
    apply_normalisation,
    check_cfg,
    default_cfg,
    make_cfg,
)
from resnetkit.train import train
from resnetkit.weights import read_metadata, save_weights
from train_helpers import TINY_SPEC, tiny_config

TIMM_KEYS = {"input_size", "mean", "std", "crop_pct", "interpolation", "num_classes"}


def test_an_untrained_imagenet_model_expects_the_classic_imagenet_evaluation():
    cfg = rk.create_model("resnet50").pretrained_cfg
    assert set(cfg) >= TIMM_KEYS
    assert cfg["input_size"] == (3, 224, 224) and cfg["crop_pct"] == 0.875
    assert cfg["mean"] == (0.485, 0.456, 0.406) and cfg["std"] == (0.229, 0.224, 0.225)
    assert cfg["interpolation"] == "bilinear" and cfg["num_classes"] == 1000
    assert cfg["tag"] is None and cfg["url"] is None and cfg["label_names"] is None


def test_an_untrained_cifar_model_is_evaluated_whole_at_32_pixels():
    cfg = rk.create_model("resnet20", in_chans=1, num_classes=7).pretrained_cfg
    assert cfg["input_size"] == (1, 32, 32) and cfg["crop_pct"] == 1.0
    assert cfg["num_classes"] == 7
    assert cfg["mean"] == pytest.approx((sum((0.485, 0.456, 0.406)) / 3,))


def test_classic_imagenet_weights_resize_256_and_v2_weights_resize_232():
    v1 = get_pretrained("resnet50", "imagenet").pretrained_cfg()
    v2 = get_pretrained("resnet50", "imagenet_v2").pretrained_cfg()
    assert v1["crop_pct"] == 0.875 and v2["crop_pct"] == pytest.approx(224 / 232)
    assert rk.create_transform(v1).resize_size == (256, 256)
    assert rk.create_transform(v2).resize_size == (232, 232)


def test_catalogue_weights_carry_class_names_source_license_and_url():
    cfg = get_pretrained("resnet50", "imagenet_v2").pretrained_cfg()
    assert cfg["label_names"] == imagenet_class_names()
    assert (cfg["architecture"], cfg["tag"]) == ("resnet50", "imagenet_v2")
    assert cfg["source"] == "torchvision ResNet50_Weights.IMAGENET1K_V2"
    assert cfg["license"] == "BSD-3-Clause"
    assert cfg["url"] == "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"


@pytest.mark.parametrize("name", ["resnet20.fashion_mnist", "resnet20_fashion_mnist"])
def test_the_bundled_weights_carry_their_trained_preprocessing(name):
    cfg = rk.create_model(name).pretrained_cfg
    assert cfg["input_size"] == (1, 28, 28) and cfg["crop_pct"] == 1.0
    assert cfg["label_names"][7] == "Sneaker" and cfg["num_classes"] == 10
    assert (cfg["tag"], cfg["license"]) == ("fashion_mnist", "MIT")
    meta = read_metadata(find_bundled(name).path)
    assert cfg["mean"] == tuple(json.loads(meta["mean"]))


def test_a_new_classifier_drops_the_class_names_of_the_old_one():
    model = rk.create_model("resnet20.fashion_mnist", num_classes=3)
    assert model.pretrained_cfg["num_classes"] == 3
    assert model.pretrained_cfg["label_names"] is None
    assert model.pretrained_cfg["input_size"] == (1, 28, 28)  # the input is the same
    model.reset_classifier(5)
    assert model.pretrained_cfg["num_classes"] == 5


def test_three_input_channels_repeat_the_grayscale_statistics():
    model = rk.create_model("resnet20.fashion_mnist", in_chans=3)
    mean = rk.create_model("resnet20.fashion_mnist").pretrained_cfg["mean"]
    assert model.pretrained_cfg["input_size"] == (3, 28, 28)
    assert model.pretrained_cfg["mean"] == mean * 3


def test_a_feature_backbone_keeps_the_input_cfg_of_its_weights():
    backbone = rk.create_model("resnet20.fashion_mnist", features_only=True)
    assert backbone.pretrained_cfg["input_size"] == (1, 28, 28)


def test_a_trained_checkpoint_carries_its_normalisation_size_and_class_names(tmp_path):
    result = train(tiny_config(tmp_path, epochs=1, max_steps=1))
    best = result.run_dir / "checkpoints" / "best.safetensors"
    stored = json.loads(read_metadata(best)["pretrained_cfg"])
    loaded = load_model_checkpoint(best)
    cfg = loaded.model.pretrained_cfg
    assert stored["input_size"] == [3, 16, 16] and stored["crop_pct"] == 1.0
    assert cfg["mean"] == loaded.mean and cfg["std"] == loaded.std
    assert cfg["label_names"] == loaded.class_names and cfg["num_classes"] == 10
    assert (cfg["tag"], cfg["source"]) == ("run", "resnetkit train (synthetic)")
    assert loaded.pretrained_cfg is cfg


def test_a_checkpoint_used_as_pretrained_weights_brings_its_cfg(tmp_path):
    result = train(tiny_config(tmp_path, epochs=1, max_steps=1))
    best = result.run_dir / "checkpoints" / "best.safetensors"
    model = rk.create_model(str(tmp_path / "tiny.yaml"), pretrained=best)
    assert model.pretrained_cfg == load_model_checkpoint(best).pretrained_cfg
    bare = tmp_path / "bare.pth"  # a plain state dict records nothing: the model's default
    torch.save(model.state_dict(), bare)
    cfg = rk.create_model(str(tmp_path / "tiny.yaml"), pretrained=bare).pretrained_cfg
    assert cfg["source"] == str(bare) and cfg["input_size"] == (3, 32, 32)


def test_an_old_checkpoint_without_a_cfg_gets_one_from_what_it_records(tmp_path):
    path = tmp_path / "old.safetensors"
    meta = {"class_names": list("abcdefghij"), "mean": [0.1] * 3, "std": [0.2] * 3}
    save_weights(rk.ResNet(TINY_SPEC), path, meta | {"image_size": [20, 24]})
    cfg = load_model_checkpoint(path).model.pretrained_cfg
    assert cfg["input_size"] == (3, 20, 24) and cfg["crop_pct"] == 1.0
    assert cfg["mean"] == (0.1, 0.1, 0.1) and cfg["label_names"] == tuple("abcdefghij")
    save_weights(rk.ResNet(TINY_SPEC), path)  # nothing recorded at all: the historic defaults
    cfg = load_model_checkpoint(path).model.pretrained_cfg
    assert cfg["input_size"] == (3, 32, 32) and cfg["mean"] == (0.5, 0.5, 0.5)


def test_a_stored_cfg_that_does_not_fit_the_network_is_refused(tmp_path):
    path = tmp_path / "bad.safetensors"
    wrong = default_cfg(TINY_SPEC.replace(num_classes=4))
    save_weights(rk.ResNet(TINY_SPEC), path, {"pretrained_cfg": wrong})
    with pytest.raises(CheckpointError, match="does not fit the network"):
        load_model_checkpoint(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"crop_pct": 0.0}, "crop_pct 0.0"),
        ({"crop_pct": 1.5}, "crop_pct 1.5"),
        ({"interpolation": "lanczos"}, "interpolation 'lanczos'"),
        ({"mean": (0.5, 0.5)}, "mean"),
        ({"std": (0.5, 0.0, 0.5)}, "std"),
        ({"input_size": (3, 224)}, "input_size"),
    ],
)
def test_a_cfg_no_transform_can_use_names_the_key(change, message):
    cfg = default_cfg(rk.get_spec("resnet18")) | change
    with pytest.raises(PretrainedCfgError, match=message):
        check_cfg(cfg)


def test_a_cfg_survives_a_json_round_trip_unchanged():
    cfg = make_cfg(input_size=(3, 8, 8), mean=(0.1,) * 3, std=(0.3,) * 3, num_classes=2)
    assert check_cfg(json.loads(json.dumps(cfg))) == cfg


def test_apply_normalisation_gives_the_data_the_weights_statistics_for_its_channels():
    cfg = get_pretrained("resnet50", "imagenet").pretrained_cfg()
    rgb = DatasetInfo("photos", ("a", "b"), 3, (64, 64), (0.5,) * 3, (0.2,) * 3)
    grey = DatasetInfo("scans", ("a", "b"), 1, (28, 28), (0.3,), (0.3,))
    assert apply_normalisation(rgb, cfg).mean == cfg["mean"]
    assert apply_normalisation(rgb, cfg).std == cfg["std"]
    assert apply_normalisation(grey, cfg).mean == pytest.approx((sum(cfg["mean"]) / 3,))
    assert apply_normalisation(grey, cfg).image_size == (28, 28)  # only the statistics change


def test_a_loaded_checkpoints_mean_and_std_are_its_cfgs(tmp_path):
    model = rk.ResNet(TINY_SPEC)
    cfg = make_cfg(input_size=(3, 16, 16), mean=(0.1, 0.2, 0.3), std=(1, 1, 1), num_classes=10)
    meta = {"mean": (0.9,) * 3, "std": (0.1,) * 3, "pretrained_cfg": cfg}
    save_weights(model, tmp_path / "m.safetensors", meta)
    loaded = load_model_checkpoint(tmp_path / "m.safetensors")
    assert (loaded.mean, loaded.std) == ((0.1, 0.2, 0.3), (1.0, 1.0, 1.0))
