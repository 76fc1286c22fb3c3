"""The in-memory dataset container shared by every data source, and its small helpers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from resnetkit.core.cache import cache_root

__all__ = [
    "DataError",
    "DatasetInfo",
    "InMemoryDataset",
    "MissingSplitError",
    "adapt_dataset",
    "channel_stats",
    "default_cache_dir",
    "split_dataset",
    "split_indices",
]

# ITU-R BT.601 luma weights, the ones Pillow's convert("L") uses.
_LUMA = (0.299, 0.587, 0.114)


class DataError(ValueError):
    """A user-facing data problem: missing or corrupt files, bad names, labels out of range."""


class MissingSplitError(DataError):
    """The data has no such split (an image folder without test/, say)."""


def default_cache_dir() -> Path:
    """Return where downloads and decoded datasets land: `cache_root()/datasets`."""
    return cache_root() / "datasets"


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset: classes, input shape, normalization."""

    name: str
    class_names: tuple[str, ...]
    in_chans: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        # Accept lists from YAML/JSON callers but store tuples so the info stays hashable.
        for name in ("class_names", "image_size", "mean", "std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.class_names:
            raise DataError(f"dataset {self.name!r} has no classes")
        if self.in_chans < 1:
            raise DataError(f"dataset {self.name!r}: in_chans must be >= 1, got {self.in_chans}")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise DataError(
                f"dataset {self.name!r}: image_size must be (H, W) > 0, got {self.image_size}"
            )
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise DataError(
                f"dataset {self.name!r}: mean and std need {self.in_chans} values each, "
                f"got {len(self.mean)} and {len(self.std)}"
            )
        if min(self.std) <= 0:
            raise DataError(f"dataset {self.name!r}: std must be > 0, got {self.std}")

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)


@dataclass
class InMemoryDataset:
    """A whole dataset as two tensors: uint8 images (N, C, H, W) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo = field(repr=False)

    def __post_init__(self) -> None:
        name = self.info.name
        images, labels = self.images, self.labels
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(
                f"dataset {name!r}: images must be a uint8 (N, C, H, W) tensor, "
                f"got {images.dtype} of shape {tuple(images.shape)}"
            )
        expected = (self.info.in_chans, *self.info.image_size)
        if tuple(images.shape[1:]) != expected:
            raise DataError(
                f"dataset {name!r}: images have shape (C, H, W) = {tuple(images.shape[1:])}, "
                f"but its info says {expected}"
            )
        if labels.dtype != torch.int64 or labels.dim() != 1:
            raise DataError(
                f"dataset {name!r}: labels must be an int64 (N,) tensor, "
                f"got {labels.dtype} of shape {tuple(labels.shape)}"
            )
        if len(labels) != len(images):
            raise DataError(f"dataset {name!r}: {len(images)} images but {len(labels)} labels")
        if labels.device != images.device:
            raise DataError(
                f"dataset {name!r}: images on {images.device} but labels on {labels.device}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= self.info.num_classes):
            raise DataError(
                f"dataset {name!r}: labels must lie in [0, {self.info.num_classes}), "
                f"found [{int(labels.min())}, {int(labels.max())}]"
            )
        self.images = images.contiguous()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    @property
    def device(self) -> torch.device:
        """The device both tensors live on."""
        return self.images.device

    def subset(self, indices: torch.Tensor | Sequence[int]) -> InMemoryDataset:
        """Return a new dataset holding the given samples, in the given order."""
        index = torch.as_tensor(indices, dtype=torch.int64, device=self.device)
        return InMemoryDataset(self.images[index], self.labels[index], self.info)

    def to(self, device: torch.device | str) -> InMemoryDataset:
        """Return a copy whose tensors live on `device`."""
        device = torch.device(device)
        return InMemoryDataset(
            self.images.to(device, copy=True), self.labels.to(device, copy=True), self.info
        )


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std (0..1 units) of a uint8 (N, C, H, W) tensor."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected a uint8 (N, C, H, W) tensor, got {images.dtype} {images.shape}")
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        # A 256-bin histogram gives exact moments without a float copy of the whole set.
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).cpu().double()
        total = counts.sum()
        mean = (counts * values).sum() / total
        var = (counts * (values - mean) ** 2).sum() / total
        means.append(float(mean))
        stds.append(float(var.sqrt()))
    return tuple(means), tuple(stds)


def split_indices(
    labels: torch.Tensor, val_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified, seeded split of sample indices into (train, val), each sorted."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    labels = labels.cpu()
    generator = torch.Generator().manual_seed(seed)
    train_parts, val_parts = [], []
    for label in torch.unique(labels):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_val = round(len(members) * val_fraction)
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    train = torch.cat(train_parts).sort().values if train_parts else labels.new_empty(0)
    val = torch.cat(val_parts).sort().values if val_parts else labels.new_empty(0)
    if len(train) == 0 or len(val) == 0:
        raise DataError(
            f"val_fraction={val_fraction} of {len(labels)} samples leaves "
            f"{len(train)} for training and {len(val)} for validation; both need at least one"
        )
    return train, val


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Exactly `size` sample indices (sorted), each class represented in proportion to its
    share, chosen at random under `seed`. Image folders list their files class by class, so
    their first N images would all be of the first class or two."""
    labels = labels.cpu()
    if size >= len(labels):
        return torch.arange(len(labels))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    shuffled = labels[order]
    # Rank every sample within its class (in the shuffled order) as a fraction of the class
    # size; taking the smallest ranks first fills all classes at the same pace.
    rank = torch.empty(len(labels), dtype=torch.float64)
    for label in torch.unique(shuffled):
        members = torch.nonzero(shuffled == label).flatten()
        rank[members] = (torch.arange(len(members), dtype=torch.float64) + 0.5) / len(members)
    chosen = order[torch.argsort(rank, stable=True)[:size]]
    return chosen.sort().values


