"""A user's `torch.utils.data.DataLoader` as the training loop's batches (for `resnetkit.fit`).

The loop asks its training batches for `len()` and `iter_from(epoch, batch)`, and iterates its
evaluation batches; `UserLoader` gives both for any DataLoader that yields (images, labels),
checking each batch and moving it to the device.

What a resumed run reproduces of an interrupted epoch (`iter_from` after `load_state_dict`),
as `resume_order` says for a given loader:

- `set_epoch(epoch)` is called on the sampler, the batch sampler and the dataset where they
  have one (a `DistributedSampler`, say), so an order that depends on the epoch is exact;
- the state of every `torch.Generator` the loader draws its order from (its `generator`, its
  sampler's) is saved with the run as it was when the epoch began, and restored: a seeded
  loader's order is exact;
- an unseeded shuffling loader draws its order from the global torch RNG when an epoch
  begins. Resumed at an epoch boundary it is exact (the run restores that RNG); resumed
  mid-epoch, the rest of the epoch comes from a new random order, so some images are seen
  twice that epoch and others not at all;
- the batches of the interrupted epoch that were already trained on are skipped without
  being loaded (a map-style dataset); an `IterableDataset` is read again from its start and
  they are dropped;
- random transforms run in worker processes (`num_workers > 0`) draw from per-worker RNGs that
  depend on which batches each worker served, so they are not reproduced for the rest of the
  interrupted epoch (and, with `persistent_workers`, not after it either). Transforms run in
  the main process (`num_workers=0`) draw from the global RNG, which the run restores.
"""

from __future__ import annotations

import contextlib
import itertools
import random
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

from resnetkit.data.base import DataError

__all__ = [
    "SkipBatches",
    "UserLoader",
    "as_pair",
    "check_loader",
    "check_sharding",
    "describe_loader",
    "loader_generators",
    "resume_order",
]

Batch = tuple[torch.Tensor, torch.Tensor]

# Samplers that give every process the whole dataset: under torchrun they would make each
# process train on all of it.
UNSHARDED = (RandomSampler, SequentialSampler, SubsetRandomSampler, WeightedRandomSampler)


def check_loader(loader: Any, name: str, need_length: bool = True) -> None:
    """DataError, in one line, unless `loader` is a DataLoader with at least one batch (and,
    with `need_length`, a known number of them)."""
    if not isinstance(loader, DataLoader):
        raise DataError(
            f"{name} must be a torch.utils.data.DataLoader, got {type(loader).__name__}"
        )
    try:
        count = len(loader)
    except TypeError:
        if not need_length:
            return
        raise DataError(
            f"{name} has no length (an IterableDataset without __len__): training needs to "
            f"know how many batches an epoch has"
        ) from None
    if count == 0:
        size = len(loader.dataset) if hasattr(loader.dataset, "__len__") else "?"
        raise DataError(
            f"{name} is empty: it yields no batches (dataset of {size} samples, batch_size "
            f"{loader.batch_size}, drop_last {loader.drop_last})"
        )


def check_sharding(loader: DataLoader, name: str, world: int, train: bool) -> None:
    """Under torchrun (`world` > 1): the training loader must give each process its own share
    (a DistributedSampler); an evaluation loader must not, as rank 0 evaluates alone."""
    if world <= 1:
        return
    sampler = base_sampler(loader)
    if train and isinstance(sampler, UNSHARDED):
        raise DataError(
            f"{name} uses a {type(sampler).__name__}, which gives each of the {world} "
            f"processes the whole dataset; use sampler=DistributedSampler(dataset)"
        )
    if not train and isinstance(sampler, DistributedSampler):
        raise DataError(
            f"{name} uses a DistributedSampler, but rank 0 evaluates alone and would see "
            f"1/{world} of the split; pass a plain DataLoader"
        )


def base_sampler(loader: DataLoader) -> Any:
    """The sampler that orders the samples (under the batch sampler, if there is one)."""
    return getattr(loader.batch_sampler, "sampler", None) or loader.sampler


def loader_generators(loader: DataLoader) -> list[torch.Generator]:
    """The distinct torch.Generators the loader draws from: its own, its samplers'."""
    candidates = (
        loader.generator,
        getattr(loader.sampler, "generator", None),
        getattr(loader.batch_sampler, "generator", None),
        getattr(base_sampler(loader), "generator", None),
    )
    found: list[torch.Generator] = []
    for generator in candidates:
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


