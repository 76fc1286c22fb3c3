"""Batches for the training loop: (normalized float images, labels) on the target device.

Shuffling and augmentation are derived from (seed, epoch, batch index, rank) alone, so
resuming at batch k of epoch e reproduces an uninterrupted run exactly.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from resnetkit.data.augment import AugmentConfig, Normalize, alternating_flips, augment_batch
from resnetkit.data.base import DataError, InMemoryDataset

__all__ = [
    "BatchIterator",
    "DeviceLoader",
    "EpochSampler",
    "derive_seed",
    "epoch_indices",
    "make_folder_loader",
    "make_loader",
    "shard_length",
]

Batch = tuple[torch.Tensor, torch.Tensor]

_MASK64 = (1 << 64) - 1


def derive_seed(*values: int) -> int:
    """Mix integers into one 63-bit seed (splitmix64 finalizer), stable across runs."""
    x = 0x9E3779B97F4A7C15
    for value in values:
        x = (x ^ (value & _MASK64)) & _MASK64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
        x ^= x >> 31
    return x >> 1


def _check_shard(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


def epoch_indices(
    num_samples: int,
    epoch: int,
    seed: int,
    shuffle: bool,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
) -> torch.Tensor:
    """This rank's sample order for `epoch` (CPU int64), the same on every device.

    All ranks draw the same permutation and take every world_size-th entry; without
    drop_last the permutation wraps around so every rank gets the same number of samples.
    """
    _check_shard(rank, world_size)
    if shuffle:
        generator = torch.Generator().manual_seed(derive_seed(seed, epoch))
        order = torch.randperm(num_samples, generator=generator)
    else:
        order = torch.arange(num_samples)
    if world_size > 1:
        if drop_last:
            order = order[: num_samples // world_size * world_size]
        else:
            total = math.ceil(num_samples / world_size) * world_size
            order = order.repeat(math.ceil(total / max(num_samples, 1)))[:total]
        order = order[rank::world_size]
    return order


def shard_length(num_samples: int, world_size: int = 1, drop_last: bool = False) -> int:
    """How many samples each rank gets per epoch (see epoch_indices)."""
    if world_size == 1:
        return num_samples
    return num_samples // world_size if drop_last else math.ceil(num_samples / world_size)


def _num_batches(num_samples: int, batch_size: int, drop_last: bool) -> int:
    return num_samples // batch_size if drop_last else math.ceil(num_samples / batch_size)


def _augment_generator(device: torch.device, *key: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seed(*key))


def _flips(
    augment: AugmentConfig, index: torch.Tensor, epoch: int, seed: int, num_samples: int
) -> torch.Tensor | None:
    """The batch's alternating flips, or None where the flips are random coins."""
    if not (augment.flip and augment.alternate_flip):
        return None
    return alternating_flips(index, epoch, derive_seed(seed, num_samples), num_samples)


class _EpochBatches(abc.ABC):
    """Epoch bookkeeping shared by the loaders: subclasses give `__len__` and `_batches`.

    Iterating runs epoch `self.epoch` and then advances it; `set_epoch` picks the next one and
    `iter_from(epoch, start_batch)` resumes mid-epoch with exactly the batches a full run sees.
    """

    epoch: int = 0

    @abc.abstractmethod
    def __len__(self) -> int:
        """Batches per epoch."""

    @abc.abstractmethod
    def _batches(self, epoch: int, start_batch: int) -> Iterator[Batch]:
        """Batches start_batch.. of `epoch`."""

    def set_epoch(self, epoch: int) -> None:
        """Make the next plain iteration run `epoch`."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self.iter_from(epoch, 0)

    def iter_from(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        """Yield batches start_batch.. of `epoch`, identical to those of a full pass."""
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch must be in [0, {len(self)}], got {start_batch}")
        return self._batches(epoch, start_batch)


class BatchIterator(_EpochBatches):
    """Batches of an InMemoryDataset that already lives on the target device."""

    def __init__(
        self,
        ds: InMemoryDataset,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        augment: AugmentConfig | None = None,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        _check_shard(rank, world_size)
        if len(ds) == 0:
            raise DataError(f"dataset {ds.info.name!r} is empty")
        self.ds = ds
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.augment = augment
        self.rank = rank
        self.world_size = world_size
        self.normalize = Normalize(ds.info.mean, ds.info.std, dtype, channels_last)
        self.epoch = 0
        per_rank = shard_length(len(ds), world_size, drop_last)
        self._num_batches = _num_batches(per_rank, batch_size, drop_last)

    def __len__(self) -> int:
        return self._num_batches

    def _batches(self, epoch: int, start_batch: int) -> Iterator[Batch]:
        device = self.ds.device
        order = epoch_indices(
            len(self.ds), epoch, self.seed, self.shuffle, self.rank, self.world_size, self.drop_last
        ).to(device)
        for k in range(start_batch, len(self)):
            index = order[k * self.batch_size : (k + 1) * self.batch_size]
            images, labels = self.ds.images[index], self.ds.labels[index]
            if self.augment is not None:
                generator = _augment_generator(device, self.seed, epoch, k, self.rank)
                flips = _flips(self.augment, index, epoch, self.seed, len(self.ds))
                images = augment_batch(images, self.augment, generator, flips)
            yield self.normalize(images), labels


class EpochSampler(Sampler[int]):
    """A sampler whose order depends only on (seed, epoch, rank); can start mid-epoch."""

    def __init__(
        self,
        num_samples: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        _check_shard(rank, world_size)
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration yields."""
        self.epoch = epoch

    def epoch_order(self) -> torch.Tensor:
        """This rank's whole sample order for the current epoch, ignoring any start offset."""
        return epoch_indices(
            self.num_samples,
            self.epoch,
            self.seed,
            self.shuffle,
            self.rank,
            self.world_size,
            self.drop_last,
        )

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_order()[self.start :].tolist())

    def full_length(self) -> int:
        """Samples per epoch for this rank, ignoring any start offset."""
        return shard_length(self.num_samples, self.world_size, self.drop_last)

    def __len__(self) -> int:
        return max(self.full_length() - self.start, 0)


