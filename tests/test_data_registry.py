import tarfile
from pathlib import Path

import pytest
import torch

from data_fixtures import write_cifar, write_idx_dataset, write_image_folder
from resnetkit.data import (
    DataError,
    ImageFolderDataset,
    InMemoryDataset,
    MissingSplitError,
    list_datasets,
    load_dataset,
)


def test_list_datasets_names_every_source():
    assert list_datasets() == [
        "cifar10",
        "cifar100",
        "mnist",
        "fashion-mnist",
        "synthetic",
        "folder:PATH",
    ]


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(DataError) as info:
        load_dataset("imagenet")
    message = str(info.value)
    assert "'imagenet'" in message
    assert all(name in message for name in list_datasets())


def test_an_unknown_split_is_rejected():
    with pytest.raises(DataError, match="unknown split 'dev'"):
        load_dataset("synthetic", "dev")


def test_synthetic_train_and_test_differ_but_share_info():
    train, test = load_dataset("synthetic", "train"), load_dataset("synthetic", "test")
    assert len(train) == 2048 and len(test) == 512
    assert train.info == test.info
    assert not torch.equal(train.images[:512], test.images)


def test_val_needs_a_fraction():
    with pytest.raises(DataError, match="val_fraction > 0"):
        load_dataset("synthetic", "val")


def test_train_and_val_are_complementary_parts_of_the_training_set(tmp_path: Path):
    write_cifar(tmp_path, "cifar10", per_file=8)
    full = load_dataset("cifar10", "train", data_dir=tmp_path)
    train = load_dataset("cifar10", "train", data_dir=tmp_path, val_fraction=0.25, seed=3)
    val = load_dataset("cifar10", "val", data_dir=tmp_path, val_fraction=0.25, seed=3)
    assert len(train) + len(val) == len(full) == 40
    joined = torch.cat([train.images, val.images]).flatten(1)
    assert len(torch.unique(joined, dim=0)) == 40


@pytest.mark.parametrize("name", ["fashion-mnist", "fashion_mnist", "Fashion-MNIST"])
def test_fashion_mnist_aliases(tmp_path: Path, name: str):
    write_idx_dataset(tmp_path, n_test=10)
    ds = load_dataset(name, "test", data_dir=tmp_path)
    assert ds.info.name == "fashion-mnist" and len(ds) == 10


def test_image_size_and_in_chans_adapt_a_grayscale_set(tmp_path: Path):
    write_idx_dataset(tmp_path, n_test=10)
    ds = load_dataset("mnist", "test", data_dir=tmp_path, image_size=(32, 32), in_chans=3)
    assert ds.images.shape == (10, 3, 32, 32)
    assert ds.info.mean == (0.1307,) * 3


def test_folder_datasets_stream_unless_asked_to_load_into_memory(tmp_path: Path):
    root = write_image_folder(tmp_path / "imgs", {"a": 3, "b": 3})
    streamed = load_dataset(f"folder:{root}", image_size=(8, 8))
    in_memory = load_dataset(f"folder:{root}", image_size=(8, 8), in_memory=True)
    assert isinstance(streamed, ImageFolderDataset) and len(streamed) == 6
    assert isinstance(in_memory, InMemoryDataset) and in_memory.images.shape == (6, 3, 8, 8)


def test_folder_with_split_subfolders_uses_them(tmp_path: Path):
    write_image_folder(tmp_path / "train", {"a": 3, "b": 3, "c": 2})
    write_image_folder(tmp_path / "val", {"a": 1, "c": 1})
    val = load_dataset(f"folder:{tmp_path}", "val", image_size=(8, 8))
    assert val.info.class_names == ("a", "b", "c")
    assert sorted(val.labels.tolist()) == [0, 2]
    with pytest.raises(DataError, match="no test/ sub-folder") as info:
        load_dataset(f"folder:{tmp_path}", "test")
    # The fix is a flag the user can pass, not a split name they cannot choose in `train`.
    assert "--val-fraction" in str(info.value) and "use split" not in str(info.value)


@pytest.mark.parametrize("packed", [False, True])
def test_a_val_folder_is_the_validation_split_and_train_is_not_carved(tmp_path: Path, packed):
    root = tmp_path / "tree"
    write_image_folder(root / "train", {"a": 4, "b": 4})
    write_image_folder(root / "val", {"a": 1, "b": 1})
    write_image_folder(root / "test", {"a": 1, "b": 1})
    if packed:
        with tarfile.open(tmp_path / "tree.tar", "w") as tar:
            tar.add(root, arcname=".")
        root = tmp_path / "tree.tar"
    kwargs = dict(image_size=(8, 8), val_fraction=0.25)
    train = load_dataset(f"folder:{root}", "train", **kwargs)
    val = load_dataset(f"folder:{root}", "val", **kwargs)
    assert (len(train), len(val)) == (8, 2)  # nothing of train/ is thrown away


def test_a_folder_without_test_says_so_with_its_own_error(tmp_path: Path):
    root = write_image_folder(tmp_path / "imgs", {"a": 4, "b": 4})
    with pytest.raises(MissingSplitError, match="no test/ sub-folder"):
        load_dataset(f"folder:{root}", "test", image_size=(8, 8))


def test_flat_folder_val_split_is_carved_from_it(tmp_path: Path):
    root = write_image_folder(tmp_path / "imgs", {"a": 4, "b": 4})
    train = load_dataset(f"folder:{root}", "train", image_size=(8, 8), val_fraction=0.25)
    val = load_dataset(f"folder:{root}", "val", image_size=(8, 8), val_fraction=0.25)
    assert len(train) == 6 and len(val) == 2
    assert {p for p, _ in train.samples}.isdisjoint({p for p, _ in val.samples})
