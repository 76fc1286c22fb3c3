import math

import pytest
import torch
import torch.nn.functional as F

from data_fixtures import DEVICES
from resnetkit.core.options import ConfigError
from resnetkit.data import (
    AugmentConfig,
    Normalize,
    augment_batch,
    cutout,
    normalize,
    random_crop,
    random_flip,
)
from resnetkit.data.augment import (
    random_erasing,
    random_resized_crop,
    resize_batch,
    resized_crops,
    rrc_boxes,
    train_resolution,
)


def _gen(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _distinct_images(n: int = 32, c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    """Every pixel of every channel holds a different value, so windows are identifiable."""
    base = torch.arange(c * h * w, dtype=torch.float32).view(1, c, h, w)
    return base.expand(n, c, h, w).clone()


def _find_window(sample: torch.Tensor, padded: torch.Tensor, h: int, w: int):
    for dy in range(padded.shape[-2] - h + 1):
        for dx in range(padded.shape[-1] - w + 1):
            if torch.equal(sample, padded[:, dy : dy + h, dx : dx + w]):
                return dy, dx
    return None


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_augment_batch_preserves_shape_dtype_and_device(dtype, device):
    batch = torch.randint(0, 256, (16, 3, 10, 12)).to(device, dtype)
    cfg = AugmentConfig(crop_padding=2, flip=True, cutout=3)
    out = augment_batch(batch, cfg, _gen(0, device))
    assert out.shape == batch.shape and out.dtype == dtype and out.device == batch.device


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_random_crop_shifts_content_by_at_most_padding(mode, device):
    batch, padding = _distinct_images(), 2
    padded = F.pad(batch[:1], (padding,) * 4, mode="constant" if mode == "zeros" else mode)[0]
    out = random_crop(batch.to(device), padding, _gen(0, device), padding_mode=mode).cpu()
    shifts = [_find_window(sample, padded, 8, 8) for sample in out]
    assert all(s is not None for s in shifts), "every output must be a window of the padded input"
    assert all(0 <= dy <= 2 * padding and 0 <= dx <= 2 * padding for dy, dx in shifts)
    assert len(set(shifts)) > 5, "offsets should vary across samples"
    assert any(shift != (padding, padding) for shift in shifts), "some content must move"


def test_random_crop_with_zero_padding_is_identity():
    batch = _distinct_images()
    assert torch.equal(random_crop(batch, 0, _gen()), batch)


def test_random_crop_rejects_reflect_padding_as_large_as_the_image():
    with pytest.raises(ValueError, match="smaller than the image"):
        random_crop(_distinct_images(h=4, w=4), 4, _gen())


@pytest.mark.parametrize("device", DEVICES)
def test_random_flip_flips_some_samples_and_leaves_others(device):
    batch = _distinct_images(n=64)
    out = random_flip(batch.to(device), _gen(0, device)).cpu()
    flipped = [torch.equal(s, batch[0].flip(-1)) for s in out]
    kept = [torch.equal(s, batch[0]) for s in out]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 10 < sum(flipped) < 54


@pytest.mark.parametrize("device", DEVICES)
def test_cutout_zeros_one_square_of_the_given_size(device):
    batch = torch.full((32, 3, 10, 10), 255, dtype=torch.uint8, device=device)
    out = cutout(batch, 4, _gen(0, device)).cpu()
    for sample in out:
        zero = sample == 0
        assert torch.equal(zero[0], zero[1]) and torch.equal(zero[0], zero[2])
        rows = zero[0].any(dim=1).nonzero().flatten()
        cols = zero[0].any(dim=0).nonzero().flatten()
        assert len(rows) == 4 and len(cols) == 4
        assert int(zero[0].sum()) == 16
        assert rows[-1] - rows[0] == 3 and cols[-1] - cols[0] == 3
    corners = {tuple((s[0] == 0).nonzero()[0].tolist()) for s in out}
    assert len(corners) > 5


@pytest.mark.parametrize("device", DEVICES)
def test_same_seed_gives_identical_output_and_different_seed_differs(device):
    batch = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, device=device)
    cfg = AugmentConfig(crop_padding=4, flip=True, cutout=4)
    a = augment_batch(batch, cfg, _gen(7, device))
    b = augment_batch(batch, cfg, _gen(7, device))
    c = augment_batch(batch, cfg, _gen(8, device))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_augment_config_rejects_unknown_padding_mode():
    with pytest.raises(ValueError, match=r"'padding_mode'.*allowed values: reflect, zeros"):
        AugmentConfig(padding_mode="edge")


def test_augment_config_rejects_negative_sizes():
    with pytest.raises(ValueError, match="crop_padding"):
        AugmentConfig(crop_padding=-1)


@pytest.mark.parametrize("device", DEVICES)
def test_normalize_matches_a_hand_computed_reference(device):
    batch = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    out = normalize(batch.to(device), mean, std)
    assert out.device == batch.to(device).device
    out = out.cpu()
    expected = torch.empty(4, 3, 5, 5, dtype=torch.float64)
    for c in range(3):
        expected[:, c] = (batch[:, c].double() / 255 - mean[c]) / std[c]
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_normalize_can_return_channels_last_bfloat16():
    batch = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    out = normalize(batch, (0.5,) * 3, (0.5,) * 3, dtype=torch.bfloat16, channels_last=True)
    assert out.dtype == torch.bfloat16
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out.float(), batch.float() / 127.5 - 1, rtol=1e-2, atol=1e-2)


