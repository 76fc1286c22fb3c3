"""TrivialAugment on a batch: each operation does what its name says, images in one batch are
treated independently, and the draws come from the generator alone."""

import pytest
import torch

from data_fixtures import DEVICES
from resnetkit.data import AugmentConfig, augment_batch
from resnetkit.data.trivial_augment import OPERATIONS, apply_operations, trivial_augment


def one(name: str, batch: torch.Tensor, strength: float) -> torch.Tensor:
    n = batch.shape[0]
    ops = torch.full((n,), OPERATIONS.index(name))
    return apply_operations(batch, ops, torch.full((n,), strength))


def images(n=4, c=3, h=16, w=16, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, h, w), generator=torch.Generator().manual_seed(seed)).to(
        torch.uint8
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_trivial_augment_keeps_shape_dtype_and_device_and_follows_the_generator(dtype, device):
    batch = images(32).to(device)
    batch = batch if dtype == torch.uint8 else batch.float() / 255
    first = trivial_augment(batch, torch.Generator(device).manual_seed(1))
    again = trivial_augment(batch, torch.Generator(device).manual_seed(1))
    other = trivial_augment(batch, torch.Generator(device).manual_seed(2))
    assert first.shape == batch.shape and first.dtype == dtype and first.device == batch.device
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_identity_leaves_images_exactly_as_they_were():
    batch = images()
    assert torch.equal(one("identity", batch, 0.7), batch)
    floats = batch.float() / 255
    assert torch.equal(one("identity", floats, -0.3), floats)


def test_each_image_gets_only_its_own_operation():
    batch = images(len(OPERATIONS))
    ops = torch.arange(len(OPERATIONS))
    strengths = torch.linspace(-1, 1, len(OPERATIONS))
    together = apply_operations(batch, ops, strengths)
    for i in range(len(OPERATIONS)):
        alone = apply_operations(batch[i : i + 1], ops[i : i + 1], strengths[i : i + 1])
        assert torch.equal(together[i : i + 1], alone), OPERATIONS[i]


def test_float_images_in_0_1_are_augmented_as_their_uint8_pixels():
    batch = images(len(OPERATIONS))
    ops, strengths = torch.arange(len(OPERATIONS)), torch.full((len(OPERATIONS),), 0.6)
    as_uint8 = apply_operations(batch, ops, strengths).float() / 255
    as_float = apply_operations(batch.float() / 255, ops, strengths)
    torch.testing.assert_close(as_float, as_uint8, atol=1 / 255 + 1e-6, rtol=0)


def test_colour_operations_at_their_extremes():
    batch = images()
    assert one("brightness", batch, -1.0).max() <= 3  # factor 0.01: nearly black
    grey = one("color", batch, -1.0).float()  # saturation 0.01: nearly grey
    assert (grey.amax(1) - grey.amin(1)).max() <= 3
    flat = one("contrast", batch, -1.0).float()  # contrast 0.01: nearly the mean grey
    assert (flat.amax((1, 2, 3)) - flat.amin((1, 2, 3))).max() <= 4
    assert torch.equal(one("posterize", batch, 1.0) % 64, torch.zeros_like(batch))  # 2 bits
    assert torch.equal(one("posterize", batch, 0.0), batch)  # 8 bits
    assert torch.equal(one("solarize", batch, 1.0), 255 - batch)  # threshold 0: all inverted
    assert torch.equal(one("solarize", batch, 0.0), torch.where(batch == 255, 0, batch))


def test_autocontrast_stretches_each_channel_to_the_full_range_and_keeps_flat_ones():
    batch = torch.stack([torch.full((8, 8), 50), torch.full((8, 8), 77)]).to(torch.uint8)
    batch = batch.unsqueeze(0).repeat(1, 1, 1, 1)
    batch[0, 0, 0, 0] = 100  # channel 0 spans 50..100; channel 1 is flat
    out = one("autocontrast", batch, 0.0)
    assert out[0, 0].min() == 0 and out[0, 0].max() == 255
    assert torch.equal(out[0, 1], batch[0, 1])


def test_sharpness_leaves_a_flat_image_alone_and_sharpens_an_edge():
    flat = torch.full((1, 3, 8, 8), 120, dtype=torch.uint8)
    assert torch.equal(one("sharpness", flat, 1.0), flat)
    edge = flat.clone()
    edge[..., 4:] = 200
    sharper = one("sharpness", edge, 1.0)
    assert sharper[0, 0, 4, 4] > 200 and sharper[0, 0, 4, 3] < 120


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_translate_shifts_by_32_pixels_at_224_scaled_to_the_side_and_fills_black(sign):
    batch = images(2, h=28, w=28)  # 32/224 of 28 pixels: 4
    moved = one("translate_x", batch, sign)
    if sign > 0:
        assert torch.equal(moved[..., :-4], batch[..., 4:]) and not moved[..., -4:].any()
    else:
        assert torch.equal(moved[..., 4:], batch[..., :-4]) and not moved[..., :4].any()
    down = one("translate_y", batch, sign)
    shifted = down[..., :-4, :] if sign > 0 else down[..., 4:, :]
    assert torch.equal(shifted, batch[..., 4:, :] if sign > 0 else batch[..., :-4, :])


def test_rotate_by_90_degrees_turns_a_square_image_a_quarter():
    batch = images(2)
    turned = one("rotate", batch, 20 / 30)  # 20 of 30 levels of 135 degrees: 90
    assert any(torch.equal(turned, torch.rot90(batch, k, dims=(2, 3))) for k in (1, -1))


def test_shear_moves_rows_by_an_amount_growing_with_their_distance_from_the_centre():
    batch = torch.zeros((1, 1, 16, 16), dtype=torch.uint8)
    batch[..., :, 8] = 255  # a vertical line
    sheared = one("shear_x", batch, 0.5).float()[0, 0]
    columns = (sheared * torch.arange(16.0)).sum(1) / sheared.sum(1)  # the line's x per row
    steps = columns[1:] - columns[:-1]
    assert torch.allclose(steps, steps.mean().expand_as(steps), atol=0.05)
    assert abs(steps.mean()) == pytest.approx(0.99 * 0.5, abs=0.02)


def test_the_augment_section_turns_it_on():
    batch = images(16)
    plain = AugmentConfig(crop_padding=0, flip=False)
    strong = AugmentConfig(crop_padding=0, flip=False, trivial_augment=True)
    assert torch.equal(augment_batch(batch, plain, torch.Generator().manual_seed(0)), batch)
    out = augment_batch(batch, strong, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and not torch.equal(out, batch)
