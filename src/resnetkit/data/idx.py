"""MNIST and Fashion-MNIST from their IDX files (raw or .gz), with checksummed download."""

from __future__ import annotations

import gzip
import logging
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from resnetkit.data.base import DataError, DatasetInfo, InMemoryDataset, default_cache_dir
from resnetkit.data.download import download_file, file_digest

__all__ = ["load_fashion_mnist", "load_mnist", "read_idx"]

logger = logging.getLogger(__name__)

# Debian's dataset-fashion-mnist package installs the four .gz files here.
SYSTEM_DATASETS_DIR = Path("/usr/share/datasets")

# IDX type codes (third byte of the magic number) -> big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


@dataclass(frozen=True)
class IdxSource:
    """Where one IDX dataset lives online, how to verify it, and what its classes are."""

    name: str
    title: str
    mirror: str
    md5: dict[str, str]
    class_names: tuple[str, ...]
    mean: float
    std: float


SOURCES: dict[str, IdxSource] = {
    "mnist": IdxSource(
        name="mnist",
        title="MNIST",
        mirror="https://ossci-datasets.s3.amazonaws.com/mnist/",
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        class_names=tuple(str(d) for d in range(10)),
        mean=0.1307,
        std=0.3081,
    ),
    "fashion-mnist": IdxSource(
        name="fashion-mnist",
        title="Fashion-MNIST",
        mirror="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        mean=0.2860,
        std=0.3530,
    ),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a native-endian numpy array."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}; delete it and re-download") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number); re-download it")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise DataError(f"{path}: unknown IDX type code 0x{type_code:02x}; re-download it")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"{path}: IDX header is truncated; re-download it")
    if ndim == 0:
        raise DataError(f"{path}: IDX header has no dimensions; re-download it")
    dims = struct.unpack(f">{ndim}I", raw[4:header_size])
    dtype = _IDX_DTYPES[type_code]
    # Python integers: numpy's int64 product wraps around for crafted sizes (65536**4 -> 0).
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header_size != expected:
        raise DataError(
            f"{path}: header promises {expected} data bytes for shape {dims}, "
            f"file has {len(raw) - header_size}; the file is truncated or corrupt, re-download it"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=False)


def load_mnist(
    split: str, data_dir: str | os.PathLike[str] | None = None, download: bool = False
) -> InMemoryDataset:
    """Load the MNIST `split` ("train" or "test") as a uint8 (N, 1, 28, 28) dataset."""
    return load_idx_dataset(SOURCES["mnist"], split, data_dir, download)


def load_fashion_mnist(
    split: str, data_dir: str | os.PathLike[str] | None = None, download: bool = False
) -> InMemoryDataset:
    """Load the Fashion-MNIST `split` ("train" or "test") as a uint8 (N, 1, 28, 28) dataset."""
    return load_idx_dataset(SOURCES["fashion-mnist"], split, data_dir, download)


def load_idx_dataset(
    source: IdxSource,
    split: str,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> InMemoryDataset:
    """Find (or download) and load one split of an IDX dataset described by `source`."""
    if split not in _SPLIT_PREFIX:
        raise DataError(f"{source.title} has splits 'train' and 'test', not {split!r}")
    prefix = _SPLIT_PREFIX[split]
    stems = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
    candidates = _search_dirs(source, data_dir)
    found = _find_files(candidates, stems)
    if found is None:
        if not download:
            where = ", ".join(str(c) for c in candidates)
            raise DataError(
                f"{source.title} not found in {where}: expected {stems[0]}(.gz); "
                "pass --data-dir or --download"
            )
        target = Path(data_dir) if data_dir is not None else default_cache_dir() / source.name
        found = [_download(source, target, stem + ".gz") for stem in stems]
    images_path, labels_path = found
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected uint8 images of shape (N, H, W), "
            f"got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected labels of shape (N,), got {labels.shape}")
    if len(images) != len(labels):
        raise DataError(
            f"{source.title} {split}: {images_path.name} holds {len(images)} images but "
            f"{labels_path.name} holds {len(labels)} labels; re-download both"
        )
    info = DatasetInfo(
        name=source.name,
        class_names=source.class_names,
        in_chans=1,
        image_size=(int(images.shape[1]), int(images.shape[2])),
        mean=(source.mean,),
        std=(source.std,),
    )
    return InMemoryDataset(
        torch.from_numpy(images.copy()).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
        info,
    )


def _search_dirs(source: IdxSource, data_dir: str | os.PathLike[str] | None) -> list[Path]:
    if data_dir is not None:
        return [Path(data_dir), Path(data_dir) / source.name]
    return [SYSTEM_DATASETS_DIR / source.name, default_cache_dir() / source.name]


def _find_files(dirs: list[Path], stems: list[str]) -> list[Path] | None:
    """Return the first folder's files for all stems (raw preferred over .gz), or None."""
    for folder in dirs:
        paths = []
        for stem in stems:
            options = [folder / stem, folder / f"{stem}.gz"]
            path = next((p for p in options if p.is_file()), None)
            if path is None:
                break
            paths.append(path)
        else:
            return paths
    return None


def _download(source: IdxSource, target: Path, filename: str) -> Path:
    dest = target / filename
    md5 = source.md5[filename]
    if dest.is_file() and file_digest(dest, "md5") == md5:
        return dest
    logger.info("downloading %s %s to %s", source.title, filename, target)
    return download_file(source.mirror + filename, dest, md5=md5)