def test_normalize_rejects_float_input():
    with pytest.raises(ValueError, match="uint8"):
        Normalize((0.5,), (0.5,))(torch.zeros(1, 1, 2, 2))


def test_augmentation_rejects_a_generator_on_another_device_type():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    batch = torch.zeros(2, 3, 8, 8, dtype=torch.uint8, device="cuda")
    with pytest.raises(ValueError, match="generator is on cpu"):
        random_flip(batch, _gen())


# -- random-resized crop -------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_random_resized_crop_gives_the_output_size_dtype_and_device(dtype, device):
    batch = torch.randint(0, 256, (16, 3, 20, 28)).to(device, dtype)
    out = random_resized_crop(batch, 12, _gen(0, device))
    assert out.shape == (16, 3, 12, 12) and out.dtype == dtype and out.device == batch.device
    assert random_resized_crop(batch, 0, _gen(0, device)).shape == (16, 3, 20, 20)


def test_random_resized_crop_boxes_keep_to_the_scale_and_ratio_bounds():
    batch = torch.zeros(2000, 1, 64, 48)
    scale, ratio = (0.2, 0.6), (0.5, 2.0)
    top, left, h, w = rrc_boxes(batch, scale, ratio, _gen()).double().unbind(1)
    assert bool((top >= 0).all() and (left >= 0).all())
    assert bool((top + h <= 64).all() and (left + w <= 48).all())
    share = h * w / (64 * 48)
    slack = 0.02  # the sides are rounded to whole pixels
    assert bool((share >= scale[0] - slack).all() and (share <= scale[1] + slack).all())
    aspect = w / h
    assert bool((aspect >= ratio[0] * 0.9).all() and (aspect <= ratio[1] * 1.1).all())
    assert share.min() < 0.25 and share.max() > 0.55, "the whole range is drawn"
    assert len(set(top.tolist())) > 10 and len(set(left.tolist())) > 10


def test_a_box_that_cannot_fit_falls_back_to_the_central_crop_at_the_nearest_ratio():
    batch = torch.zeros(4, 1, 10, 40)  # 4:1, the allowed ratios at most 2:1
    boxes = rrc_boxes(batch, (1.0, 1.0), (0.5, 2.0), _gen())
    assert boxes[:, 2:].tolist() == [[10, 20]] * 4


def test_each_resized_crop_equals_interpolating_its_own_crop():
    batch = torch.randn(3, 2, 12, 16)
    boxes = torch.tensor([[0, 0, 12, 16], [2, 5, 6, 4], [7, 1, 5, 9]])
    out = resized_crops(batch, boxes, 10)
    for sample, (top, left, h, w) in zip(range(3), boxes.tolist(), strict=True):
        crop = batch[sample : sample + 1, :, top : top + h, left : left + w]
        expected = F.interpolate(crop, size=(10, 10), mode="bilinear", align_corners=False)
        torch.testing.assert_close(out[sample : sample + 1], expected, rtol=1e-5, atol=1e-5)


def test_a_full_crop_at_the_same_size_is_the_identity():
    batch = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    out = random_resized_crop(batch, 8, _gen(), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.equal(out, batch)


@pytest.mark.parametrize("device", DEVICES)
def test_augment_batch_with_random_resized_crop_is_reproducible_and_replaces_the_padded_crop(
    device,
):
    batch = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, device=device)
    cfg = AugmentConfig(random_resized_crop=True, rrc_size=12, crop_padding=4)
    a = augment_batch(batch, cfg, _gen(3, device))
    assert a.shape == (8, 3, 12, 12)
    assert torch.equal(a, augment_batch(batch, cfg, _gen(3, device)))
    assert not torch.equal(a, augment_batch(batch, cfg, _gen(4, device)))