def make_folder_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = True,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool | None = None,
) -> DataLoader:
    """A DataLoader over a streaming dataset yielding uint8 (N, C, H, W) images and labels."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    sampler = EpochSampler(len(dataset), shuffle, seed, rank, world_size, drop_last)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=num_workers > 0,
    )


class DeviceLoader(_EpochBatches):
    """Wraps a make_folder_loader DataLoader: moves, augments and normalizes on `device`.

    Same interface as BatchIterator, so the training loop need not know which it has.
    """

    def __init__(
        self,
        loader: DataLoader,
        device: torch.device | str,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if not isinstance(loader.sampler, EpochSampler):
            raise ValueError("DeviceLoader needs a DataLoader from make_folder_loader")
        info = loader.dataset.info
        self.loader = loader
        self.sampler: EpochSampler = loader.sampler
        self.drop_last = loader.drop_last
        self.device = torch.device(device)
        self.augment = augment
        self.seed = seed
        self.normalize = Normalize(info.mean, info.std, dtype, channels_last)
        self.epoch = 0

    def __len__(self) -> int:
        return _num_batches(self.sampler.full_length(), self.loader.batch_size, self.drop_last)

    def _batches(self, epoch: int, start_batch: int) -> Iterator[Batch]:
        self.sampler.set_epoch(epoch)
        self.sampler.start = start_batch * self.loader.batch_size
        non_blocking = self.device.type == "cuda"
        order = self.sampler.epoch_order()
        size = self.sampler.num_samples
        try:
            for k, (images, labels) in enumerate(self.loader, start=start_batch):
                images = images.to(self.device, non_blocking=non_blocking)
                labels = labels.to(self.device, non_blocking=non_blocking)
                if self.augment is not None:
                    generator = _augment_generator(
                        self.device, self.seed, epoch, k, self.sampler.rank
                    )
                    index = order[k * self.loader.batch_size :][: len(images)]
                    flips = _flips(self.augment, index, epoch, self.seed, size)
                    images = augment_batch(images, self.augment, generator, flips)
                yield self.normalize(images), labels
        finally:
            self.sampler.start = 0


def make_loader(
    dataset: InMemoryDataset | Dataset,
    batch_size: int,
    device: torch.device | str = "cpu",
    shuffle: bool = True,
    drop_last: bool = False,
    seed: int = 0,
    augment: AugmentConfig | None = None,
    channels_last: bool = False,
    dtype: torch.dtype = torch.float32,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
) -> BatchIterator | DeviceLoader:
    """Pick the fast path: BatchIterator for in-memory data, DeviceLoader for streamed files."""
    if isinstance(dataset, InMemoryDataset):
        return BatchIterator(
            dataset.to(device) if dataset.device != torch.device(device) else dataset,
            batch_size,
            shuffle,
            drop_last,
            seed,
            augment,
            channels_last,
            dtype,
            rank,
            world_size,
        )
    loader = make_folder_loader(
        dataset,
        batch_size,
        shuffle,
        num_workers,
        seed,
        drop_last,
        rank,
        world_size,
        pin_memory=torch.device(device).type == "cuda",
    )
    return DeviceLoader(loader, device, augment, seed, channels_last, dtype)
