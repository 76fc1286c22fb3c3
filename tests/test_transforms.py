"""`create_transform`: the evaluation transform of a model's weights, checked against resizes
and crops done by hand with Pillow (torchvision's Resize + CenterCrop, step by step)."""

import numpy as np
import pytest
import torch
from PIL import Image

import resnetkit as rk
from resnetkit.data import DataError
from resnetkit.data.augment import Normalize
from resnetkit.data.decode import decode_image
from resnetkit.pretrained import get_pretrained
from resnetkit.pretrained_cfg import PretrainedCfgError, make_cfg

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def busy_image(width: int, height: int) -> Image.Image:
    """RGB pixels that differ from their neighbours, so any shift or squash shows."""
    x = np.arange(width)[None, :]
    y = np.arange(height)[:, None]
    channels = [(7 * x + 3 * y) % 256, (2 * x + 11 * y) % 256, (x * y) % 256]
    return Image.fromarray(np.stack(channels, axis=2).astype(np.uint8), "RGB")


def cfg_for(size, crop_pct, channels=3, interpolation="bilinear", mean=MEAN, std=STD):
    return make_cfg(
        input_size=(channels, size, size),
        mean=mean[:channels],
        std=std[:channels],
        num_classes=2,
        crop_pct=crop_pct,
        interpolation=interpolation,
    )


def normalised(image: Image.Image, mean=MEAN, std=STD) -> torch.Tensor:
    """(pixels / 255 - mean) / std as a (C, H, W) tensor, computed in float64."""
    array = np.asarray(image, dtype=np.float64) / 255
    array = array[:, :, None] if array.ndim == 2 else array
    values = (array - np.array(mean[: array.shape[2]])) / np.array(std[: array.shape[2]])
    return torch.from_numpy(values.transpose(2, 0, 1)).float()


def test_the_shorter_side_goes_to_size_over_crop_pct_then_the_centre_is_cropped():
    image = busy_image(40, 30)
    out = rk.create_transform(cfg_for(16, 0.8))(image)
    # 16 / 0.8 = 20: height 30 -> 20, width 40 -> int(20 * 40 / 30) = 26; crop at (5, 2).
    expected = normalised(image.resize((26, 20), Image.Resampling.BILINEAR).crop((5, 2, 21, 18)))
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("tag", "resized", "corner"),
    [("imagenet", (256, 341), (16, 58)), ("imagenet_v2", (232, 309), (4, 42))],
)
def test_v1_weights_resize_to_256_and_v2_weights_to_232_before_the_224_crop(tag, resized, corner):
    image = busy_image(300, 400)  # portrait: the width is the shorter side
    cfg = get_pretrained("resnet50", tag).pretrained_cfg()
    out = rk.create_transform(cfg)(image)
    left, top = corner
    resized_by_hand = image.resize(resized, Image.Resampling.BILINEAR)
    by_hand = resized_by_hand.crop((left, top, left + 224, top + 224))
    assert out.shape == (3, 224, 224)
    torch.testing.assert_close(out, normalised(by_hand, cfg["mean"], cfg["std"]), atol=1e-5, rtol=0)


def test_a_bicubic_cfg_resizes_with_the_bicubic_filter():
    image = busy_image(40, 30)
    out = rk.create_transform(cfg_for(16, 0.8, interpolation="bicubic"))(image)
    by_hand = image.resize((26, 20), Image.Resampling.BICUBIC).crop((5, 2, 21, 18))
    torch.testing.assert_close(out, normalised(by_hand), atol=1e-5, rtol=0)


def test_crop_pct_one_takes_the_centre_square_of_a_wide_image_instead_of_squashing_it():
    image = Image.new("RGB", (60, 20), (0, 0, 0))
    image.paste((255, 255, 255), (20, 0, 40, 20))  # white centre square, black sides
    out = rk.create_transform(cfg_for(20, 1.0))(image)
    white = normalised(Image.new("RGB", (20, 20), (255, 255, 255)))
    torch.testing.assert_close(out, white, atol=1e-5, rtol=0)


def test_crop_pct_one_is_exactly_how_training_decodes_images():
    image = busy_image(37, 23)
    trained = Normalize(MEAN, STD)(decode_image(image, (16, 16), 3)[None])[0]
    assert torch.equal(rk.create_transform(cfg_for(16, 1.0))(image), trained)


def test_images_are_converted_to_the_channels_of_the_cfg():
    grey = busy_image(20, 20).convert("L")
    as_rgb = rk.create_transform(cfg_for(20, 1.0))(grey)
    assert as_rgb.shape == (3, 20, 20)
    torch.testing.assert_close(as_rgb, normalised(grey.convert("RGB")), atol=1e-5, rtol=0)
    colour = busy_image(20, 20)
    as_grey = rk.create_transform(cfg_for(20, 1.0, channels=1))(colour)
    assert as_grey.shape == (1, 20, 20)
    torch.testing.assert_close(as_grey, normalised(colour.convert("L")), atol=1e-5, rtol=0)


def test_create_transform_takes_a_model_or_its_cfg():
    model = rk.create_model("resnet18")
    assert rk.create_transform(model) == rk.create_transform(model.pretrained_cfg)
    assert "resize 256 bilinear, centre crop 224x224" in repr(rk.create_transform(model))
    with pytest.raises(TypeError, match="pretrained_cfg"):
        rk.create_transform("resnet18")


def test_a_cfg_with_channels_no_image_has_is_refused():
    with pytest.raises(PretrainedCfgError, match=r"1 \(grayscale\) or 3 \(RGB\)"):
        rk.create_transform(rk.create_model("resnet18", in_chans=4))


def test_reading_a_broken_file_names_it(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"broken\.png"):
        rk.create_transform(cfg_for(16, 0.875)).read(broken)