# -- lower-resolution epochs ---------------------------------------------------------------


def test_the_first_low_res_epochs_train_at_the_low_size_and_the_rest_at_full_size():
    sizes = [train_resolution(epoch, 224, 128, 3) for epoch in range(5)]
    assert sizes == [128, 128, 128, 224, 224]
    assert train_resolution(0, 224, 0, 0) == 224


def test_a_low_res_size_not_below_the_training_size_is_a_config_error():
    with pytest.raises(ConfigError, match=r"'low_res_size': got 32; .*smaller than .* \(32\)"):
        train_resolution(0, 32, 32, 2)


def test_resize_batch_downscales_the_shorter_side_with_antialiasing():
    stripes = torch.zeros(2, 1, 36, 48)
    stripes[..., ::2] = 255.0  # one-pixel stripes: plain bilinear at 1/3 reads 0s and 255s
    aliased = F.interpolate(stripes, size=(12, 16), mode="bilinear", align_corners=False)
    assert set(aliased.unique().tolist()) == {0.0, 255.0}
    out = resize_batch(stripes, 12)
    assert out.shape == (2, 1, 12, 16)
    assert out.min() > 100 and out.max() < 155  # antialiased: close to the mean grey
    as_uint8 = resize_batch(stripes.to(torch.uint8), 12)
    assert as_uint8.dtype == torch.uint8 and as_uint8.shape == (2, 1, 12, 16)
    assert resize_batch(stripes, 36) is stripes


# -- the config ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rrc_scale": (0.5, 0.1)}, "'rrc_scale': got 0.5 0.1; expected two numbers"),
        ({"rrc_scale": (0.1, 1.5)}, "'rrc_scale'.*<= 1"),
        ({"rrc_scale": (0.1,)}, "'rrc_scale'"),
        ({"rrc_ratio": (0.0, 1.0)}, "'rrc_ratio'.*0 < low"),
        ({"rrc_size": -1}, "'rrc_size'"),
        ({"low_res_size": 64}, "'low_res_epochs': got 0 with low_res_size 64; .*both"),
        ({"low_res_epochs": 2}, "'low_res_size': got 0 with low_res_epochs 2"),
        ({"mixup_alpha": -0.1}, "'mixup_alpha'"),
        ({"cutmix_alpha": math.nan}, "'cutmix_alpha'.*finite"),
        ({"mix_prob": 1.5}, "'mix_prob'.*0.0 to 1.0"),
        ({"mix_switch_prob": -1}, "'mix_switch_prob'"),
    ],
)
def test_invalid_ingredient_settings_are_one_line_naming_the_field(changes, message):
    with pytest.raises(ConfigError, match=message) as info:
        AugmentConfig(**changes)
    assert "\n" not in str(info.value)


def test_the_new_ingredients_are_off_by_default():
    cfg = AugmentConfig()
    assert not cfg.random_resized_crop and not cfg.mixing and cfg.low_res_size == 0
    assert AugmentConfig(cutmix_alpha=1.0).mixing


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_random_erasing_fills_one_rectangle_of_each_chosen_image_with_random_pixels(dtype, device):
    batch = torch.full((64, 3, 32, 32), 7, dtype=dtype, device=device)
    out = random_erasing(batch, 1.0, _gen(0, device)).cpu()
    assert out.dtype == dtype and out.shape == batch.shape
    changed = (out != 7).any(1)  # (N, H, W): where the noise landed
    for mask in changed:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert 0.02 * 1024 * 0.5 <= area <= 0.4 * 1024 * 1.2  # one box of 2% to 40%, rounded
        assert mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].float().mean() > 0.9
    assert out.float().std() > 0  # random pixels, not a constant


def test_random_erasing_probability_and_generator():
    batch = torch.randint(0, 256, (400, 3, 16, 16), dtype=torch.uint8)
    assert torch.equal(random_erasing(batch, 0.0, _gen(0)), batch)
    erased = (random_erasing(batch, 0.25, _gen(0)) != batch).flatten(1).any(1).float().mean()
    assert 0.15 < erased < 0.35
    assert torch.equal(random_erasing(batch, 0.25, _gen(3)), random_erasing(batch, 0.25, _gen(3)))
    with pytest.raises(ConfigError, match="random_erase"):
        AugmentConfig(random_erase=1.5)
    cfg = AugmentConfig(crop_padding=0, flip=False, random_erase=1.0)
    assert not torch.equal(augment_batch(batch, cfg, _gen(0)), batch)
