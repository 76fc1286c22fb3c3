"""Writers for tiny, format-exact dataset files, shared by the data tests."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import io
import pickle
import struct
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# Device-side code runs on CPU everywhere and on CUDA too when the machine has it.
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]

CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write `array` as an IDX file (big-endian), gzip-compressed if asked."""
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}
    code = codes[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def write_idx_dataset(
    folder: Path, n_train: int = 30, n_test: int = 20, compress: bool = True, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write the four MNIST-style files with 28x28 images; return {split: (images, labels)}."""
    rng = np.random.default_rng(seed)
    suffix = ".gz" if compress else ""
    arrays = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
        arrays[split] = (images, labels)
    return arrays


def _dump(path: Path, obj: object) -> None:
    # Protocol 2, as in the official files (written by Python 2's cPickle).
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_cifar(
    root: Path, variant: str = "cifar10", per_file: int = 4, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write an extracted CIFAR folder under `root`; return {split: (NCHW images, labels)}."""
    rng = np.random.default_rng(seed)
    if variant == "cifar10":
        folder = root / "cifar-10-batches-py"
        files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        labels_key, num_classes = b"labels", 10
        meta_name, meta = "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES]}
    else:
        folder = root / "cifar-100-python"
        files = {"train": ["train"], "test": ["test"]}
        labels_key, num_classes = b"fine_labels", 100
        meta_name = "meta"
        meta = {
            b"fine_label_names": [f"fine_{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)],
        }
    folder.mkdir(parents=True, exist_ok=True)
    _dump(folder / meta_name, meta)
    result = {}
    for split, names in files.items():
        all_images, all_labels = [], []
        for name in names:
            data = rng.integers(0, 256, size=(per_file, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, num_classes, size=per_file)]
            batch = {b"batch_label": name.encode(), b"data": data, labels_key: labels}
            if variant == "cifar100":
                batch[b"coarse_labels"] = [v // 5 for v in labels]
            _dump(folder / name, batch)
            all_images.append(data.reshape(-1, 3, 32, 32))
            all_labels.append(np.array(labels))
        result[split] = (np.concatenate(all_images), np.concatenate(all_labels))
    return result


def make_cifar_tarball(
    root: Path, variant: str = "cifar10", per_file: int = 4, seed: int = 0
) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Write the official-style tarball into `root`; return (path, arrays)."""
    staging = root / "_staging"
    arrays = write_cifar(staging, variant, per_file, seed)
    folder_name = "cifar-10-batches-py" if variant == "cifar10" else "cifar-100-python"
    archive_name = "cifar-10-python.tar.gz" if variant == "cifar10" else "cifar-100-python.tar.gz"
    archive = root / archive_name
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / folder_name, arcname=folder_name)
    for path in sorted((staging / folder_name).iterdir()):
        path.unlink()
    (staging / folder_name).rmdir()
    staging.rmdir()
    return archive, arrays


def write_image_folder(
    root: Path,
    counts: dict[str, int],
    size: tuple[int, int] = (12, 16),
    mode: str = "RGB",
    ext: str = ".png",
) -> Path:
    """Write root/<class>/<i><ext>; each class is a flat colour, (W, H) = size."""
    for k, (name, n) in enumerate(sorted(counts.items())):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            colour = (40 * k + 10, 200 - 30 * k, 5 * i)
            image = Image.new("RGB", size, colour)
            if mode != "RGB":
                image = image.convert(mode)
            image.save(folder / f"{i}{ext}")
    return root


def add_tar_member(
    tar: tarfile.TarFile, name: str, data: bytes = b"x", **attributes: object
) -> None:
    """Add one member with the given TarInfo attributes (type, linkname, ...)."""
    info = tarfile.TarInfo(name)
    for key, value in attributes.items():
        setattr(info, key, value)
    if info.isreg():
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_directory(folder: Path) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 (random port) for the duration; yield the base URL."""

    def handler(*args: object, **kwargs: object) -> _QuietHandler:
        return _QuietHandler(*args, directory=str(folder), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
