from pathlib import Path

import pytest
import torch

from data_fixtures import DEVICES, write_image_folder
from resnetkit.data import (
    AugmentConfig,
    BatchIterator,
    DatasetInfo,
    DeviceLoader,
    ImageFolderDataset,
    InMemoryDataset,
    epoch_indices,
    load_image_folder_in_memory,
    make_folder_loader,
    make_loader,
)


def _indexed(n: int = 50) -> InMemoryDataset:
    """Sample i is filled with value i; mean 0 and std 1 make it readable after normalizing."""
    info = DatasetInfo("indexed", ("a", "b"), 1, (4, 4), (0.0,), (1.0,))
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone()
    return InMemoryDataset(images, torch.arange(n) % 2, info)


def _ids(images: torch.Tensor) -> list[int]:
    return (images[:, 0, 0, 0] * 255).round().long().tolist()


def _epoch_ids(iterator) -> list[int]:
    return [i for images, _ in iterator for i in _ids(images)]


def test_batch_iterator_len_counts_batches_with_and_without_drop_last():
    ds = _indexed(50)
    assert len(BatchIterator(ds, 16)) == 4
    assert len(BatchIterator(ds, 16, drop_last=True)) == 3
    sizes = [len(labels) for _, labels in BatchIterator(ds, 16, drop_last=True)]
    assert sizes == [16, 16, 16]


def test_batch_iterator_yields_normalized_float_images_and_int64_labels():
    info = DatasetInfo("toy", ("a", "b"), 1, (4, 4), (0.5,), (0.25,))
    ds = InMemoryDataset(
        torch.full((8, 1, 4, 4), 255, dtype=torch.uint8), torch.zeros(8).long(), info
    )
    images, labels = next(iter(BatchIterator(ds, 8, shuffle=False)))
    assert images.dtype == torch.float32 and labels.dtype == torch.int64
    torch.testing.assert_close(images, torch.full((8, 1, 4, 4), 2.0))


def test_each_epoch_visits_every_sample_once_in_a_new_order():
    loader = BatchIterator(_indexed(50), 16, shuffle=True, seed=1)
    first, second = _epoch_ids(loader), _epoch_ids(loader)
    assert sorted(first) == list(range(50)) and sorted(second) == list(range(50))
    assert first != second, "iterating again must move on to the next epoch"


def test_without_shuffle_samples_come_in_order():
    assert _epoch_ids(BatchIterator(_indexed(20), 8, shuffle=False)) == list(range(20))


def test_same_seed_and_epoch_reproduce_the_same_batches():
    a = BatchIterator(_indexed(), 8, seed=5, augment=AugmentConfig(crop_padding=1))
    b = BatchIterator(_indexed(), 8, seed=5, augment=AugmentConfig(crop_padding=1))
    a.set_epoch(3)
    b.set_epoch(3)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("device", DEVICES)
def test_resuming_mid_epoch_matches_an_uninterrupted_run(device):
    ds = InMemoryDataset(
        torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8),
        torch.randint(0, 10, (40,)),
        DatasetInfo("rand", tuple("abcdefghij"), 3, (8, 8), (0.5,) * 3, (0.2,) * 3),
    ).to(device)
    cfg = AugmentConfig(crop_padding=2, flip=True, cutout=3)
    full = list(BatchIterator(ds, 6, seed=9, augment=cfg).iter_from(epoch=2))
    resumed = list(BatchIterator(ds, 6, seed=9, augment=cfg).iter_from(epoch=2, start_batch=4))
    assert len(resumed) == len(full) - 4
    assert full[0][0].device == ds.device
    for (xa, ya), (xb, yb) in zip(full[4:], resumed, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_iter_from_rejects_a_start_batch_past_the_end():
    with pytest.raises(ValueError, match="start_batch"):
        BatchIterator(_indexed(10), 4).iter_from(0, start_batch=4)


def test_ddp_ranks_split_each_epoch_into_disjoint_equal_shares():
    ds = _indexed(48)
    shares = [_epoch_ids(BatchIterator(ds, 8, seed=2, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shares] == [16, 16, 16]
    assert sorted(i for share in shares for i in share) == list(range(48))


def test_ddp_ranks_get_equal_batch_counts_when_samples_do_not_divide():
    ds = _indexed(50)
    loaders = [BatchIterator(ds, 8, rank=r, world_size=4) for r in range(4)]
    assert {len(loader) for loader in loaders} == {2}
    ids = [_epoch_ids(loader) for loader in loaders]
    assert all(len(i) == 13 for i in ids)
    assert {i for share in ids for i in share} == set(range(50))


def test_epoch_indices_with_drop_last_truncates_to_a_multiple_of_world_size():
    shares = [epoch_indices(50, 0, 0, True, r, 4, drop_last=True) for r in range(4)]
    assert all(len(s) == 12 for s in shares)
    assert len(set(torch.cat(shares).tolist())) == 48


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "imgs", {"a": 7, "b": 6, "c": 5}, size=(10, 8))


def test_folder_loader_yields_uint8_batches(folder: Path):
    dataset = ImageFolderDataset(folder, image_size=(8, 8))
    loader = make_folder_loader(dataset, batch_size=4, shuffle=True, num_workers=0, seed=0)
    images, labels = next(iter(loader))
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 8, 8)
    assert labels.dtype == torch.int64
    assert len(loader) == 5


def test_device_loader_gives_the_same_batches_as_the_in_memory_iterator(folder: Path):
    cfg = AugmentConfig(crop_padding=2, flip=True)
    streamed = DeviceLoader(
        make_folder_loader(ImageFolderDataset(folder, (8, 8)), 4, seed=3), "cpu", cfg, seed=3
    )
    in_memory = BatchIterator(load_image_folder_in_memory(folder, (8, 8)), 4, seed=3, augment=cfg)
    assert len(streamed) == len(in_memory) == 5
    for (xa, ya), (xb, yb) in zip(streamed.iter_from(1), in_memory.iter_from(1), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_device_loader_resumes_mid_epoch(folder: Path):
    loader = DeviceLoader(
        make_folder_loader(ImageFolderDataset(folder, (8, 8)), 4, seed=1),
        "cpu",
        AugmentConfig(crop_padding=1),
        seed=1,
    )
    full = list(loader.iter_from(2))
    resumed = list(loader.iter_from(2, start_batch=3))
    assert len(resumed) == 2 and len(loader) == 5
    for (xa, ya), (xb, yb) in zip(full[3:], resumed, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_make_loader_picks_the_fast_path_for_in_memory_data(folder: Path):
    assert isinstance(make_loader(_indexed(), 8), BatchIterator)
    assert isinstance(make_loader(ImageFolderDataset(folder, (8, 8)), 8), DeviceLoader)
