import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_fixtures import CIFAR10_NAMES, add_tar_member, write_image_folder
from resnetkit.data import (
    ArchiveImageDataset,
    DataError,
    InMemoryDataset,
    load_dataset,
    load_image_archive_in_memory,
)

REAL_ARCHIVE = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-jpeg.tar.gz"
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/train/<3 classes>, root/test/<2 of them>: PNGs and JPEGs."""
    root = tmp_path / "tree"
    write_image_folder(root / "train", {"ant": 3, "bee": 2, "cow": 3}, ext=".png")
    write_image_folder(root / "test", {"ant": 1, "cow": 2}, ext=".jpg")
    (root / "train" / "ant" / "README.txt").write_text("not an image")
    return root


def _pack(root: Path, archive: Path, arcname: str = ".") -> Path:
    mode = "w:gz" if archive.name.endswith(("gz", "tgz")) else "w"
    with tarfile.open(archive, mode) as tar:
        tar.add(root, arcname=arcname)
    return archive


def _same(a, b) -> None:
    assert a.info.class_names == b.info.class_names
    assert torch.equal(a.labels, b.labels)
    images_a = a.images if isinstance(a, InMemoryDataset) else torch.stack([x for x, _ in a])
    images_b = b.images if isinstance(b, InMemoryDataset) else torch.stack([x for x, _ in b])
    assert torch.equal(images_a, images_b)


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tgz"])
@pytest.mark.parametrize("in_memory", [False, True])
def test_an_archive_reads_exactly_like_its_extracted_folder(tree, tmp_path, suffix, in_memory):
    archive = _pack(tree, tmp_path / f"tree{suffix}")
    for split in ("train", "test"):
        kwargs = dict(image_size=(8, 8), in_memory=in_memory)
        from_folder = load_dataset(f"folder:{tree}", split, **kwargs)
        from_archive = load_dataset(f"folder:{archive}", split, **kwargs)
        _same(from_folder, from_archive)
    assert from_archive.info.class_names == ("ant", "bee", "cow")  # test keeps train's numbering
    assert len(from_archive) == 3


def test_a_single_top_level_folder_in_the_archive_is_looked_into(tree, tmp_path):
    archive = _pack(tree, tmp_path / "wrapped.tar.gz", arcname="cifar-ish")
    train = load_dataset(f"folder:{archive}", "train", image_size=(8, 8))
    assert isinstance(train, ArchiveImageDataset)
    assert train.info.class_names == ("ant", "bee", "cow") and len(train) == 8


def test_an_archive_without_splits_carves_val_from_its_classes(tmp_path):
    root = write_image_folder(tmp_path / "flat", {"a": 4, "b": 4})
    archive = _pack(root, tmp_path / "flat.tar")
    kwargs = dict(image_size=(8, 8), val_fraction=0.25, in_memory=True)
    train = load_dataset(f"folder:{archive}", "train", **kwargs)
    val = load_dataset(f"folder:{archive}", "val", **kwargs)
    assert (len(train), len(val)) == (6, 2)
    with pytest.raises(DataError, match="no test/ folder"):
        load_dataset(f"folder:{archive}", "test", image_size=(8, 8))


UNSAFE = {
    "absolute path": ("/tmp/evil.png", {}),
    "parent escape": ("a/../../evil.png", {}),
    "symlink out": ("a/up", {"type": tarfile.SYMTYPE, "linkname": "../../etc"}),
    "hard link out": ("a/h.png", {"type": tarfile.LNKTYPE, "linkname": "../outside.png"}),
    "device file": ("a/null", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_members_make_the_archive_refused(tmp_path, case):
    png = (write_image_folder(tmp_path / "src", {"a": 1}) / "a" / "0.png").read_bytes()
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        add_tar_member(tar, "a/0.png", png)
        name, attributes = UNSAFE[case]
        add_tar_member(tar, name, png, **attributes)
    for in_memory in (False, True):
        with pytest.raises(DataError, match="refusing to read it"):
            load_dataset(f"folder:{archive}", image_size=(8, 8), in_memory=in_memory)


def test_only_regular_files_with_image_extensions_are_read(tmp_path):
    png = (write_image_folder(tmp_path / "src", {"a": 1}) / "a" / "0.png").read_bytes()
    archive = tmp_path / "mixed.tar"
    with tarfile.open(archive, "w") as tar:
        add_tar_member(tar, "a/0.png", png)
        add_tar_member(tar, "a/notes.txt", b"text")
        add_tar_member(tar, "a/.hidden.png", png)
        add_tar_member(tar, "a/link.png", type=tarfile.SYMTYPE, linkname="0.png")
        add_tar_member(tar, "b/1.png", png)
    ds = load_dataset(f"folder:{archive}", image_size=(8, 8))
    assert [name for _, _, name in ds.samples] == ["a/0.png", "b/1.png"]


def test_a_truncated_member_is_skipped_with_a_count(tree, tmp_path, caplog):
    noise = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG")
    (tree / "train" / "cow" / "9.jpg").write_bytes(buffer.getvalue()[:-10])  # header intact
    archive = _pack(tree, tmp_path / "tree.tar.gz")
    ds = load_image_archive_in_memory(archive, "train", (8, 8), cache=False)
    assert len(ds) == 8
    assert "skipped 1 image(s) that failed to decode" in caplog.text
    with pytest.raises(DataError, match=r"tree\.tar\.gz:train/cow/9\.jpg"):
        load_image_archive_in_memory(archive, "train", (8, 8), strict=True, cache=False)


def test_a_corrupt_archive_is_one_clear_error(tmp_path):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="cannot read tar archive"):
        load_dataset(f"folder:{archive}", image_size=(8, 8))


@pytest.mark.skipif(not REAL_ARCHIVE.is_file(), reason="needs ../shared/data/cifar10-jpeg.tar.gz")
def test_a_slice_of_the_real_cifar10_archive(tmp_path):
    """25 training and 5 test images per class, copied from the real archive."""
    quota = {"train": 25, "test": 5}
    taken: dict[tuple[str, str], int] = {}
    sliced = tmp_path / "cifar10-slice.tar"
    with tarfile.open(REAL_ARCHIVE) as src, tarfile.open(sliced, "w") as dst:
        for member in src:
            parts = member.name.split("/")
            if not member.isreg() or len(parts) != 3:
                continue
            key = (parts[0], parts[1])
            if taken.get(key, 0) < quota[parts[0]]:
                taken[key] = taken.get(key, 0) + 1
                dst.addfile(member, io.BytesIO(src.extractfile(member).read()))
    train = load_dataset(f"folder:{sliced}", "train", image_size=(32, 32), in_memory=True)
    test = load_dataset(f"folder:{sliced}", "test", image_size=(32, 32), in_memory=True)
    assert train.images.shape == (250, 3, 32, 32) and test.images.shape == (50, 3, 32, 32)
    assert train.info.class_names == test.info.class_names == tuple(CIFAR10_NAMES)
    assert torch.bincount(train.labels).tolist() == [25] * 10
    assert torch.bincount(test.labels).tolist() == [5] * 10
    assert 60 < train.images.float().mean() < 190, "natural photos, not blank decodes"
