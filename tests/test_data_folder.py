import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data_fixtures import write_image_folder
from resnetkit.data import (
    DataError,
    ImageFolderDataset,
    InMemoryDataset,
    decode_images,
    load_image,
    load_image_folder,
    load_image_folder_in_memory,
    make_folder_loader,
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "imgs", {"dog": 4, "cat": 3, "emu": 5}, size=(12, 16))


def test_classes_are_sorted_folder_names_and_labels_follow_them(folder: Path):
    ds = ImageFolderDataset(folder, image_size=(8, 8))
    assert ds.info.class_names == ("cat", "dog", "emu")
    assert torch.bincount(ds.labels).tolist() == [3, 4, 5]
    image, label = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 8, 8)
    assert label == 0 and ds.samples[0][0].parent.name == "cat"


def test_load_image_resizes_the_shorter_side_then_center_crops(tmp_path: Path):
    image = Image.new("RGB", (30, 10))
    for x0, colour in ((0, (255, 0, 0)), (10, (0, 255, 0)), (20, (0, 0, 255))):
        image.paste(colour, (x0, 0, x0 + 10, 10))
    image.save(tmp_path / "bands.png")
    out = load_image(tmp_path / "bands.png", (5, 5), in_chans=3)
    assert out.shape == (3, 5, 5)
    assert out[:, 2, 2].tolist() == [0, 255, 0]
    assert (out[1] > 200).all(), "only the green middle band survives the center crop"


def test_load_image_keeps_aspect_when_upscaling(tmp_path: Path):
    Image.new("L", (4, 8), 77).save(tmp_path / "tall.png")
    out = load_image(tmp_path / "tall.png", (16, 16), in_chans=1)
    assert out.shape == (1, 16, 16) and (out == 77).all()


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "CMYK", "I;16"])
def test_any_mode_is_converted_to_the_requested_channels(tmp_path: Path, mode: str):
    Image.new("RGB", (6, 6), (30, 60, 90)).convert(mode).save(tmp_path / "x.tiff")
    assert load_image(tmp_path / "x.tiff", (6, 6), in_chans=3).shape == (3, 6, 6)
    assert load_image(tmp_path / "x.tiff", (6, 6), in_chans=1).shape == (1, 6, 6)


def test_sixteen_bit_grayscale_keeps_its_high_byte(tmp_path: Path):
    Image.fromarray(np.full((4, 4), 30000, dtype=np.uint16)).save(tmp_path / "deep.png")
    assert (load_image(tmp_path / "deep.png", (4, 4), in_chans=1) == 30000 >> 8).all()


def test_transparent_pixels_become_white(tmp_path: Path):
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert (load_image(tmp_path / "clear.png", (4, 4)) == 255).all()


def test_non_image_files_are_skipped_with_a_counted_warning(folder: Path, caplog):
    (folder / "cat" / "notes.txt").write_text("not an image")
    (folder / "dog" / "broken.png").write_bytes(b"\x89PNG but not really")
    (folder / "dog" / ".DS_Store").write_bytes(b"hidden files are ignored silently")
    with caplog.at_level(logging.WARNING, logger="resnetkit.data.folder"):
        ds = ImageFolderDataset(folder, (8, 8))
    assert len(ds) == 12
    assert "skipped 2 unreadable or non-image file(s)" in caplog.text


@pytest.mark.parametrize(("name", "content"), [("notes.txt", b"text"), ("bad.jpg", b"garbage")])
def test_strict_mode_raises_on_the_first_bad_file(folder: Path, name: str, content: bytes):
    (folder / "emu" / name).write_bytes(content)
    with pytest.raises(DataError, match=name):
        ImageFolderDataset(folder, (8, 8), strict=True)


def test_an_empty_class_folder_is_an_error_naming_it(folder: Path):
    (folder / "yak").mkdir()
    with pytest.raises(DataError, match=r"class folder .*yak holds no readable images"):
        ImageFolderDataset(folder, (8, 8))


