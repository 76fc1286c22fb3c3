"""Grad-CAM: equal to a direct computation, valid for every kind of registry model, harmless to
the model, and pointing at the object on real Fashion-MNIST items."""

import json

import pytest
import torch
import torch.nn.functional as F

import resnetkit as rk
from resnetkit.data import DataError, load_dataset
from resnetkit.explain import class_activation_maps, grad_cam
from resnetkit.pretrained import find_bundled
from train_helpers import TINY_SPEC


def tiny_model():
    torch.manual_seed(0)
    model = rk.create_model(TINY_SPEC)
    for module in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def test_grad_cam_equals_the_direct_computation_on_a_tiny_net():
    model = tiny_model()
    images = torch.randn(3, 3, 16, 16)
    features = model.forward_features(images)
    features.retain_grad()
    logits = model.forward_head(features)
    logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
    weights = features.grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * features).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=(16, 16), mode="bilinear")[:, 0].detach()
    low = cam.flatten(1).min(1).values[:, None, None]
    high = cam.flatten(1).max(1).values[:, None, None]
    expected = (cam - low) / (high - low)
    torch.testing.assert_close(grad_cam(model, images), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("name", "chans", "side"),
    [
        ("resnet8", 3, 32),  # v1 basic, CIFAR stem, shortcut A
        ("resnet20", 1, 28),  # one channel, Fashion-MNIST's size
        ("preact_resnet18", 3, 64),  # v2 basic, ImageNet stem
        ("resnet50", 3, 64),  # v1 bottleneck
        ("resnext50_32x4d", 3, 48),  # grouped bottleneck, a size no paper uses
    ],
)
def test_grad_cam_works_for_every_kind_of_registry_model(name, chans, side):
    model = rk.create_model(name, in_chans=chans, num_classes=5).eval()
    maps = grad_cam(model, torch.randn(2, chans, side, side), target=torch.tensor([1, 3]))
    assert maps.shape == (2, side, side) and maps.dtype == torch.float32
    assert maps.min() >= 0 and maps.max() <= 1


def test_grad_cam_leaves_mode_and_parameter_gradients_as_it_found_them():
    model = tiny_model().train()
    model(torch.randn(4, 3, 16, 16)).sum().backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    stats = model.state_dict()
    grad_cam(model, torch.randn(2, 3, 16, 16))
    assert model.training
    assert all(torch.equal(p.grad, before[n]) for n, p in model.named_parameters())
    # Explained in eval mode: the BatchNorm statistics did not move.
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())


def test_a_named_layer_gives_a_map_at_that_layers_resolution():
    model = tiny_model()
    first_stage = model.stage_names[0]
    raw = class_activation_maps(model, torch.randn(2, 3, 16, 16), layer=first_stage)
    assert raw.shape == (2, 16, 16)  # the first stage keeps the CIFAR stem's resolution
    default = class_activation_maps(model, torch.randn(2, 3, 16, 16))
    assert default.shape == (2, 8, 8)


def test_another_target_class_gives_another_map():
    model = tiny_model()
    images = torch.randn(1, 3, 16, 16)
    assert not torch.allclose(grad_cam(model, images, 0), grad_cam(model, images, 7))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": 10}, "target classes must be in 0..9"),
        ({"target": torch.tensor([1, 2, 3])}, "3 classes for 2 images"),
        ({"layer": "nope"}, "no layer 'nope'"),
        ({"layer": "fc"}, "feature map"),
    ],
)
def test_bad_targets_and_layers_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        grad_cam(tiny_model(), torch.randn(2, 3, 16, 16), **kwargs)


def test_on_real_items_pasted_into_a_blank_canvas_the_peak_falls_on_the_object():
    try:
        test = load_dataset("fashion-mnist", "test")
    except DataError:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    bundled = find_bundled("resnet20_fashion_mnist")
    mean = json.loads(bundled.metadata()["mean"])[0]
    std = json.loads(bundled.metadata()["std"])[0]
    model = rk.create_model("resnet20", pretrained="fashion_mnist").eval()
    generator = torch.Generator().manual_seed(0)
    count, side, hits = 200, 84, 0
    canvas = torch.zeros(count, 1, side, side)
    boxes = []
    for i in range(count):
        top, left = torch.randint(0, side - 28, (2,), generator=generator).tolist()
        canvas[i, 0, top : top + 28, left : left + 28] = test.images[i, 0].float() / 255
        boxes.append((top, left))
    maps = grad_cam(model, (canvas - mean) / std, target=test.labels[:count])
    for i, (top, left) in enumerate(boxes):
        row, col = divmod(int(maps[i].argmax()), side)
        hits += top <= row < top + 28 and left <= col < left + 28
    # Measured: 200 of 200 with the bundled weights.
    assert hits >= 0.95 * count
