"""Image folders (root/<class>/<image>) decoded with Pillow, streamed or held in memory."""

from __future__ import annotations

import abc
import copy
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from resnetkit.data.base import (
    DataError,
    DatasetInfo,
    InMemoryDataset,
    split_dataset,
    split_indices,
)
from resnetkit.data.cache import cached_dataset, hash_parts
from resnetkit.data.decode import (
    DECODE_ERRORS,
    Source,
    decode_image,
    decode_images,
    load_image,
    mode_for,
    read_image,
    resample_filter,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageFolderDataset",
    "StreamedImages",
    "decode_image",
    "folder_class_names",
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

Sample = tuple[Path, int]


def is_image_name(name: str) -> bool:
    """Whether a file name has an image extension and is not hidden."""
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


def folder_class_names(root: str | os.PathLike[str]) -> tuple[str, ...]:
    """The class names of root/<class>/: its sorted, non-hidden sub-folder names."""
    return tuple(d.name for d in _class_dirs(Path(root)))


def _class_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; expected {root}/<class>/<image>")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"image folder {root} has no class sub-folders; expected {root}/<class>/")
    return class_dirs


def resolve_class_names(
    found: Sequence[str], class_names: Sequence[str] | None, where: object
) -> tuple[str, ...]:
    """`class_names` if given (checking `found` are all among them), else `found`."""
    names = tuple(class_names) if class_names is not None else tuple(found)
    unknown = [name for name in found if name not in names]
    if unknown:
        raise DataError(
            f"image folder {where} has classes {unknown} that are not among the expected {names}"
        )
    return names


def _empty_class_error(where: object) -> DataError:
    return DataError(f"class folder {where} holds no readable images; add some or remove it")


def scan_image_folder(
    root: str | os.PathLike[str],
    strict: bool = False,
    class_names: Sequence[str] | None = None,
    check: bool = True,
) -> tuple[tuple[str, ...], list[Sample]]:
    """Return (class names, [(path, label)]) for root/<class>/**/<image>.

    Classes are the sorted sub-folder names, or `class_names` when given (so a validation
    folder missing a class keeps the training set's label numbering). With `check`, each
    file's header is read and files Pillow cannot open are skipped (counted in the log);
    without it only the extension is checked (decoding finds the rest).
    """
    root = Path(root)
    class_dirs = _class_dirs(root)
    names = resolve_class_names([d.name for d in class_dirs], class_names, root)
    samples: list[Sample] = []
    skipped: list[str] = []
    for class_dir in class_dirs:
        label = names.index(class_dir.name)
        count = 0
        for path in sorted(class_dir.rglob("*")):
            if path.name.startswith(".") or not path.is_file():
                continue  # hidden files (.DS_Store, editor temp files) are never data
            problem = _check_image_file(path, check)
            if problem is not None:
                if strict:
                    raise DataError(f"{path}: {problem} (strict=True; remove it or drop strict)")
                skipped.append(f"{path} ({problem})")
                continue
            samples.append((path, label))
            count += 1
        if count == 0:
            raise _empty_class_error(class_dir)
    if skipped:
        logger.warning(
            "skipped %d unreadable or non-image file(s) under %s, e.g. %s",
            len(skipped),
            root,
            skipped[0],
        )
    return names, samples


def _check_image_file(path: Path, read_header: bool = True) -> str | None:
    """Return why `path` is not a usable image, reading only its header, or None."""
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return "not an image extension"
    if not read_header:
        return None
    try:
        with Image.open(path) as image:
            image.size  # noqa: B018 - touching size makes Pillow parse the header
    except DECODE_ERRORS as exc:
        return f"corrupt image: {exc}"
    return None


def folder_info(name: str, class_names: tuple[str, ...], size, in_chans: int) -> DatasetInfo:
    """DatasetInfo for decoded photos: ImageNet statistics (their average for one channel)."""
    if in_chans == 1:
        mean, std = (sum(_IMAGENET_MEAN) / 3,), (sum(_IMAGENET_STD) / 3,)
    else:
        mean, std = _IMAGENET_MEAN, _IMAGENET_STD
    return DatasetInfo(
        name=name,
        class_names=class_names,
        in_chans=in_chans,
        image_size=tuple(size),
        mean=mean,
        std=std,
    )


class StreamedImages(Dataset, abc.ABC):
    """(uint8 (C, H, W) tensor, label) pairs decoded on access from `samples`.

    A file whose header was fine but whose body is broken (truncated, say) does not stop
    training: it is logged with a count and replaced by the next sample that decodes, so the
    substitute depends only on the data (runs stay reproducible and resumable). With
    `strict`, every file is fully decoded once up front instead and the first broken one
    raises a DataError naming it.
    """

    samples: list[tuple[Any, int]]
    info: DatasetInfo
    strict: bool
    # How each image becomes info.image_size: see decode.resize_center_crop. Training decodes
    # whole images (1.0); evaluating published weights may resize larger and crop the centre.
    crop_pct: float = 1.0
    interpolation: str = "bilinear"

    @abc.abstractmethod
    def _source(self, index: int) -> Source:
        """The path or bytes of sample `index` (each kind of source says where images live)."""

    def _name(self, index: int) -> str:
        return str(self.samples[index][0])

    def _read(self, index: int) -> torch.Tensor:
        info = self.info
        return read_image(
            self._source(index),
            info.image_size,
            info.in_chans,
            self._name(index),
            self.crop_pct,
            self.interpolation,
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        try:
            return self._read(index), self.samples[index][1]
        except DataError as exc:
            if self.strict:
                raise
            return self._substitute(index, exc)

    def _substitute(self, index: int, exc: DataError) -> tuple[torch.Tensor, int]:
        # Per-process state: each DataLoader worker counts the broken files it met.
        bad = self.__dict__.setdefault("_broken", set())
        if index not in bad:
            bad.add(index)
            logger.warning(
                "skipped a broken image (%d so far in this process), using the next one: %s",
                len(bad),
                exc,
            )
        for step in range(1, len(self.samples)):
            other = (index + step) % len(self.samples)
            if other in bad:
                continue
            try:
                return self._read(other), self.samples[other][1]
            except DataError:
                bad.add(other)
        raise DataError(f"no image in {self.info.name} can be decoded; last error: {exc}")

    def _check_all(self, sources: Iterable[Source], workers: int | None) -> None:
        """Fully decode every sample once (strict mode); raise on the first broken one."""
        size, chans = self.info.image_size, self.info.in_chans
        _, failures = decode_images(sources, size, chans, workers, total=len(self), keep=False)
        if failures:
            index, message = failures[0]
            raise DataError(
                f"cannot decode image {self._name(index)}: {message} "
                f"({len(failures)} broken file(s); strict=True: remove them or drop strict)"
            )

    @property
    def labels(self) -> torch.Tensor:
        """All labels as an int64 tensor, in sample order."""
        return torch.tensor([sample[1] for sample in self.samples], dtype=torch.int64)

    def with_resize(self, crop_pct: float, interpolation: str) -> StreamedImages:
        """The same images resized to image_size / crop_pct with `interpolation`, then
        centre-cropped to image_size (an evaluation transform such as timm's)."""
        resample_filter(crop_pct, interpolation)  # refuse bad settings here, not per image
        resized = copy.copy(self)
        resized.crop_pct, resized.interpolation = crop_pct, interpolation
        resized.__dict__.pop("_broken", None)
        return resized

    def subset(self, indices: torch.Tensor | Sequence[int]) -> StreamedImages:
        """Return a dataset over the chosen samples, sharing classes and settings."""
        chosen = copy.copy(self)
        chosen.samples = [self.samples[int(i)] for i in indices]
        chosen.__dict__.pop("_broken", None)
        return chosen


class ImageFolderDataset(StreamedImages):
    """Streams root/<class>/<image> files as (uint8 (C, H, W) tensor, label) pairs."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        image_size: tuple[int, int] = (224, 224),
        in_chans: int = 3,
        strict: bool = False,
        class_names: Sequence[str] | None = None,
        workers: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.strict = strict
        mode_for(in_chans)
        class_names, self.samples = scan_image_folder(self.root, strict, class_names)
        self.info = folder_info(f"folder:{self.root}", class_names, image_size, in_chans)
        if strict:
            self._check_all([path for path, _ in self.samples], workers)

    def _source(self, index: int) -> Source:
        return self.samples[index][0]


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


def decode_samples(
    sources: Iterable[Source],
    labels: Sequence[int],
    names: Sequence[str],
    info: DatasetInfo,
    strict: bool = False,
    workers: int | None = None,
) -> tuple[InMemoryDataset, int]:
    """Decode `sources` (labelled `labels`) into an InMemoryDataset; return it and how many
    were skipped because they failed to decode (strict: the first such file raises)."""
    size, chans = info.image_size, info.in_chans
    images, failures = decode_images(sources, size, chans, workers, total=len(labels))
    if failures:
        index, message = failures[0]
        if strict:
            raise DataError(
                f"cannot decode image {names[index]}: {message} "
                f"({len(failures)} broken file(s); strict=True: remove them or drop strict)"
            )
        logger.warning(
            "skipped %d image(s) that failed to decode, e.g. %s: %s",
            len(failures),
            names[index],
            message,
        )
        broken = {i for i, _ in failures}
        kept = [label for i, label in enumerate(labels) if i not in broken]
        lost = sorted(set(labels) - set(kept))
        if lost:
            raise _empty_class_error(f"{info.class_names[lost[0]]!r} in {info.name}")
        labels = kept
    if not labels:
        raise DataError(f"no image in {info.name} could be decoded")
    return InMemoryDataset(images, torch.tensor(labels, dtype=torch.int64), info), len(failures)


def load_image_folder_in_memory(
    root: str | os.PathLike[str],
    image_size: tuple[int, int] = (224, 224),
    in_chans: int = 3,
    val_fraction: float = 0.0,
    seed: int = 0,
    strict: bool = False,
    class_names: Sequence[str] | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
) -> InMemoryDataset | tuple[InMemoryDataset, InMemoryDataset]:
    """Decode an image folder into an InMemoryDataset, or a (train, val) pair.

    Decoding runs in `workers` processes (default: every core). The result is cached in
    `cache_dir` (default: `$RESNETKIT_CACHE/datasets/decoded`, else
    `~/.cache/resnetkit/datasets/decoded`), keyed by every image's relative path, size and
    modification time plus the image size and channels; a later call with unchanged files
    reads the cache instead of decoding. cache=False neither reads nor writes it. Files that
    fail to decode are skipped with a count in the log (strict=True: the first one raises).
    """
    root = Path(root)
    mode_for(in_chans)
    size = tuple(image_size)
    names, samples = scan_image_folder(root, strict, class_names, check=False)
    info = folder_info(f"folder:{root}", names, size, in_chans)
    stats = [(path.relative_to(root).as_posix(), path.stat()) for path, _ in samples]
    key = hash_parts(
        [
            "folder",
            size,
            in_chans,
            names,
            *((rel, st.st_size, st.st_mtime_ns) for rel, st in stats),
            *(label for _, label in samples),
        ]
    )
    identity = f"{root.resolve()}|{size}|{in_chans}"

    def build() -> tuple[InMemoryDataset, int]:
        paths = [path for path, _ in samples]
        labels = [label for _, label in samples]
        return decode_samples(paths, labels, [str(p) for p in paths], info, strict, workers)

    dataset = cached_dataset(identity, key, lambda _: info, build, cache, cache_dir, strict)
    if val_fraction == 0.0:
        return dataset
    return split_dataset(dataset, val_fraction, seed)
