import pytest
import torch

from resnetkit.data import (
    DataError,
    DatasetInfo,
    InMemoryDataset,
    adapt_dataset,
    channel_stats,
    split_dataset,
    stratified_subset,
)


def _info(num_classes: int = 3, in_chans: int = 1, size: tuple[int, int] = (4, 4)) -> DatasetInfo:
    return DatasetInfo(
        name="toy",
        class_names=tuple(f"c{i}" for i in range(num_classes)),
        in_chans=in_chans,
        image_size=size,
        mean=(0.5,) * in_chans,
        std=(0.25,) * in_chans,
    )


def _dataset(n: int = 30, num_classes: int = 3) -> InMemoryDataset:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone()
    labels = torch.arange(n) % num_classes
    return InMemoryDataset(images, labels, _info(num_classes))


def test_dataset_info_num_classes_counts_class_names():
    assert _info(num_classes=7).num_classes == 7


def test_dataset_info_stores_lists_as_tuples():
    info = DatasetInfo("toy", ["a", "b"], 1, [8, 8], [0.1], [0.2])
    assert info.class_names == ("a", "b") and info.image_size == (8, 8)
    assert hash(info)


def test_dataset_info_rejects_mean_with_wrong_channel_count():
    with pytest.raises(DataError, match="mean and std need 3 values"):
        DatasetInfo("toy", ("a",), 3, (8, 8), (0.5,), (0.2,))


def test_in_memory_dataset_rejects_labels_out_of_range():
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 3\), found \[0, 3\]"):
        InMemoryDataset(images, torch.tensor([0, 3]), _info())


def test_in_memory_dataset_rejects_float_images():
    with pytest.raises(DataError, match="uint8"):
        InMemoryDataset(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]), _info())


def test_in_memory_dataset_rejects_images_that_disagree_with_info():
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(DataError, match="info says"):
        InMemoryDataset(images, torch.tensor([0, 1]), _info())


def test_in_memory_dataset_rejects_count_mismatch():
    images = torch.zeros(3, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(DataError, match="3 images but 2 labels"):
        InMemoryDataset(images, torch.tensor([0, 1]), _info())


def test_in_memory_dataset_makes_images_contiguous():
    images = torch.zeros(2, 4, 4, 1, dtype=torch.uint8).permute(0, 3, 1, 2)
    ds = InMemoryDataset(images, torch.tensor([0, 1]), _info())
    assert ds.images.is_contiguous()


def test_subset_keeps_chosen_samples_in_given_order():
    ds = _dataset()
    sub = ds.subset([5, 2, 9])
    assert len(sub) == 3
    assert sub.images[:, 0, 0, 0].tolist() == [5, 2, 9]
    assert sub.labels.tolist() == [2, 2, 0]


def test_to_returns_an_independent_copy():
    ds = _dataset()
    moved = ds.to("cpu")
    moved.images.zero_()
    assert ds.images.sum() > 0
    assert moved.device == torch.device("cpu")


def test_split_dataset_is_stratified_disjoint_and_deterministic():
    ds = _dataset(n=30)
    train, val = split_dataset(ds, 0.2, seed=1)
    train_ids = set(train.images[:, 0, 0, 0].tolist())
    val_ids = set(val.images[:, 0, 0, 0].tolist())
    assert train_ids.isdisjoint(val_ids) and len(train_ids | val_ids) == 30
    assert torch.bincount(val.labels, minlength=3).tolist() == [2, 2, 2]
    again, _ = split_dataset(ds, 0.2, seed=1)
    other, _ = split_dataset(ds, 0.2, seed=2)
    assert torch.equal(again.images, train.images)
    assert not torch.equal(other.images, train.images)


def test_split_dataset_rejects_a_fraction_that_leaves_no_validation_data():
    with pytest.raises(DataError, match="both need at least one"):
        split_dataset(_dataset(n=6), 0.01, seed=0)


def test_channel_stats_match_torch_mean_and_std():
    images = torch.randint(0, 256, (8, 3, 5, 5), dtype=torch.uint8)
    mean, std = channel_stats(images)
    x = images.double() / 255
    assert mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist(), abs=1e-9)
    assert std == pytest.approx(x.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-9)


def test_adapt_dataset_repeats_grayscale_to_three_channels_with_repeated_stats():
    ds = _dataset()
    rgb = adapt_dataset(ds, in_chans=3)
    assert rgb.images.shape == (30, 3, 4, 4)
    assert torch.equal(rgb.images[:, 2], ds.images[:, 0])
    assert rgb.info.mean == (0.5, 0.5, 0.5) and rgb.info.in_chans == 3


def test_adapt_dataset_resizes_to_the_requested_size():
    ds = _dataset()
    big = adapt_dataset(ds, image_size=(8, 6))
    assert big.images.shape == (30, 1, 8, 6) and big.info.image_size == (8, 6)
    # Constant images stay constant under bilinear resizing.
    assert torch.equal(big.images[:, :, 3, 2], ds.images[:, :, 0, 0])


def test_adapt_dataset_is_a_no_op_when_nothing_changes():
    ds = _dataset()
    assert adapt_dataset(ds, image_size=(4, 4), in_chans=1) is ds


def test_a_subset_of_a_class_ordered_dataset_keeps_every_class_in_proportion():
    labels = torch.tensor([0] * 40 + [1] * 40 + [2] * 20)  # an image folder's order
    chosen = stratified_subset(labels, 10, seed=0)
    assert len(chosen) == 10 and torch.equal(chosen, chosen.sort().values)
    assert len(set(chosen.tolist())) == 10
    assert torch.bincount(labels[chosen], minlength=3).tolist() == [4, 4, 2]


def test_subset_selection_is_seeded():
    labels = torch.arange(50) % 5
    assert torch.equal(stratified_subset(labels, 20, seed=1), stratified_subset(labels, 20, 1))
    assert not torch.equal(stratified_subset(labels, 20, seed=1), stratified_subset(labels, 20, 2))
    assert torch.equal(stratified_subset(labels, 80, seed=1), torch.arange(50))
