"""Mixup and cutmix: soft targets that are the lambda-weighted one-hots, boxes whose area is
the lambda they report, and every draw reproducible from the generator."""

import random

import pytest
import torch

from resnetkit.data.augment import AugmentConfig
from resnetkit.data.mixing import (
    box_lambda,
    cutmix,
    cutmix_box,
    mix_batch,
    mix_targets,
    mixup,
    smooth_one_hot,
)

K = 10


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(n: int = 8, side: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image is filled with its own index, and its label is that index: the source of
    every output pixel, and so the true share of each label, can be read off."""
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, side, side)
    return images.clone(), torch.arange(n) % K


def test_smoothed_one_hot_rows_sum_to_one_and_match_cross_entropys_smoothing():
    labels = torch.tensor([0, 3, 9])
    targets = smooth_one_hot(labels, K, smoothing=0.1)
    torch.testing.assert_close(targets.sum(1), torch.ones(3))
    assert targets[1, 3].item() == pytest.approx(0.9 + 0.01)
    assert targets[1, 0].item() == pytest.approx(0.01)
    logits = torch.randn(3, K)
    expected = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    got = -(targets * logits.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(got, expected)


def test_mixed_targets_are_the_lambda_weighted_one_hots_of_each_sample_and_its_partner():
    labels = torch.tensor([1, 2, 3, 4])
    targets = mix_targets(labels, K, lam=0.7)
    one_hot = torch.nn.functional.one_hot(labels, K).float()
    torch.testing.assert_close(targets, 0.7 * one_hot + 0.3 * one_hot.flip(0))
    torch.testing.assert_close(targets.sum(1), torch.ones(4))


def test_mixup_blends_each_image_with_its_partner_by_lambda():
    images, _ = _batch(4)
    out = mixup(images, 0.25)
    expected = 0.25 * torch.arange(4.0) + 0.75 * torch.arange(4.0).flip(0)
    torch.testing.assert_close(out[:, 0, 0, 0], expected)


def test_mixup_refuses_uint8_images():
    with pytest.raises(ValueError, match="float"):
        mixup(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), 0.5)


@pytest.mark.parametrize("lam", [0.1, 0.5, 0.9])
def test_a_cutmix_box_inside_the_image_covers_one_minus_lambda_of_it(lam):
    # Centred: nothing is clipped, so only integer rounding separates the area from 1 - lam.
    rng = random.Random(0)
    rng.randrange = lambda stop: stop // 2
    box = cutmix_box(100, 100, lam, rng)
    assert box_lambda(box, 100, 100) == pytest.approx(lam, abs=0.03)


def test_cutmix_replaces_exactly_the_box_and_box_lambda_is_the_share_left():
    images, _ = _batch(6, side=20)
    box = cutmix_box(20, 20, 0.6, random.Random(3))
    out = cutmix(images, box)
    own = (out == images).flatten(1).float().mean(1)
    torch.testing.assert_close(own, torch.full((6,), box_lambda(box, 20, 20)))
    top, left, bottom, right = box
    assert torch.equal(
        out[:, :, top:bottom, left:right], images.flip(0)[:, :, top:bottom, left:right]
    )


@pytest.mark.parametrize(
    "cfg",
    [
        AugmentConfig(cutmix_alpha=1.0),
        AugmentConfig(mixup_alpha=0.4),
        AugmentConfig(mixup_alpha=0.4, cutmix_alpha=1.0),
    ],
    ids=["cutmix", "mixup", "both"],
)
def test_mixed_targets_are_the_true_share_of_each_label_in_the_mixed_image(cfg):
    images, labels = _batch(8)
    for seed in range(10):
        mixed, targets = mix_batch(images, labels, K, cfg, _gen(seed))
        torch.testing.assert_close(targets.sum(1), torch.ones(8))
        # Pixel value v = lam * own + (1 - lam) * partner, so the own share is recoverable.
        own, partner = images[:, 0, 0, 0], images.flip(0)[:, 0, 0, 0]
        share = ((mixed.mean((1, 2, 3)) - partner) / (own - partner))[own != partner]
        expected = targets[torch.arange(8), labels][own != partner]
        torch.testing.assert_close(share, expected, rtol=1e-5, atol=1e-5)


def test_the_same_generator_seed_gives_the_same_mix_and_another_seed_another():
    images, labels = _batch(8)
    cfg = AugmentConfig(mixup_alpha=0.4, cutmix_alpha=1.0)
    first = mix_batch(images, labels, K, cfg, _gen(7))
    again = mix_batch(images, labels, K, cfg, _gen(7))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    others = [mix_batch(images, labels, K, cfg, _gen(seed))[1] for seed in range(8, 12)]
    assert any(not torch.equal(first[1], other) for other in others)


def test_mix_prob_zero_or_mixing_off_leaves_images_and_gives_smoothed_one_hots():
    images, labels = _batch(4)
    for cfg in (AugmentConfig(), AugmentConfig(mixup_alpha=1.0, mix_prob=0.0)):
        out, targets = mix_batch(images, labels, K, cfg, _gen(), label_smoothing=0.1)
        assert out is images
        torch.testing.assert_close(targets, smooth_one_hot(labels, K, 0.1))


def test_mix_prob_and_switch_prob_set_the_shares_of_mixed_and_cutmix_batches():
    images, labels = _batch(4)
    cfg = AugmentConfig(mixup_alpha=1.0, cutmix_alpha=1.0, mix_prob=0.5, mix_switch_prob=0.25)
    kinds = {"none": 0, "mixup": 0, "cutmix": 0}
    for seed in range(800):
        out, _ = mix_batch(images, labels, K, cfg, _gen(seed))
        if out is images:
            kinds["none"] += 1
        elif bool((out == out[:, :, :1, :1]).all()):  # mixup keeps each image uniform
            kinds["mixup"] += 1
        else:
            kinds["cutmix"] += 1
    assert 340 < kinds["none"] < 460  # binomial(800, 0.5): about 4 standard deviations
    assert 0.15 < kinds["cutmix"] / (kinds["cutmix"] + kinds["mixup"]) < 0.35


def test_label_smoothing_is_folded_into_mixed_targets():
    images, labels = _batch(4)
    cfg = AugmentConfig(mixup_alpha=1.0)
    _, targets = mix_batch(images, labels, K, cfg, _gen(1), label_smoothing=0.2)
    assert targets.min().item() == pytest.approx(0.02)  # smoothing / K on unrelated classes
    torch.testing.assert_close(targets.sum(1), torch.ones(4))
