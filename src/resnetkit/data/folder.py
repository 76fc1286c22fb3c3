"""Image folders (root/<class>/<image>) decoded with Pillow, streamed or held in memory."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from resnetkit.data.base import (
    DataError,
    DatasetInfo,
    InMemoryDataset,
    split_dataset,
    split_indices,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFolderDataset",
    "decode_image",
    "load_image",
    "load_image_folder",
    "load_image_folder_in_memory",
    "scan_image_folder",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (
    ".bmp",
    ".gif",
    ".jpeg",
    ".jpg",
    ".pgm",
    ".png",
    ".ppm",
    ".tif",
    ".tiff",
    ".webp",
)

# ImageNet statistics: the usual choice for natural photos (and what pretrained weights
# expect). For one channel, their average, as timm does when adapting to grayscale.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

_MODES = {1: "L", 3: "RGB"}

Sample = tuple[Path, int]


def _mode_for(in_chans: int) -> str:
    if in_chans not in _MODES:
        raise DataError(f"image folders support in_chans 1 (grayscale) or 3 (RGB), not {in_chans}")
    return _MODES[in_chans]


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert to L or RGB, compositing transparent images over white first."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        # 16-bit grayscale (e.g. medical or scientific PNGs): Pillow's convert would clip
        # everything above 255 to white, so keep the high byte instead.
        high = np.asarray(image).astype(np.uint32) >> 8
        image = Image.fromarray(high.clip(0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image if image.mode == mode else image.convert(mode)


def _resize_center_crop(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale so the image covers `size` (H, W), then take the centered window."""
    height, width = size
    if image.size == (width, height):
        return image
    w, h = image.size
    scale = max(height / h, width / w)
    # The crop box in source pixels; one resize call then does scale and crop together.
    crop_w, crop_h = width / scale, height / scale
    left, top = (w - crop_w) / 2, (h - crop_h) / 2
    box = (left, top, left + crop_w, top + crop_h)
    return image.resize((width, height), Image.Resampling.BILINEAR, box=box)


def decode_image(image: Image.Image, image_size: tuple[int, int], in_chans: int) -> torch.Tensor:
    """Turn a Pillow image into a uint8 (C, H, W) tensor of the requested size and channels."""
    image = ImageOps.exif_transpose(image)
    image = _to_mode(image, _mode_for(in_chans))
    image = _resize_center_crop(image, tuple(image_size))
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def load_image(
    path: str | os.PathLike[str], image_size: tuple[int, int], in_chans: int = 3
) -> torch.Tensor:
    """Load one image file as a uint8 (C, H, W) tensor, resized and center-cropped."""
    try:
        with Image.open(path) as image:
            return decode_image(image, image_size, in_chans)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from exc


