"""`inspect features`: each stage's most active channels for one image."""

import numpy as np
import pytest
import torch
from PIL import Image

import resnetkit as rk
from resnetkit.cli import main
from resnetkit.explain import strongest_channels


def test_strongest_channels_are_each_stages_highest_mean_activations():
    torch.manual_seed(0)
    model = rk.create_model("resnet8", num_classes=10).eval()
    image = torch.randn(3, 32, 32)
    stages = strongest_channels(model, image, count=4)
    outputs = model.features(image[None])
    assert [s.stage for s in stages] == model.stage_names
    assert [s.reduction for s in stages] == [1, 2, 4]
    for stage, fmap in zip(stages, outputs, strict=True):
        means = fmap[0].mean(dim=(1, 2))
        assert list(stage.channels) == means.topk(4).indices.tolist()
        assert stage.maps.shape == (4, *fmap.shape[2:])
        torch.testing.assert_close(stage.maps[0], fmap[0, stage.channels[0]])


def test_more_channels_than_a_stage_has_gives_them_all():
    model = rk.create_model("resnet8", num_classes=10)
    stages = strongest_channels(model, torch.randn(3, 32, 32), count=40)
    assert [len(s.channels) for s in stages] == [16, 32, 40]
    assert model.training  # mode restored


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "item.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(path)
    return str(path)


def test_inspect_features_writes_a_png_and_keeps_an_existing_one(tmp_path, image, capsys):
    out = tmp_path / "f.png"
    args = ["inspect", "features", "--pretrained", "resnet20.fashion_mnist", image, "-o", str(out)]
    assert main(args) == 0
    assert Image.open(out).size[0] > 800
    before = out.read_bytes()
    capsys.readouterr()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main([*args, "--overwrite", "--channels", "4"]) == 0


@pytest.mark.parametrize(
    ("extra", "message"), [(["--channels", "0"], "expected 1 to 64"), (["-o", "x.jpg"], ".png")]
)
def test_bad_requests_are_one_line_errors(tmp_path, image, capsys, extra, message):
    args = ["inspect", "features", "--pretrained", "resnet20.fashion_mnist", image]
    assert main([*args, "-o", str(tmp_path / "f.png"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
