"""CIFAR-10 and CIFAR-100 from the official python-pickle batches, folder or tarball."""

from __future__ import annotations

import codecs
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from resnetkit.data.base import DataError, DatasetInfo, InMemoryDataset, default_cache_dir
from resnetkit.data.download import download_file, safe_extract_tar

__all__ = ["load_cifar10", "load_cifar100", "load_cifar_pickle"]

logger = logging.getLogger(__name__)

# The CIFAR batches are pickled dicts of numpy arrays, so unpickling needs exactly these
# globals (under numpy 1.x and 2.x module names); `_codecs.encode` appears in protocol-2
# pickles written by Python 3. Nothing else may be looked up, so a file cannot run code.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _ForbiddenGlobalError(pickle.UnpicklingError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _ForbiddenGlobalError(f"{module}.{name}") from None


def load_cifar_pickle(path: str | os.PathLike[str]) -> dict[bytes, Any]:
    """Unpickle one CIFAR batch/meta file, allowing only numpy array reconstruction."""
    try:
        with open(path, "rb") as f:
            data = _RestrictedUnpickler(f, encoding="bytes").load()
    except _ForbiddenGlobalError as exc:
        raise DataError(
            f"refusing to load {path}: it asks for global {exc}, which is not allowed "
            "(a genuine CIFAR file needs only numpy arrays); delete it and re-download"
        ) from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(
            f"cannot load CIFAR file {path}: {exc}; it is corrupt or not a CIFAR batch, "
            "delete it and re-download"
        ) from exc
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a CIFAR batch (expected a dict, got {type(data).__name__})")
    return data


@dataclass(frozen=True)
class CifarSource:
    """File layout, download location and statistics of one CIFAR variant."""

    name: str
    title: str
    folder: str
    archive: str
    url: str
    md5: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    names_key: bytes
    labels_key: bytes
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


SOURCES: dict[str, CifarSource] = {
    "cifar10": CifarSource(
        name="cifar10",
        title="CIFAR-10",
        folder="cifar-10-batches-py",
        archive="cifar-10-python.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        meta_file="batches.meta",
        names_key=b"label_names",
        labels_key=b"labels",
        num_classes=10,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
    ),
    "cifar100": CifarSource(
        name="cifar100",
        title="CIFAR-100",
        folder="cifar-100-python",
        archive="cifar-100-python.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        train_files=("train",),
        test_files=("test",),
        meta_file="meta",
        names_key=b"fine_label_names",
        labels_key=b"fine_labels",
        num_classes=100,
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
    ),
}


def load_cifar10(
    split: str, data_dir: str | os.PathLike[str] | None = None, download: bool = False
) -> InMemoryDataset:
    """Load the CIFAR-10 `split` ("train" or "test") as a uint8 (N, 3, 32, 32) dataset."""
    return load_cifar(SOURCES["cifar10"], split, data_dir, download)


def load_cifar100(
    split: str, data_dir: str | os.PathLike[str] | None = None, download: bool = False
) -> InMemoryDataset:
    """Load the CIFAR-100 `split` with its 100 fine labels as a uint8 (N, 3, 32, 32) dataset."""
    return load_cifar(SOURCES["cifar100"], split, data_dir, download)


def load_cifar(
    source: CifarSource,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> InMemoryDataset:
    """Find, extract or download, and load one split of a CIFAR variant."""
    if split not in ("train", "test"):
        raise DataError(f"{source.title} has splits 'train' and 'test', not {split!r}")
    root = Path(data_dir) if data_dir is not None else default_cache_dir() / source.name
    folder = _locate(source, root, download)
    names = _class_names(source, folder / source.meta_file)
    files = source.train_files if split == "train" else source.test_files
    images, labels = [], []
    for filename in files:
        batch = load_cifar_pickle(folder / filename)
        x, y = _parse_batch(source, batch, folder / filename)
        images.append(x)
        labels.append(y)
    info = DatasetInfo(
        name=source.name,
        class_names=names,
        in_chans=3,
        image_size=(32, 32),
        mean=source.mean,
        std=source.std,
    )
    return InMemoryDataset(torch.cat(images), torch.cat(labels), info)


def _locate(source: CifarSource, root: Path, download: bool) -> Path:
    """Return the extracted batches folder, extracting or downloading the tarball if needed."""
    if (root / source.meta_file).is_file():  # `root` is the extracted folder itself
        return root
    folder = root / source.folder
    if (folder / source.meta_file).is_file():
        return folder
    archive = root / source.archive
    if not archive.is_file():
        if not download:
            raise DataError(
                f"{source.title} not found in {root}: expected {source.folder}/ or "
                f"{source.archive}; pass --data-dir or --download"
            )
        logger.info("downloading %s to %s", source.title, root)
        download_file(source.url, archive, md5=source.md5)
    logger.info("extracting %s", archive)
    safe_extract_tar(archive, root)
    if not (folder / source.meta_file).is_file():
        raise DataError(f"{archive} does not contain {source.folder}/{source.meta_file}")
    return folder


def _class_names(source: CifarSource, meta_path: Path) -> tuple[str, ...]:
    meta = load_cifar_pickle(meta_path)
    raw = meta.get(source.names_key)
    if not isinstance(raw, list) or len(raw) != source.num_classes:
        raise DataError(
            f"{meta_path}: expected {source.num_classes} names under {source.names_key!r}"
        )
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in raw)


def _parse_batch(
    source: CifarSource, batch: dict[bytes, Any], path: Path
) -> tuple[torch.Tensor, torch.Tensor]:
    data, labels = batch.get(b"data"), batch.get(source.labels_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"{path}: b'data' must be a uint8 (N, 3072) array")
    if data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: b'data' rows have {data.shape[1]} values, expected 3072")
    if labels is None or len(labels) != len(data):
        raise DataError(
            f"{path}: {len(data)} images but "
            f"{'no' if labels is None else len(labels)} {source.labels_key!r} labels"
        )
    # Rows are 1024 red, then 1024 green, then 1024 blue values, each row-major 32x32.
    images = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, 3, 32, 32).copy())
    return images, torch.as_tensor(np.asarray(labels, dtype=np.int64))
