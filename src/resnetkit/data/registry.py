"""Dataset names -> loaders: one entry point for the trainer and the CLI."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from resnetkit.data.archive import (
    ArchiveImageDataset,
    ImageArchive,
    archive_layout,
    is_image_archive,
    load_image_archive_in_memory,
)
from resnetkit.data.base import (
    DataError,
    InMemoryDataset,
    MissingSplitError,
    adapt_dataset,
    split_indices,
)
from resnetkit.data.cifar import load_cifar10, load_cifar100
from resnetkit.data.folder import (
    ImageFolderDataset,
    StreamedImages,
    folder_class_names,
    load_image_folder_in_memory,
)
from resnetkit.data.idx import load_fashion_mnist, load_mnist
from resnetkit.data.loader import derive_seed
from resnetkit.data.synthetic import make_synthetic

__all__ = ["SPLITS", "list_datasets", "load_dataset"]

SPLITS = ("train", "val", "test")

_LOADERS: dict[str, Callable[..., InMemoryDataset]] = {
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
}
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist"}
_SYNTHETIC_SIZES = {"train": 2048, "test": 512}
_FOLDER_DEFAULT_SIZE = (224, 224)

Loaded = InMemoryDataset | StreamedImages


def list_datasets() -> list[str]:
    """Names load_dataset accepts; "folder:PATH" stands for any image folder."""
    return [*_LOADERS, "synthetic", "folder:PATH"]


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    image_size: tuple[int, int] | None = None,
    in_chans: int | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
    in_memory: bool = False,
    cache: bool = True,
    workers: int | None = None,
    strict: bool = False,
) -> Loaded:
    """Load `split` ("train", "val" or "test") of a named dataset.

    "val" is a stratified `val_fraction` share of the training set chosen by `seed`, and
    "train" then excludes it. image_size/in_chans resize or convert 1 <-> 3 channels.
    "folder:PATH" takes an image folder or a .tar/.tar.gz/.tgz of one (read without
    extracting). Image folders stream from disk unless `in_memory`; in memory they are
    decoded by `workers` processes (default: every core) and cached on disk unless
    cache=False. Broken images are skipped with a count in the log; strict=True raises.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if name.startswith("folder:"):
        return _load_folder(
            Path(name.removeprefix("folder:")),
            split,
            image_size,
            in_chans,
            val_fraction,
            seed,
            in_memory,
            _FolderOptions(cache, workers, strict),
        )
    _check_val_fraction(split, val_fraction)
    key = _ALIASES.get(name.lower(), name.lower())
    source_split = "test" if split == "test" else "train"
    if key == "synthetic":
        dataset = make_synthetic(
            _SYNTHETIC_SIZES[source_split],
            image_size=image_size or (32, 32),
            in_chans=in_chans or 3,
            seed=seed if source_split == "train" else derive_seed(seed, 1),
        )
    elif key in _LOADERS:
        dataset = _LOADERS[key](source_split, data_dir, download)
    else:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(list_datasets())}")
    if split != "test" and val_fraction > 0:
        train, val = split_indices(dataset.labels, val_fraction, seed)
        dataset = dataset.subset(val if split == "val" else train)
    return adapt_dataset(dataset, image_size, in_chans)


def _check_val_fraction(split: str, val_fraction: float) -> None:
    if split == "val" and val_fraction == 0.0:
        raise DataError("split 'val' needs val_fraction > 0 (the share of training data held out)")


@dataclass(frozen=True)
class _FolderOptions:
    cache: bool = True
    workers: int | None = None
    strict: bool = False


def _load_folder(
    root: Path,
    split: str,
    image_size: tuple[int, int] | None,
    in_chans: int | None,
    val_fraction: float,
    seed: int,
    in_memory: bool,
    options: _FolderOptions = _FolderOptions(),
) -> Loaded:
    """root/<split>/ if it exists; otherwise root (or root/train) with val carved out."""
    size = tuple(image_size) if image_size is not None else _FOLDER_DEFAULT_SIZE
    chans = in_chans if in_chans is not None else 3
    if is_image_archive(root):
        return _load_archive(root, split, size, chans, val_fraction, seed, in_memory, options)
    train_dir = root / "train" if (root / "train").is_dir() else root
    own_folder = (root / split).is_dir() and split != "train"
    carve = _split_source(
        split,
        own_folder,
        val_fraction,
        f"image folder {root} has no test/ sub-folder",
        has_val=(root / "val").is_dir(),
    )
    folder = train_dir if carve is not None else root / split
    # A split of its own keeps the training set's label numbering even if a class is missing.
    class_names = folder_class_names(train_dir) if carve is None else None
    args = (folder, size, chans)
    if in_memory:
        dataset: Loaded = load_image_folder_in_memory(
            *args,
            strict=options.strict,
            class_names=class_names,
            cache=options.cache,
            workers=options.workers,
        )
    else:
        dataset = ImageFolderDataset(*args, options.strict, class_names, options.workers)
    return _carve(dataset, split, carve, val_fraction, seed)


def _load_archive(
    path: Path,
    split: str,
    size: tuple[int, int],
    chans: int,
    val_fraction: float,
    seed: int,
    in_memory: bool,
    options: _FolderOptions,
) -> Loaded:
    """The same layout rules as for a folder, inside a .tar/.tar.gz/.tgz."""
    # Streaming lists the archive anyway; in memory, a cached layout spares that pass.
    archive = None if in_memory else ImageArchive(path)
    layout = archive.layout() if archive is not None else archive_layout(path, options.cache)
    train = "train" if "train" in layout else ""
    own_folder = split in layout and split != "train"
    carve = _split_source(
        split,
        own_folder,
        val_fraction,
        f"image archive {path} has no test/ folder",
        has_val="val" in layout,
    )
    folder = train if carve is not None else split
    class_names = layout[train] if carve is None else None
    if archive is None:
        dataset: Loaded = load_image_archive_in_memory(
            path,
            folder,
            size,
            chans,
            strict=options.strict,
            class_names=class_names,
            cache=options.cache,
            workers=options.workers,
        )
    else:
        dataset = ArchiveImageDataset(
            archive, folder, size, chans, options.strict, class_names, options.workers
        )
    return _carve(dataset, split, carve, val_fraction, seed)


def _split_source(
    split: str, own_folder: bool, val_fraction: float, no_test: str, has_val: bool
) -> bool | None:
    """The one layout rule for folders and archives: None when `split` has a folder of its own;
    otherwise whether a val share must be carved out of the training folder (never when a
    val/ folder is the validation split: train/ then trains whole)."""
    if own_folder:
        return None
    if split == "test":
        raise MissingSplitError(
            f"{no_test}; add one, or hold out a share of train/ with --val-fraction 0.1"
        )
    _check_val_fraction(split, val_fraction)
    return val_fraction > 0 and not (split == "train" and has_val)


def _carve(
    dataset: Loaded, split: str, carve: bool | None, val_fraction: float, seed: int
) -> Loaded:
    if carve:
        train, val = split_indices(dataset.labels, val_fraction, seed)
        dataset = dataset.subset(val if split == "val" else train)
    return dataset