def epoch_listeners(loader: DataLoader) -> list[Any]:
    """The sampler, batch sampler, base sampler and dataset that have a `set_epoch`."""
    found: list[Any] = []
    for part in (loader.sampler, loader.batch_sampler, base_sampler(loader), loader.dataset):
        if callable(getattr(part, "set_epoch", None)) and all(part is not f for f in found):
            found.append(part)
    return found


def resume_order(loader: DataLoader) -> str:
    """What a resumed run reproduces of this loader's order, in a sentence (module docstring)."""
    sampler = base_sampler(loader)
    if isinstance(loader.dataset, IterableDataset):
        order = "the stream is read again from its start and the batches done are dropped"
    elif isinstance(sampler, SequentialSampler):
        order = "exact (in order)"
    elif epoch_listeners(loader):
        order = "exact (set_epoch)"
    elif loader_generators(loader):
        order = "exact (its generator's state is saved with the run)"
    else:
        order = (
            "exact from an epoch boundary; resumed mid-epoch the rest of the epoch is a new "
            "random order (give the DataLoader a seeded generator to make it exact)"
        )
    if loader.persistent_workers:
        order += "; random transforms in persistent worker processes are not reproduced"
    elif loader.num_workers > 0:
        order += (
            "; random transforms in worker processes are not reproduced for the rest of an "
            "interrupted epoch"
        )
    return order


def describe_loader(loader: DataLoader) -> dict[str, Any]:
    """The loader as config.yaml records it."""
    dataset = loader.dataset
    return {
        "dataset": type(dataset).__name__,
        "samples": len(dataset) if hasattr(dataset, "__len__") else None,
        "batch_size": loader.batch_size,
        "batches": len(loader) if hasattr(dataset, "__len__") else None,
        "sampler": type(base_sampler(loader)).__name__,
        "num_workers": loader.num_workers,
        "order_on_resume": resume_order(loader),
    }


def describe(value: Any) -> str:
    """A value as an error message names it."""
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    if isinstance(value, dict):
        return f"a dict with keys {', '.join(map(repr, list(value)[:5]))}"
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


def as_pair(batch: Any, name: str, index: int) -> Batch:
    """The batch as (float images (N, C, H, W), int64 labels (N,)); DataError naming what is
    wrong otherwise."""
    where = f"{name} batch {index}"
    if not (isinstance(batch, tuple | list) and len(batch) == 2):
        raise DataError(f"{where} is {describe(batch)}; it must be an (images, labels) pair")
    images, labels = batch
    if not (isinstance(images, torch.Tensor) and images.is_floating_point() and images.ndim == 4):
        raise DataError(
            f"{where}: images must be a float tensor (N, C, H, W), got {describe(images)}"
        )
    integer = isinstance(labels, torch.Tensor) and not (
        labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool
    )
    if not (integer and labels.ndim == 1):
        raise DataError(
            f"{where}: labels must be a 1-D integer tensor of class indices, got {describe(labels)}"
        )
    if len(labels) != len(images):
        raise DataError(f"{where}: {len(images)} images but {len(labels)} labels")
    return images, labels.long()


@contextlib.contextmanager
def preserved_random_state(generators: Iterable[torch.Generator]) -> Iterator[None]:
    """Run the block, then put back every RNG it may have drawn from: torch's (CPU and CUDA),
    Python's, NumPy's and `generators`."""
    generators = list(generators)
    saved = [g.get_state() for g in generators]
    cpu, python, numpy = torch.get_rng_state(), random.getstate(), np.random.get_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        for generator, state in zip(generators, saved, strict=True):
            generator.set_state(state)
        torch.set_rng_state(cpu)
        random.setstate(python)
        np.random.set_state(numpy)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


class SkipBatches(Sampler[list[int]]):
    """A batch sampler without its first `count` batches. The sampler below still draws them,
    so the batches that remain are those of the full epoch's order."""

    def __init__(self, batch_sampler: Iterable[list[int]], count: int) -> None:
        self.batch_sampler = batch_sampler
        self.count = count

    def __iter__(self) -> Iterator[list[int]]:
        return itertools.islice(iter(self.batch_sampler), self.count, None)

    def __len__(self) -> int:
        return max(len(self.batch_sampler) - self.count, 0)


