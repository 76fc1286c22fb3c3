"""A user's DataLoader as the loop's batches: checked, on the device, and resumable as far as
the loader allows."""

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from resnetkit.data import DataError
from resnetkit.data.user_loader import UserLoader, check_sharding, resume_order


class Counted(Dataset):
    """Images whose pixels are their index, counting how many are loaded."""

    def __init__(self, count: int = 40) -> None:
        self.count, self.loads = count, 0

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        self.loads += 1
        return torch.full((1, 2, 2), float(index)), torch.tensor(index % 3)


def seeded(dataset=None, seed=3, **kwargs) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    dataset = dataset or Counted()
    return DataLoader(dataset, batch_size=8, shuffle=True, generator=generator, **kwargs)


def indices(batches) -> list[list[int]]:
    return [images[:, 0, 0, 0].long().tolist() for images, _ in batches]


def flat(batches) -> list[int]:
    return [index for batch in indices(batches) for index in batch]


def wrap(loader, name="train_loader") -> UserLoader:
    return UserLoader(loader, name, "cpu", channels_last=False)


def test_the_first_batch_is_taken_without_moving_any_random_state_on():
    loader, twin = wrap(seeded()), seeded()
    before = torch.get_rng_state()
    first_images, _ = loader.first_batch()
    assert torch.equal(torch.get_rng_state(), before)
    expected = indices(twin)  # what a plain loop over an identical loader draws first
    assert indices(loader.iter_from(0)) == expected
    assert first_images[:, 0, 0, 0].long().tolist() == expected[0]


def test_an_interrupted_epoch_resumes_with_the_rest_of_its_batches_none_loaded_again():
    first = wrap(seeded())
    list(first.iter_from(0))
    epoch_one = indices(first.iter_from(1))
    saved = first.state_dict()  # as if saved after 3 batches of epoch 1
    dataset = Counted()
    second = wrap(seeded(dataset))  # a new process: the generator starts from its seed again
    second.load_state_dict(saved)
    assert indices(second.iter_from(1, 3)) == epoch_one[3:]
    assert dataset.loads == 2 * 8  # batches 3 and 4 only


def test_at_an_epoch_boundary_the_next_epoch_is_drawn_from_the_saved_generator():
    first = wrap(seeded())
    list(first.iter_from(0))
    saved = first.state_dict()  # saved at the end of epoch 0
    epoch_one = indices(first.iter_from(1))
    second = wrap(seeded())
    second.load_state_dict(saved)
    assert indices(second.iter_from(1)) == epoch_one


def test_set_epoch_orders_a_distributed_sampler_by_epoch():
    dataset = Counted()
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, seed=5)
    loader = wrap(DataLoader(dataset, batch_size=8, sampler=sampler))
    sampler.set_epoch(2)
    expected = [i for i in sampler]
    assert flat(loader.iter_from(2)) == expected
    assert flat(loader.iter_from(2, 4)) == expected[32:]


def test_a_loader_that_draws_from_other_generators_than_the_run_saved_is_refused():
    saved = wrap(seeded()).state_dict()
    plain = wrap(DataLoader(Counted(), batch_size=8))  # no generator at all
    plain.load_state_dict(saved)
    with pytest.raises(DataError, match="draws from 0 random generators but the run saved 1"):
        plain.iter_from(0, 2)


def test_resume_order_says_what_a_resumed_run_reproduces():
    dataset = Counted()
    assert resume_order(DataLoader(dataset)) == "exact (in order)"
    assert resume_order(seeded()).startswith("exact (its generator's state")
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0)
    assert resume_order(DataLoader(dataset, sampler=sampler)) == "exact (set_epoch)"
    unseeded = resume_order(DataLoader(dataset, shuffle=True))
    assert unseeded.startswith("exact from an epoch boundary; resumed mid-epoch")
    with_workers = resume_order(DataLoader(dataset, num_workers=1))
    assert with_workers.endswith(
        "; random transforms in worker processes are not reproduced for the rest of an "
        "interrupted epoch"
    )


def test_under_torchrun_training_needs_a_sharded_loader_and_evaluation_a_whole_one():
    dataset = Counted()
    check_sharding(seeded(dataset), "train_loader", world=1, train=True)
    with pytest.raises(DataError, match="RandomSampler, which gives each of the 2 processes"):
        check_sharding(seeded(dataset), "train_loader", world=2, train=True)
    sharded = DataLoader(dataset, sampler=DistributedSampler(dataset, num_replicas=2, rank=0))
    check_sharding(sharded, "train_loader", world=2, train=True)
    with pytest.raises(DataError, match="val_loader uses a DistributedSampler"):
        check_sharding(sharded, "val_loader", world=2, train=False)


def test_batches_arrive_on_the_device_as_float_images_and_int64_labels():
    images, labels = torch.rand(8, 3, 4, 4), torch.arange(8, dtype=torch.int32) % 2
    loader = UserLoader(DataLoader(TensorDataset(images, labels), batch_size=4), "x", "cpu", True)
    batch_images, batch_labels = next(iter(loader))
    assert batch_labels.dtype == torch.int64 and torch.equal(batch_labels, labels[:4].long())
    assert batch_images.is_contiguous(memory_format=torch.channels_last)