def scan_image_folder(
    root: str | os.PathLike[str],
    strict: bool = False,
    class_names: Sequence[str] | None = None,
) -> tuple[tuple[str, ...], list[Sample]]:
    """Return (class names, [(path, label)]) for root/<class>/**/<image>.

    Classes are the sorted sub-folder names, or `class_names` when given (so a validation
    folder missing a class keeps the training set's label numbering).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; expected {root}/<class>/<image>")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"image folder {root} has no class sub-folders; expected {root}/<class>/")
    names = tuple(class_names) if class_names is not None else tuple(d.name for d in class_dirs)
    unknown = [d.name for d in class_dirs if d.name not in names]
    if unknown:
        raise DataError(
            f"image folder {root} has classes {unknown} that are not among the expected {names}"
        )
    samples: list[Sample] = []
    skipped: list[str] = []
    for class_dir in class_dirs:
        label = names.index(class_dir.name)
        count = 0
        for path in sorted(class_dir.rglob("*")):
            if path.name.startswith(".") or not path.is_file():
                continue  # hidden files (.DS_Store, editor temp files) are never data
            problem = _check_image_file(path)
            if problem is not None:
                if strict:
                    raise DataError(f"{path}: {problem} (strict=True; remove it or drop strict)")
                skipped.append(f"{path} ({problem})")
                continue
            samples.append((path, label))
            count += 1
        if count == 0:
            raise DataError(
                f"class folder {class_dir} holds no readable images; add some or remove it"
            )
    if skipped:
        logger.warning(
            "skipped %d unreadable or non-image file(s) under %s, e.g. %s",
            len(skipped),
            root,
            skipped[0],
        )
    return names, samples


def _check_image_file(path: Path) -> str | None:
    """Return why `path` is not a usable image, reading only its header, or None."""
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return "not an image extension"
    try:
        with Image.open(path) as image:
            image.size  # noqa: B018 - touching size makes Pillow parse the header
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        return f"corrupt image: {exc}"
    return None


def _folder_info(root: Path, class_names: tuple[str, ...], size, in_chans: int) -> DatasetInfo:
    if in_chans == 1:
        mean, std = (sum(_IMAGENET_MEAN) / 3,), (sum(_IMAGENET_STD) / 3,)
    else:
        mean, std = _IMAGENET_MEAN, _IMAGENET_STD
    return DatasetInfo(
        name=f"folder:{root}",
        class_names=class_names,
        in_chans=in_chans,
        image_size=tuple(size),
        mean=mean,
        std=std,
    )


class ImageFolderDataset(Dataset):
    """Streams root/<class>/<image> files as (uint8 (C, H, W) tensor, label) pairs."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        image_size: tuple[int, int] = (224, 224),
        in_chans: int = 3,
        strict: bool = False,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        _mode_for(in_chans)
        class_names, self.samples = scan_image_folder(self.root, strict, class_names)
        self.info = _folder_info(self.root, class_names, image_size, in_chans)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return load_image(path, self.info.image_size, self.info.in_chans), label

    @property
    def labels(self) -> torch.Tensor:
        """All labels as an int64 tensor, in sample order."""
        return torch.tensor([label for _, label in self.samples], dtype=torch.int64)

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageFolderDataset:
        """Return a dataset over the chosen samples, sharing classes and settings."""
        chosen = copy.copy(self)
        chosen.samples = [self.samples[int(i)] for i in indices]
        return chosen


def load_image_folder(
    root: str | os.PathLike[str],
    image_size: tuple[int, int] = (224, 224),
    in_chans: int = 3,
    val_fraction: float = 0.0,
    seed: int = 0,
    strict: bool = False,
    class_names: Sequence[str] | None = None,
) -> ImageFolderDataset | tuple[ImageFolderDataset, ImageFolderDataset]:
    """Scan an image folder; with val_fraction > 0 return a stratified (train, val) pair."""
    dataset = ImageFolderDataset(root, image_size, in_chans, strict, class_names)
    if val_fraction == 0.0:
        return dataset
    train, val = split_indices(dataset.labels, val_fraction, seed)
    return dataset.subset(train), dataset.subset(val)


def load_image_folder_in_memory(
    root: str | os.PathLike[str],
    image_size: tuple[int, int] = (224, 224),
    in_chans: int = 3,
    val_fraction: float = 0.0,
    seed: int = 0,
    strict: bool = False,
    class_names: Sequence[str] | None = None,
) -> InMemoryDataset | tuple[InMemoryDataset, InMemoryDataset]:
    """Decode a (small) image folder once into an InMemoryDataset, or a (train, val) pair."""
    folder = ImageFolderDataset(root, image_size, in_chans, strict, class_names)
    images, labels, failed = [], [], []
    for path, label in folder.samples:
        try:
            images.append(load_image(path, folder.info.image_size, in_chans))
        except DataError as exc:
            if strict:
                raise
            failed.append(str(exc))
            continue
        labels.append(label)
    if failed:
        logger.warning("skipped %d image(s) that failed to decode, e.g. %s", len(failed), failed[0])
    if not images:
        raise DataError(f"no image under {folder.root} could be decoded")
    dataset = InMemoryDataset(
        torch.stack(images), torch.tensor(labels, dtype=torch.int64), folder.info
    )
    if val_fraction == 0.0:
        return dataset
    return split_dataset(dataset, val_fraction, seed)
