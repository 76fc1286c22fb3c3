from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_fixtures import DEVICES, write_image_folder
from resnetkit.core.options import ConfigError
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


def _marked(n: int = 40) -> InMemoryDataset:
    """Image i holds i + 1 in its left column and zeros elsewhere: a flip moves it right."""
    info = DatasetInfo("marked", ("a", "b"), 1, (4, 4), (0.0,), (1.0,))
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, :, 0] = torch.arange(1, n + 1, dtype=torch.uint8).view(n, 1)
    return InMemoryDataset(images, torch.arange(n) % 2, info)


def _flipped_by_id(batches) -> dict[int, bool]:
    seen = {}
    for images, _ in batches:
        left, right = images[:, 0, 0, 0], images[:, 0, 0, 3]
        for a, b in zip(left.tolist(), right.tolist(), strict=True):
            seen[round(max(a, b) * 255) - 1] = b > a
    return seen


def test_alternating_flips_mirror_each_image_in_exactly_one_of_two_epochs():
    cfg = AugmentConfig(crop_padding=0, flip=True, alternate_flip=True)
    loader = BatchIterator(_marked(40), 8, seed=5, augment=cfg)
    epochs = [_flipped_by_id(loader.iter_from(epoch)) for epoch in range(4)]
    assert all(len(flips) == 40 for flips in epochs)
    assert all(epochs[0][i] != epochs[1][i] for i in range(40))
    assert epochs[0] == epochs[2] and epochs[1] == epochs[3]
    assert 8 <= sum(epochs[0].values()) <= 32  # a random half, not all or none


def test_random_flips_do_not_alternate():
    cfg = AugmentConfig(crop_padding=0, flip=True)
    loader = BatchIterator(_marked(40), 8, seed=5, augment=cfg)
    first, second = (_flipped_by_id(loader.iter_from(epoch)) for epoch in range(2))
    assert any(first[i] == second[i] for i in range(40))


def test_alternating_flips_depend_on_the_image_not_on_its_batch_or_rank():
    ds = _marked(40)
    cfg = AugmentConfig(crop_padding=0, flip=True, alternate_flip=True)
    whole = _flipped_by_id(BatchIterator(ds, 8, seed=5, augment=cfg).iter_from(1))
    other_batches = _flipped_by_id(BatchIterator(ds, 5, seed=5, augment=cfg).iter_from(1))
    ranks = {}
    for rank in range(2):
        shard = BatchIterator(ds, 8, seed=5, augment=cfg, rank=rank, world_size=2)
        ranks.update(_flipped_by_id(shard.iter_from(1)))
    assert whole == other_batches == ranks


def test_alternating_flips_need_flips():
    with pytest.raises(ConfigError, match=r"alternate_flip.*--flip"):
        AugmentConfig(flip=False, alternate_flip=True)


@pytest.mark.parametrize("device", DEVICES)
def test_device_loader_alternates_flips_as_the_in_memory_iterator(tmp_path: Path, device):
    # Each image is dark with a bright left column of its own shade: a flip moves it right.
    for i in range(18):
        pixels = np.zeros((8, 8, 3), dtype=np.uint8)
        pixels[:, 0] = 20 + 10 * i
        (tmp_path / "imgs" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(tmp_path / "imgs" / "ab"[i % 2] / f"{i}.png")
    cfg = AugmentConfig(crop_padding=0, flip=True, alternate_flip=True)
    folder = tmp_path / "imgs"
    streamed = DeviceLoader(
        make_folder_loader(ImageFolderDataset(folder, (8, 8)), 4, seed=3), device, cfg, seed=3
    )
    in_memory = BatchIterator(
        load_image_folder_in_memory(folder, (8, 8)).to(device), 4, seed=3, augment=cfg
    )
    flipped = {}
    for epoch in (0, 1):
        pairs = zip(streamed.iter_from(epoch), in_memory.iter_from(epoch), strict=True)
        for (xa, ya), (xb, yb) in pairs:
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
            for image in xa:
                left, right = image[0, 0, 0].item(), image[0, 0, 7].item()
                flipped.setdefault(round(max(left, right), 4), []).append(right > left)
    assert len(flipped) == 18 and all(len(seen) == 2 for seen in flipped.values())
    assert all(seen[0] != seen[1] for seen in flipped.values())
    resumed = list(streamed.iter_from(1, start_batch=2))
    for (xa, _), (xb, _) in zip(resumed, list(in_memory.iter_from(1))[2:], strict=True):
        assert torch.equal(xa, xb)
