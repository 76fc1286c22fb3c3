"""Patch whitening: the first convolution initialised from the data's k x k patches."""

import pytest
import torch
import torch.nn.functional as F

import resnetkit as rk
from resnetkit.checkpoint import load_model_checkpoint
from resnetkit.config import ConfigError, TrainConfig
from resnetkit.spec import ResNetSpec
from resnetkit.train import train
from resnetkit.training.whitening import patch_eigenbasis, whiten_first_conv, whitening_filters
from train_helpers import tiny_config


def correlated_images(n=256, channels=3, side=12, seed=0):
    """Smooth noise whose channels share a component: neighbouring pixels and channels correlate."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 1, side + 2, side + 2, generator=g)
    smooth = F.avg_pool2d(noise, 3, stride=1)
    own = torch.randn(n, channels, side, side, generator=g)
    return smooth.expand(-1, channels, -1, -1) + 0.3 * own


def test_eigenvalues_come_largest_first_and_eigenvectors_are_orthonormal():
    values, vectors = patch_eigenbasis(correlated_images(), 3)
    assert values.shape == (27,) and torch.all(values[:-1] >= values[1:])
    assert torch.allclose(vectors @ vectors.T, torch.eye(27, dtype=vectors.dtype), atol=1e-8)


def test_the_filters_decorrelate_patches_to_unit_variance_and_come_in_sign_pairs():
    images = correlated_images()
    weight = whitening_filters(images, out_channels=16, kernel_size=3, eps=1e-8)
    assert weight.shape == (16, 3, 3, 3)
    assert torch.equal(weight[8:], -weight[:8])
    out = F.conv2d(images, weight[:8]).transpose(0, 1).reshape(8, -1)
    cov = torch.cov(out.double())
    assert torch.allclose(cov, torch.eye(8, dtype=cov.dtype), atol=0.02)


def test_resnet20_stem_gets_all_its_filters_and_an_imagenet_stem_its_64():
    images = correlated_images()
    model = rk.create_model("resnet20", num_classes=10)
    assert whiten_first_conv(model, images) == 16
    assert torch.equal(model.conv1.weight[8:], -model.conv1.weight[:8])
    big = rk.create_model("resnet18", num_classes=10)  # 7x7x3 = 147 patch values, 64 filters
    assert whiten_first_conv(big, correlated_images(n=16, side=16)) == 64


def test_a_grayscale_net_needs_grayscale_images():
    model = rk.create_model("resnet20", in_chans=1, num_classes=10)
    with pytest.raises(ValueError, match="1 channels from images with 3"):
        whiten_first_conv(model, correlated_images())


def test_training_with_whiten_stem_is_reproducible_and_starts_elsewhere(tmp_path):
    changes = dict(epochs=1, max_steps=2, whiten_stem=True)
    a = train(tiny_config(tmp_path / "a", **changes))
    b = train(tiny_config(tmp_path / "b", **changes))
    plain = train(tiny_config(tmp_path / "c", epochs=1, max_steps=2))
    weights = [
        load_model_checkpoint(r.run_dir / "checkpoints/last.safetensors").model.conv1.weight
        for r in (a, b, plain)
    ]
    assert torch.equal(weights[0], weights[1])
    assert not torch.allclose(weights[0], weights[2])
    assert "whiten_stem: true" in (a.run_dir / "config.yaml").read_text()


def test_whitening_would_overwrite_pretrained_weights_so_the_pair_is_refused():
    with pytest.raises(ConfigError, match="whiten_stem"):
        TrainConfig(whiten_stem=True, pretrained="imagenet")


def test_a_frozen_whitened_stem_keeps_its_filters_while_its_bias_trains(tmp_path):
    spec_path = tmp_path / "patch.yaml"
    ResNetSpec(
        stages=[(1, 8, 2), (0, 16, 2)],
        stem="patch",
        stem_width=24,
        stage_entry="conv_pool",
        num_classes=10,
    ).to_yaml(spec_path)

    def stem_after(name, steps, **changes):
        cfg = tiny_config(
            tmp_path / name,
            epochs=1,
            max_steps=steps,
            whiten_stem=True,
            model=str(spec_path),
            **changes,
        )
        return load_model_checkpoint(train(cfg).run_dir / "checkpoints/last.safetensors").model

    one, three = stem_after("one", 1, freeze_stem=True), stem_after("three", 3, freeze_stem=True)
    free = stem_after("free", 3)
    # All 12 eigenvectors of 2x2x3 patches, with both signs, fill the 24 filters; frozen, they
    # are the same after one step and after three, while the bias keeps training.
    weight = three.conv1.weight
    assert torch.allclose(weight[:12], -weight[12:])
    assert torch.equal(one.conv1.weight, weight)
    assert not torch.equal(one.conv1.bias, three.conv1.bias)
    assert not torch.allclose(free.conv1.weight, weight)