def test_a_missing_root_is_an_error(tmp_path: Path):
    with pytest.raises(DataError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nope")


def test_a_root_without_class_folders_is_an_error(tmp_path: Path):
    (tmp_path / "loose.png").write_bytes(b"")
    with pytest.raises(DataError, match="no class sub-folders"):
        ImageFolderDataset(tmp_path)


def test_unsupported_channel_counts_are_rejected(folder: Path):
    with pytest.raises(DataError, match=r"in_chans 1 .* or 3"):
        ImageFolderDataset(folder, in_chans=4)


def test_val_fraction_gives_a_disjoint_stratified_split(folder: Path):
    train, val = load_image_folder(folder, (8, 8), val_fraction=0.25, seed=0)
    assert isinstance(train, ImageFolderDataset)
    assert {p for p, _ in train.samples}.isdisjoint({p for p, _ in val.samples})
    assert len(train) + len(val) == 12
    assert set(val.labels.tolist()) == {0, 1, 2}


def test_in_memory_loading_matches_the_streaming_dataset(folder: Path):
    streaming = ImageFolderDataset(folder, (8, 8), in_chans=1)
    in_memory = load_image_folder_in_memory(folder, (8, 8), in_chans=1)
    assert isinstance(in_memory, InMemoryDataset)
    assert in_memory.images.shape == (12, 1, 8, 8)
    assert torch.equal(in_memory.images, torch.stack([streaming[i][0] for i in range(12)]))
    assert torch.equal(in_memory.labels, streaming.labels)


def test_in_memory_loading_skips_images_that_fail_to_decode(folder: Path, caplog):
    good = (folder / "emu" / "0.png").read_bytes()
    (folder / "emu" / "truncated.png").write_bytes(good[: len(good) // 2])
    with caplog.at_level(logging.WARNING):
        ds = load_image_folder_in_memory(folder, (8, 8))
    assert len(ds) == 12
    assert "failed to decode" in caplog.text
    with pytest.raises(DataError, match=r"truncated\.png"):
        load_image_folder_in_memory(folder, (8, 8), strict=True)


def test_given_class_names_keep_label_numbering_when_a_class_is_missing(folder: Path):
    ds = ImageFolderDataset(folder, (8, 8), class_names=("ant", "cat", "dog", "emu"))
    assert ds.info.num_classes == 4
    assert set(ds.labels.tolist()) == {1, 2, 3}


def test_a_folder_class_not_among_given_names_is_an_error(folder: Path):
    with pytest.raises(DataError, match="not among the expected"):
        ImageFolderDataset(folder, (8, 8), class_names=("cat", "dog"))


def _truncate(path: Path) -> None:
    """Keep the header and cut the body short: Pillow opens it, decoding fails."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])


@pytest.fixture
def jpeg_folder(tmp_path: Path) -> Path:
    root = tmp_path / "jpegs"
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.jpg", quality=90)
    return root


def test_a_truncated_image_does_not_stop_a_streamed_epoch(jpeg_folder: Path, caplog):
    _truncate(jpeg_folder / "cat" / "1.jpg")
    ds = ImageFolderDataset(jpeg_folder, (8, 8))
    assert len(ds) == 8, "the header is valid, so the scan keeps the file"
    loader = make_folder_loader(ds, batch_size=3, shuffle=False, num_workers=1)
    with caplog.at_level(logging.WARNING):
        batches = list(loader)
    images = torch.cat([x for x, _ in batches])
    assert images.shape == (8, 3, 8, 8)
    # The broken sample is replaced by the next one, deterministically (image and label).
    assert torch.equal(ds[1][0], ds[2][0]) and ds[1][1] == ds[2][1]
    assert "skipped a broken image (1 so far" in caplog.text


def test_strict_streaming_fails_with_one_line_naming_the_truncated_file(jpeg_folder: Path):
    _truncate(jpeg_folder / "dog" / "2.jpg")
    with pytest.raises(DataError, match=r"dog/2\.jpg.*strict=True") as caught:
        ImageFolderDataset(jpeg_folder, (8, 8), strict=True)
    assert "\n" not in str(caught.value)


def test_in_memory_loading_skips_a_truncated_jpeg_with_a_count(jpeg_folder: Path, caplog):
    _truncate(jpeg_folder / "dog" / "2.jpg")
    with caplog.at_level(logging.WARNING):
        ds = load_image_folder_in_memory(jpeg_folder, (8, 8), cache=False)
    assert len(ds) == 7 and torch.bincount(ds.labels).tolist() == [4, 3]
    assert "skipped 1 image(s) that failed to decode" in caplog.text


def test_parallel_decoding_equals_serial_decoding_in_order(jpeg_folder: Path):
    _truncate(jpeg_folder / "cat" / "3.jpg")
    paths = sorted(jpeg_folder.rglob("*.jpg"))
    serial, serial_failures = decode_images(paths, (8, 8), workers=1, chunk_size=3)
    parallel, parallel_failures = decode_images(paths, (8, 8), workers=2, chunk_size=3)
    assert serial.shape == (7, 3, 8, 8)
    assert torch.equal(serial, parallel)
    assert [i for i, _ in serial_failures] == [i for i, _ in parallel_failures] == [3]
    assert torch.equal(serial[0], load_image(paths[0], (8, 8)))
