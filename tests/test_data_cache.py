import logging
import os
import tarfile
from pathlib import Path

import pytest
import torch

import resnetkit.data.archive as archive_module
import resnetkit.data.folder as folder_module
from data_fixtures import write_image_folder
from resnetkit.data import (
    DataError,
    load_dataset,
    load_image_archive_in_memory,
    load_image_folder_in_memory,
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "imgs", {"a": 3, "b": 2})


def _cache_files(suffix: str = ".safetensors") -> list[Path]:
    decoded = Path(os.environ["RESNETKIT_CACHE"]) / "datasets" / "decoded"
    return sorted(decoded.glob(f"*{suffix}")) if decoded.is_dir() else []


def _no_decoding(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(folder_module, "decode_images", refuse)


def test_the_cache_lives_under_resnetkit_cache_datasets(folder: Path):
    load_image_folder_in_memory(folder, (8, 8))
    assert len(_cache_files()) == 1


def test_a_cache_hit_returns_identical_tensors_without_decoding(folder: Path, monkeypatch):
    first = load_image_folder_in_memory(folder, (8, 8))
    _no_decoding(monkeypatch)
    second = load_image_folder_in_memory(folder, (8, 8))
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.info == first.info


def test_other_decoding_parameters_get_their_own_cache(folder: Path):
    load_image_folder_in_memory(folder, (8, 8))
    gray = load_image_folder_in_memory(folder, (8, 8), in_chans=1)
    small = load_image_folder_in_memory(folder, (4, 4))
    assert gray.images.shape[1:] == (1, 8, 8) and small.images.shape[1:] == (3, 4, 4)
    assert len(_cache_files()) == 3


def test_a_changed_file_invalidates_the_cache(folder: Path):
    before = load_image_folder_in_memory(folder, (8, 8))
    target = folder / "b" / "1.png"
    write_image_folder(folder.parent / "other", {"z": 2})
    target.write_bytes((folder.parent / "other" / "z" / "1.png").read_bytes())
    os.utime(target, ns=(1, 1))  # a different mtime, even on coarse-clock file systems
    after = load_image_folder_in_memory(folder, (8, 8))
    assert not torch.equal(before.images[4], after.images[4])
    assert torch.equal(before.images[:4], after.images[:4])
    assert len(_cache_files()) == 1, "the stale cache is replaced, not kept beside"


def test_an_added_file_invalidates_the_cache(folder: Path):
    load_image_folder_in_memory(folder, (8, 8))
    (folder / "a" / "extra.png").write_bytes((folder / "a" / "0.png").read_bytes())
    assert len(load_image_folder_in_memory(folder, (8, 8))) == 6


def test_a_corrupt_cache_file_is_rebuilt_with_a_log_line(folder: Path, caplog):
    first = load_image_folder_in_memory(folder, (8, 8))
    (path,) = _cache_files()
    path.write_bytes(path.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        again = load_image_folder_in_memory(folder, (8, 8))
    assert torch.equal(first.images, again.images)
    assert "unreadable" in caplog.text and "rebuilding" in caplog.text
    assert path.stat().st_size > 100, "the cache was written again"


def test_cache_false_neither_reads_nor_writes(folder: Path, monkeypatch):
    load_image_folder_in_memory(folder, (8, 8), cache=False)
    assert _cache_files() == []
    load_image_folder_in_memory(folder, (8, 8))
    (path,) = _cache_files()
    path.write_bytes(b"garbage that a cache read would trip over")
    load_image_folder_in_memory(folder, (8, 8), cache=False)
    assert path.read_bytes().startswith(b"garbage")


def test_the_cache_remembers_skipped_files_and_strict_still_raises(folder: Path, caplog):
    good = (folder / "a" / "0.png").read_bytes()
    (folder / "a" / "broken.png").write_bytes(good[:30])
    assert len(load_image_folder_in_memory(folder, (8, 8))) == 5
    with caplog.at_level(logging.WARNING):
        assert len(load_image_folder_in_memory(folder, (8, 8))) == 5
    assert "1 unreadable image(s) were skipped when this cache was built" in caplog.text
    with pytest.raises(DataError, match=r"broken\.png"):
        load_image_folder_in_memory(folder, (8, 8), strict=True)


def test_an_archive_cache_hit_does_not_open_the_archive(folder: Path, tmp_path, monkeypatch):
    archive = tmp_path / "imgs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="imgs")
    first = load_dataset(f"folder:{archive}", image_size=(8, 8), in_memory=True)

    def refuse(*args, **kwargs):
        raise AssertionError("listed the archive again instead of reading the cache")

    monkeypatch.setattr(archive_module, "ImageArchive", refuse)
    second = load_dataset(f"folder:{archive}", image_size=(8, 8), in_memory=True)
    assert torch.equal(first.images, second.images) and second.info == first.info


def test_a_rewritten_archive_invalidates_its_cache(folder: Path, tmp_path):
    archive = tmp_path / "imgs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(folder, arcname=".")
    assert len(load_image_archive_in_memory(archive, "", (8, 8))) == 5
    with tarfile.open(archive, "w") as tar:
        tar.add(folder / "a", arcname="a")
    assert len(load_image_archive_in_memory(archive, "", (8, 8))) == 3
