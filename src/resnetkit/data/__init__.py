"""Datasets as uint8 tensors, batched augmentation on the device, and loaders for training."""

from resnetkit.data.archive import (
    ArchiveImageDataset,
    ImageArchive,
    is_image_archive,
    load_image_archive_in_memory,
)
from resnetkit.data.augment import (
    AugmentConfig,
    Normalize,
    augment_batch,
    cutout,
    normalize,
    random_crop,
    random_flip,
)
from resnetkit.data.base import (
    DataError,
    DatasetInfo,
    InMemoryDataset,
    MissingSplitError,
    adapt_dataset,
    channel_stats,
    default_cache_dir,
    split_dataset,
    split_indices,
    stratified_subset,
)
from resnetkit.data.cifar import load_cifar10, load_cifar100
from resnetkit.data.decode import decode_images, read_image
from resnetkit.data.download import download_file, file_digest, safe_extract_tar
from resnetkit.data.folder import (
    IMAGE_EXTENSIONS,
    ImageFolderDataset,
    StreamedImages,
    decode_image,
    load_image,
    load_image_folder,
    load_image_folder_in_memory,
    scan_image_folder,
)
from resnetkit.data.idx import load_fashion_mnist, load_mnist, read_idx
from resnetkit.data.loader import (
    BatchIterator,
    DeviceLoader,
    EpochSampler,
    derive_seed,
    epoch_indices,
    make_folder_loader,
    make_loader,
    shard_length,
)
from resnetkit.data.registry import list_datasets, load_dataset
from resnetkit.data.synthetic import make_synthetic

__all__ = [
    "IMAGE_EXTENSIONS",
    "ArchiveImageDataset",
    "AugmentConfig",
    "BatchIterator",
    "DataError",
    "DatasetInfo",
    "DeviceLoader",
    "EpochSampler",
    "ImageArchive",
    "ImageFolderDataset",
    "InMemoryDataset",
    "MissingSplitError",
    "Normalize",
    "StreamedImages",
    "adapt_dataset",
    "augment_batch",
    "channel_stats",
    "cutout",
    "decode_image",
    "decode_images",
    "default_cache_dir",
    "derive_seed",
    "download_file",
    "epoch_indices",
    "file_digest",
    "is_image_archive",
    "list_datasets",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_fashion_mnist",
    "load_image",
    "load_image_archive_in_memory",
    "load_image_folder",
    "load_image_folder_in_memory",
    "load_mnist",
    "make_folder_loader",
    "make_loader",
    "make_synthetic",
    "normalize",
    "random_crop",
    "random_flip",
    "read_idx",
    "read_image",
    "safe_extract_tar",
    "scan_image_folder",
    "shard_length",
    "split_dataset",
    "split_indices",
    "stratified_subset",
]
