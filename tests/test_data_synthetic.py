import torch
import torch.nn.functional as F

from resnetkit.data import make_synthetic, normalize


def test_make_synthetic_has_requested_shape_and_balanced_labels():
    ds = make_synthetic(100, num_classes=5, image_size=(12, 10), in_chans=1)
    assert ds.images.shape == (100, 1, 12, 10) and ds.images.dtype == torch.uint8
    assert torch.bincount(ds.labels).tolist() == [20] * 5
    assert ds.info.num_classes == 5 and ds.info.image_size == (12, 10)


def test_make_synthetic_is_deterministic_under_seed():
    a, b = make_synthetic(64, seed=3), make_synthetic(64, seed=3)
    c = make_synthetic(64, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)


def test_splits_made_with_different_seeds_share_statistics():
    assert make_synthetic(8, seed=0).info == make_synthetic(16, seed=1).info


def test_nearest_class_mean_trained_on_one_seed_classifies_another():
    train, test = make_synthetic(200, seed=0), make_synthetic(100, seed=1)
    centroids = torch.stack(
        [train.images[train.labels == k].float().mean(0) for k in range(10)]
    ).flatten(1)
    distances = torch.cdist(test.images.float().flatten(1), centroids)
    accuracy = (distances.argmin(1) == test.labels).float().mean()
    assert accuracy > 0.95


def test_a_tiny_conv_net_fits_it_in_a_few_steps():
    torch.manual_seed(0)
    ds = make_synthetic(256, image_size=(16, 16))
    x = normalize(ds.images, ds.info.mean, ds.info.std)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(40):
        loss = F.cross_entropy(model(x), ds.labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    accuracy = (model(x).argmax(1) == ds.labels).float().mean()
    assert accuracy > 0.9