def split_dataset(
    ds: InMemoryDataset, val_fraction: float, seed: int = 0
) -> tuple[InMemoryDataset, InMemoryDataset]:
    """Split a dataset into (train, val), stratified by class and deterministic under `seed`."""
    train, val = split_indices(ds.labels, val_fraction, seed)
    return ds.subset(train), ds.subset(val)


def adapt_dataset(
    ds: InMemoryDataset,
    image_size: tuple[int, int] | None = None,
    in_chans: int | None = None,
    chunk_size: int = 4096,
) -> InMemoryDataset:
    """Resize images (bilinear, antialiased) and/or convert 1 <-> 3 channels; no-op if equal."""
    info = ds.info
    size = tuple(image_size) if image_size is not None else info.image_size
    chans = in_chans if in_chans is not None else info.in_chans
    if size == info.image_size and chans == info.in_chans:
        return ds
    if chans != info.in_chans and {chans, info.in_chans} != {1, 3}:
        raise DataError(
            f"cannot convert {info.name!r} from {info.in_chans} to {chans} channels; "
            "only 1 <-> 3 is supported"
        )
    # Chunked so that the float copy of a 60k-image set stays small.
    chunks = [
        _adapt_chunk(ds.images[i : i + chunk_size], size, chans)
        for i in range(0, max(len(ds), 1), chunk_size)
    ]
    images = torch.cat(chunks) if len(ds) else ds.images.new_empty((0, chans, *size))
    mean, std = info.mean, info.std
    if chans == 3 and info.in_chans == 1:
        mean, std = mean * 3, std * 3
    elif chans == 1 and info.in_chans == 3:
        mean = (sum(w * m for w, m in zip(_LUMA, mean, strict=True)),)
        # Upper bound on the luma std (exact when channels are fully correlated, as they nearly
        # are in natural images); using the test set's own stats instead would leak.
        std = (sum(w * s for w, s in zip(_LUMA, std, strict=True)),)
    new_info = replace(info, in_chans=chans, image_size=size, mean=mean, std=std)
    return InMemoryDataset(images, ds.labels, new_info)


def _adapt_chunk(images: torch.Tensor, size: tuple[int, ...], chans: int) -> torch.Tensor:
    x = images.float()
    if chans == 1 and x.shape[1] == 3:
        weights = torch.tensor(_LUMA, device=x.device).view(1, 3, 1, 1)
        x = (x * weights).sum(dim=1, keepdim=True)
    elif chans == 3 and x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp_(0, 255).to(torch.uint8)


def check_batch(batch: torch.Tensor, generator: torch.Generator) -> None:
    """ValueError unless `batch` is (N, C, H, W) and `generator` draws on its device: what
    every batched augmentation needs."""
    if batch.dim() != 4:
        raise ValueError(f"expected an (N, C, H, W) batch, got shape {tuple(batch.shape)}")
    if generator.device.type != batch.device.type:
        raise ValueError(
            f"the generator is on {generator.device} but the batch is on {batch.device}; "
            "create it with torch.Generator(device=batch.device)"
        )