def skip_batches(loader: DataLoader, count: int) -> Iterator[Any]:
    """The loader's batches from the `count`-th on: a map-style dataset's first `count` are
    not loaded at all (the loader is rebuilt around `SkipBatches`); other loaders' are read
    and dropped."""
    if count == 0:
        return iter(loader)
    if isinstance(loader.dataset, IterableDataset) or loader.batch_sampler is None:
        return itertools.islice(iter(loader), count, None)
    # The loader drew its workers' base seed when the epoch began (from its generator, else
    # from the global RNG, which the run restored to a later point), or, persistent, once
    # before training. Only a generator restored to the epoch's start must draw it again.
    fresh = loader.generator is None or loader.persistent_workers
    rest = DataLoader(
        loader.dataset,
        batch_sampler=SkipBatches(loader.batch_sampler, count),
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=torch.Generator() if fresh else loader.generator,
        prefetch_factor=loader.prefetch_factor,
        pin_memory_device=loader.pin_memory_device,
        in_order=loader.in_order,
    )
    return iter(rest)


class UserLoader:
    """A user's DataLoader as the loop's batches: checked, on `device`, resumable.

    `iter_from(epoch, batch)` trains (see the module docstring for what a resume restores);
    plain iteration evaluates. `image_size`, once set, is the size every batch must have.
    """

    def __init__(
        self, loader: DataLoader, name: str, device: torch.device | str, channels_last: bool
    ) -> None:
        self.loader = loader
        self.name = name
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.image_size: tuple[int, int] | None = None
        self._started = (-1, self._generator_states())  # the last epoch begun, and its RNGs
        self._restored: dict[str, Any] | None = None  # a saved state, applied at the next epoch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        return self._batches(iter(self.loader), 0)

    def first_batch(self) -> Batch:
        """The first batch, checked and on the device, taken without moving on any random
        state, so the first epoch still yields it (and the rest) as it would have."""
        with preserved_random_state(loader_generators(self.loader)):
            batches = iter(self.loader)
            batch = next(batches, None)
            del batches  # a multi-process iterator stops its workers here
        if batch is None:
            raise DataError(f"{self.name} yields no batches")
        return self._to_device(*as_pair(batch, self.name, 0))

    def iter_from(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        """Batches `start_batch`.. of `epoch`, as an uninterrupted run would have them (as far
        as the loader allows: `resume_order`)."""
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch must be in [0, {len(self)}], got {start_batch}")
        for listener in epoch_listeners(self.loader):
            listener.set_epoch(epoch)
        self._restore_generators(epoch)
        self._started = (epoch, self._generator_states())
        return self._batches(skip_batches(self.loader, start_batch), start_batch)

    def state_dict(self) -> dict[str, Any]:
        """The generators' states when the last epoch began and now (the next epoch's)."""
        epoch, start = self._started
        return {"epoch": epoch, "start": start, "now": self._generator_states()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restored = state

    def _generator_states(self) -> list[torch.Tensor]:
        return [g.get_state() for g in loader_generators(self.loader)]

    def _restore_generators(self, epoch: int) -> None:
        saved, self._restored = self._restored, None
        if saved is None:
            return
        # Mid-epoch the epoch's own start; at an epoch boundary the state after the last one.
        states = saved["start"] if saved["epoch"] == epoch else saved["now"]
        generators = loader_generators(self.loader)
        if len(states) != len(generators):
            raise DataError(
                f"{self.name} draws from {len(generators)} random generators but the run saved "
                f"{len(states)}: it is not the loader the run was trained with"
            )
        for generator, state in zip(generators, states, strict=True):
            generator.set_state(state)

    def _batches(self, batches: Iterator[Any], first: int) -> Iterator[Batch]:
        for index, batch in enumerate(batches, first):
            images, labels = as_pair(batch, self.name, index)
            size = tuple(images.shape[-2:])
            if self.image_size is not None and size != self.image_size:
                raise DataError(
                    f"{self.name} batch {index}: images of {size[0]}x{size[1]}, but the first "
                    f"batch's were {self.image_size[0]}x{self.image_size[1]}; training takes "
                    f"one image size"
                )
            yield self._to_device(images, labels)

    def _to_device(self, images: torch.Tensor, labels: torch.Tensor) -> Batch:
        non_blocking = self.device.type == "cuda"
        images = images.to(self.device, non_blocking=non_blocking)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels.to(self.device, non_blocking=non_blocking)
