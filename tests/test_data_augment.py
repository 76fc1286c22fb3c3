import pytest
import torch
import torch.nn.functional as F

from data_fixtures import DEVICES
from resnetkit.data import (
    AugmentConfig,
    Normalize,
    augment_batch,
    cutout,
    normalize,
    random_crop,
    random_flip,
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
