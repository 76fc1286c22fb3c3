import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from data_fixtures import serve_directory, write_idx, write_idx_dataset
from resnetkit.data import DataError, channel_stats, load_fashion_mnist, load_mnist, read_idx
from resnetkit.data import idx as idx_module

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_parses_header_dtype_and_dims(tmp_path: Path, compress: bool):
    array = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    path = write_idx(tmp_path / "a.idx", array, compress=compress)
    loaded = read_idx(path)
    assert loaded.shape == (2, 3, 4) and loaded.dtype == np.int32
    np.testing.assert_array_equal(loaded, array)


def test_read_idx_rejects_a_bad_magic_number(tmp_path: Path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(path)


def test_read_idx_rejects_a_truncated_file(tmp_path: Path):
    path = write_idx(tmp_path / "x", np.zeros((10, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(path)


def test_read_idx_rejects_an_unknown_type_code(tmp_path: Path):
    path = tmp_path / "x"
    path.write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x00")
    with pytest.raises(DataError, match="unknown IDX type code 0x07"):
        read_idx(path)


def test_load_fashion_mnist_reads_gzipped_files_from_data_dir(tmp_path: Path):
    arrays = write_idx_dataset(tmp_path, n_train=30, n_test=20, compress=True)
    ds = load_fashion_mnist("test", data_dir=tmp_path)
    assert ds.images.shape == (20, 1, 28, 28) and ds.images.dtype == torch.uint8
    np.testing.assert_array_equal(ds.images[:, 0].numpy(), arrays["test"][0])
    np.testing.assert_array_equal(ds.labels.numpy(), arrays["test"][1])
    assert ds.info.class_names[0] == "T-shirt/top" and ds.info.class_names[9] == "Ankle boot"
    assert ds.info.mean == (0.2860,) and ds.info.std == (0.3530,)


def test_load_mnist_reads_uncompressed_files_and_names_digits(tmp_path: Path):
    write_idx_dataset(tmp_path / "mnist", n_train=30, compress=False)
    ds = load_mnist("train", data_dir=tmp_path)  # data_dir/<name> is searched too
    assert len(ds) == 30
    assert ds.info.class_names == tuple("0123456789")
    assert ds.info.mean == (0.1307,) and ds.info.std == (0.3081,)


def test_image_and_label_counts_must_match(tmp_path: Path):
    write_idx_dataset(tmp_path, n_train=30)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(29, np.uint8), compress=True)
    with pytest.raises(DataError, match=r"30 images but .* 29 labels"):
        load_mnist("train", data_dir=tmp_path)


def test_labels_beyond_ten_classes_are_rejected(tmp_path: Path):
    write_idx_dataset(tmp_path, n_train=30)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(30, 12, np.uint8), compress=True)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 10\)"):
        load_mnist("train", data_dir=tmp_path)


def test_missing_files_raise_one_line_naming_folder_file_and_fix(tmp_path: Path):
    with pytest.raises(DataError) as info:
        load_fashion_mnist("train", data_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path) in message and "train-images-idx3-ubyte(.gz)" in message
    assert "--data-dir" in message and "--download" in message


def test_unknown_split_is_rejected(tmp_path: Path):
    with pytest.raises(DataError, match="splits 'train' and 'test'"):
        load_mnist("validation", data_dir=tmp_path)


def test_without_data_dir_the_system_folder_comes_first(tmp_path: Path, monkeypatch):
    write_idx_dataset(tmp_path / "system" / "fashion-mnist", n_test=12)
    monkeypatch.setattr(idx_module, "SYSTEM_DATASETS_DIR", tmp_path / "system")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert len(load_fashion_mnist("test")) == 12


def test_download_fetches_and_verifies_from_the_mirror(tmp_path: Path, monkeypatch):
    served = tmp_path / "served"
    write_idx_dataset(served, n_train=30, n_test=10)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in served.iterdir()}
    monkeypatch.setattr(idx_module, "SYSTEM_DATASETS_DIR", tmp_path / "nowhere")
    monkeypatch.delenv("RESNETKIT_CACHE")  # set by conftest; this test checks the XDG fallback
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with serve_directory(served) as url:
        source = dataclasses.replace(idx_module.SOURCES["mnist"], mirror=url, md5=md5)
        monkeypatch.setitem(idx_module.SOURCES, "mnist", source)
        ds = load_mnist("test", download=True)
    assert len(ds) == 10
    cached = tmp_path / "cache" / "resnetkit" / "datasets" / "mnist"
    assert sorted(p.name for p in cached.iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]


def test_download_refuses_files_whose_md5_differs(tmp_path: Path, monkeypatch):
    served = tmp_path / "served"
    write_idx_dataset(served)
    md5 = {p.name: "0" * 32 for p in served.iterdir()}
    with serve_directory(served) as url:
        source = dataclasses.replace(idx_module.SOURCES["mnist"], mirror=url, md5=md5)
        monkeypatch.setitem(idx_module.SOURCES, "mnist", source)
        with pytest.raises(DataError, match="checksum mismatch"):
            load_mnist("test", data_dir=tmp_path / "dl", download=True)
    assert list((tmp_path / "dl").iterdir()) == []


needs_debian_files = pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist package is not installed",
)


@needs_debian_files
def test_real_fashion_mnist_statistics_match_the_hard_coded_values():
    ds = load_fashion_mnist("train", data_dir=DEBIAN_FASHION_MNIST)
    assert ds.images.shape == (60000, 1, 28, 28)
    mean, std = channel_stats(ds.images)
    assert mean[0] == pytest.approx(ds.info.mean[0], abs=5e-4)
    assert std[0] == pytest.approx(ds.info.std[0], abs=5e-4)


@needs_debian_files
def test_real_fashion_mnist_test_split_has_1000_images_per_class():
    ds = load_fashion_mnist("test", data_dir=DEBIAN_FASHION_MNIST)
    assert torch.bincount(ds.labels).tolist() == [1000] * 10


@pytest.mark.parametrize("dims", [(65536, 65536, 65536, 65536), (2**32 - 1,) * 3, ()])
def test_idx_header_whose_sizes_overflow_or_are_empty_is_a_data_error(tmp_path: Path, dims):
    import struct

    path = tmp_path / "crafted-idx1-ubyte"
    # 65536**4 is 2**64: numpy's int64 product wraps to 0, matching an empty payload.
    path.write_bytes(bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims))
    with pytest.raises(DataError, match="re-download"):
        read_idx(path)
