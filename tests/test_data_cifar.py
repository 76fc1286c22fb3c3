import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from data_fixtures import CIFAR10_NAMES, make_cifar_tarball, serve_directory, write_cifar
from resnetkit.data import DataError, load_cifar10, load_cifar100
from resnetkit.data import cifar as cifar_module


def test_load_cifar10_reads_an_extracted_folder(tmp_path: Path):
    arrays = write_cifar(tmp_path, "cifar10", per_file=4)
    train = load_cifar10("train", tmp_path)
    test = load_cifar10("test", tmp_path)
    assert train.images.shape == (20, 3, 32, 32) and len(test) == 4
    np.testing.assert_array_equal(train.images.numpy(), arrays["train"][0])
    np.testing.assert_array_equal(train.labels.numpy(), arrays["train"][1])
    assert train.info.class_names == tuple(CIFAR10_NAMES)
    assert train.info.mean == (0.4914, 0.4822, 0.4465)


def test_rows_are_read_as_red_then_green_then_blue_planes(tmp_path: Path):
    write_cifar(tmp_path, "cifar10", per_file=1)
    folder = tmp_path / "cifar-10-batches-py"
    data = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.full(1024, 30)])
    batch = {b"data": data.astype(np.uint8)[None], b"labels": [3]}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    image = load_cifar10("test", tmp_path).images[0]
    assert image[:, 5, 7].tolist() == [10, 20, 30]


def test_load_cifar10_accepts_the_batches_folder_itself(tmp_path: Path):
    write_cifar(tmp_path, "cifar10", per_file=2)
    assert len(load_cifar10("test", tmp_path / "cifar-10-batches-py")) == 2


def test_load_cifar10_extracts_the_official_tarball(tmp_path: Path):
    archive, arrays = make_cifar_tarball(tmp_path, "cifar10", per_file=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]
    test = load_cifar10("test", tmp_path)
    np.testing.assert_array_equal(test.images.numpy(), arrays["test"][0])
    assert (tmp_path / "cifar-10-batches-py" / "batches.meta").is_file()


def test_load_cifar100_uses_fine_labels_and_their_names(tmp_path: Path):
    _, arrays = make_cifar_tarball(tmp_path, "cifar100", per_file=20)
    train = load_cifar100("train", tmp_path)
    assert len(train) == 20 and train.info.num_classes == 100
    np.testing.assert_array_equal(train.labels.numpy(), arrays["train"][1])
    assert train.info.class_names[7] == "fine_7"


def test_missing_cifar_names_the_folder_the_expected_files_and_the_fix(tmp_path: Path):
    with pytest.raises(DataError) as info:
        load_cifar10("train", tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "cifar-10-python.tar.gz" in message
    assert "--download" in message and "\n" not in message


def test_labels_out_of_range_are_rejected(tmp_path: Path):
    write_cifar(tmp_path, "cifar10", per_file=1)
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 10\)"):
        load_cifar10("test", tmp_path)


class _Payload:
    """Unpickling this would create `marker` by calling open(); a safe loader must refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_with_a_reduce_payload_is_refused_without_running_it(tmp_path: Path, protocol):
    write_cifar(tmp_path, "cifar10", per_file=1)
    marker = tmp_path / "pwned"
    evil = {b"data": _Payload(marker), b"labels": [0]}
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(
        pickle.dumps(evil, protocol=protocol)
    )
    with pytest.raises(DataError, match=r"asks for global (io|builtins)\.open"):
        load_cifar10("test", tmp_path)
    assert not marker.exists()


def test_a_pickle_calling_os_system_is_refused(tmp_path: Path):
    write_cifar(tmp_path, "cifar10", per_file=1)

    class Shell:
        def __reduce__(self):
            return (os.system, ("true",))

    meta = tmp_path / "cifar-10-batches-py" / "batches.meta"
    meta.write_bytes(pickle.dumps({b"label_names": [Shell()]}, protocol=2))
    with pytest.raises(DataError, match=r"asks for global (os|posix)\.system"):
        load_cifar10("test", tmp_path)


def test_download_fetches_verifies_and_extracts(tmp_path: Path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    archive, arrays = make_cifar_tarball(served, "cifar10", per_file=2)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    with serve_directory(served) as url:
        source = cifar_module.SOURCES["cifar10"]
        patched = type(source)(**{**source.__dict__, "url": url + archive.name, "md5": md5})
        monkeypatch.setitem(cifar_module.SOURCES, "cifar10", patched)
        test = load_cifar10("test", tmp_path / "data", download=True)
    assert torch.equal(test.images, torch.from_numpy(arrays["test"][0]))
    assert (tmp_path / "data" / archive.name).is_file()


def test_download_with_a_wrong_checksum_extracts_nothing(tmp_path: Path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    archive, _ = make_cifar_tarball(served, "cifar10", per_file=1)
    with serve_directory(served) as url:
        source = cifar_module.SOURCES["cifar10"]
        patched = type(source)(**{**source.__dict__, "url": url + archive.name, "md5": "0" * 32})
        monkeypatch.setitem(cifar_module.SOURCES, "cifar10", patched)
        with pytest.raises(DataError, match="checksum mismatch"):
            load_cifar10("train", tmp_path / "data", download=True)
    assert list((tmp_path / "data").iterdir()) == []
