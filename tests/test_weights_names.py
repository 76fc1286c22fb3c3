"""Weights named as timm names them: `model.tag`, pretrained=True/False, list_models(...,
pretrained=True); the older spellings keep working."""

import pytest
import torch

import resnetkit as rk
from resnetkit.cli import main
from resnetkit.pretrained import PretrainedError, default_tag, find_bundled


def same_weights(a, b):
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_pretrained_false_builds_an_untrained_model():
    model = rk.create_model("resnet18", pretrained=False)
    assert model.num_classes == 1000


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnet20", {"pretrained": True}),
        ("resnet20.fashion_mnist", {}),
        ("resnet20.fashion_mnist", {"pretrained": True}),
        ("resnet20_fashion_mnist", {}),
        ("resnet20", {"pretrained": "fashion_mnist"}),
    ],
)
def test_every_spelling_of_the_bundled_weights_loads_them(name, kwargs):
    reference = rk.load_weights(
        rk.create_model("resnet20", in_chans=1, num_classes=10),
        find_bundled("resnet20_fashion_mnist").path,
    )
    assert same_weights(rk.create_model(name, **kwargs), reference)


def test_a_named_tag_with_pretrained_false_builds_without_downloading():
    model = rk.create_model("resnet50.imagenet", pretrained=False)
    assert model.num_classes == 1000 and model.spec.name == "resnet50"


def test_pretrained_true_means_the_classic_imagenet_weights_where_they_exist():
    assert default_tag("resnet50") == "imagenet"
    assert default_tag("resnet20") == "fashion_mnist"


def test_a_model_without_weights_says_which_models_have_them():
    with pytest.raises(
        PretrainedError, match=r"no pretrained weights for model 'resnet8'.*resnet50"
    ):
        rk.create_model("resnet8", pretrained=True)


def test_list_models_with_pretrained_lists_model_dot_tag_names():
    names = rk.list_models("resnet*", pretrained=True)
    assert "resnet50.imagenet_v2" in names and "resnet20.fashion_mnist" in names
    assert names == sorted(names) and all("." in n for n in names)
    assert rk.list_models("resnet50.imagenet*", pretrained=True) == [
        "resnet50.imagenet",
        "resnet50.imagenet_v2",
    ]
    assert "resnet50" in rk.list_models("resnet*")  # without pretrained: architectures


def test_predict_takes_the_dotted_name(tmp_path, capsys):
    from PIL import Image

    path = tmp_path / "x.png"
    Image.new("L", (28, 28), 128).save(path)
    assert (
        main(["predict", "--pretrained", "resnet20.fashion_mnist", str(path), "--top-k", "1"]) == 0
    )
    assert "%" in capsys.readouterr().out
