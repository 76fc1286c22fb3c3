"""`resnetkit explain`: an overlay picture per image and one self-contained index page."""

import re

import numpy as np
import pytest
from PIL import Image

from resnetkit.cli import main


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        path = tmp_path / f"img {i}.png"
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def explain(*args):
    return main(["explain", "--pretrained", "resnet20_fashion_mnist", *args])


def test_explain_writes_one_overlay_per_image_and_an_index_that_embeds_them(
    tmp_path, images, capsys
):
    out = tmp_path / "out"
    assert explain(*images, "-o", str(out)) == 0
    pictures = sorted(out.glob("*.png"))
    assert [p.name for p in pictures] == ["000-img_0-gradcam.png", "001-img_1-gradcam.png"]
    assert all(Image.open(p).size[0] > 600 for p in pictures)
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert not re.search(r"(src|href)=\"https?:", page)  # no network requests
    assert "img 0.png" in capsys.readouterr().out


def test_target_class_by_name_is_the_one_explained(tmp_path, images):
    out = tmp_path / "out"
    assert explain(*images, "-o", str(out), "--target", "Sneaker") == 0
    assert (out / "index.html").read_text().count("map for <i>Sneaker</i>") == 2


def test_an_existing_explanation_is_kept_without_overwrite(tmp_path, images, capsys):
    out = tmp_path / "out"
    explain(*images, "-o", str(out))
    before = (out / "index.html").read_bytes()
    capsys.readouterr()
    assert explain(images[0], "-o", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert "--overwrite" in err and len(err.splitlines()) == 1
    assert (out / "index.html").read_bytes() == before
    assert explain(images[0], "-o", str(out), "--overwrite") == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--target", "Dragon"], "unknown class 'Dragon'"), (["--target", "10"], "out of range")],
)
def test_bad_targets_are_one_line_errors(tmp_path, images, capsys, extra, message):
    assert explain(*images, "-o", str(tmp_path / "out"), *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
