"""Pillow images -> uint8 (C, H, W) tensors: one at a time, or many in worker processes."""

from __future__ import annotations

import io
import logging
import math
import multiprocessing
import os
import struct
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from itertools import islice

import numpy as np
import torch
from PIL import Image, ImageOps

from resnetkit.data.base import DataError

__all__ = [
    "DECODE_ERRORS",
    "decode_image",
    "decode_images",
    "default_workers",
    "load_image",
    "read_image",
    "resample_filter",
    "resize_center_crop",
    "resize_side",
]

logger = logging.getLogger(__name__)

# What Pillow raises for files that are not images, are cut short or are otherwise broken
# (UnidentifiedImageError is an OSError; some plugins raise SyntaxError or struct.error).
DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
)

_MODES = {1: "L", 3: "RGB"}
_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}

# An image source: a file path, or the encoded bytes of one (e.g. a tar member).
Source = str | os.PathLike[str] | bytes


def mode_for(in_chans: int) -> str:
    """The Pillow mode for `in_chans` channels: L or RGB."""
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


def resize_side(size: int, crop_pct: float) -> int:
    """The side an image is resized to before a centre crop of `size` (224 at 0.875 -> 256)."""
    # The epsilon absorbs float round-off: 224 / (224 / 232) is 231.99999999999997, not 232.
    return math.floor(size / crop_pct + 1e-6)


def resize_center_crop(
    image: Image.Image,
    size: tuple[int, int],
    crop_pct: float = 1.0,
    interpolation: str = "bilinear",
) -> Image.Image:
    """Scale `image`, keeping its aspect ratio, to cover `size` (H, W) / `crop_pct`, then take
    the centred `size` window.

    At crop_pct 1 (how resnetkit trains and evaluates) one resample covers exactly the centred
    region, with sub-pixel centring. Below 1 it is torchvision's `Resize(shorter side)` then
    `CenterCrop` in whole pixels, so published ImageNet accuracies are reproduced exactly.
    """
    resample = resample_filter(crop_pct, interpolation)
    if crop_pct == 1.0:
        return _cover_and_crop(image, size, resample)
    return _resize_then_crop(image, size, crop_pct, resample)


def resample_filter(crop_pct: float, interpolation: str) -> int:
    """Pillow's filter for `interpolation`; DataError for a crop_pct or name that cannot be."""
    if not 0 < crop_pct <= 1:
        raise DataError(f"invalid crop_pct {crop_pct!r}: expected 0 < crop_pct <= 1")
    if interpolation not in _FILTERS:
        raise DataError(f"unknown interpolation {interpolation!r}; allowed: {', '.join(_FILTERS)}")
    return _FILTERS[interpolation]


def _cover_and_crop(image: Image.Image, size: tuple[int, int], resample: int) -> Image.Image:
    """Resample exactly the centred region that covers `size` into it, in one call."""
    height, width = size
    if image.size == (width, height):
        return image
    w, h = image.size
    scale = max(height / h, width / w)
    # The crop box in source pixels; one resize call then does scale and crop together.
    crop_w, crop_h = width / scale, height / scale
    left, top = (w - crop_w) / 2, (h - crop_h) / 2
    box = (left, top, left + crop_w, top + crop_h)
    return image.resize((width, height), resample, box=box)


def _resize_then_crop(
    image: Image.Image, size: tuple[int, int], crop_pct: float, resample: int
) -> Image.Image:
    """Resize to cover size / crop_pct, then crop the centre in whole pixels (torchvision)."""
    height, width = size
    wanted_h, wanted_w = resize_side(height, crop_pct), resize_side(width, crop_pct)
    w, h = image.size
    # torchvision's rounding: the binding side gets its size exactly, the other int(side * s).
    if wanted_h / h >= wanted_w / w:
        new_h, new_w = wanted_h, max(wanted_w, int(wanted_h * w / h))
    else:
        new_h, new_w = max(wanted_h, int(wanted_w * h / w)), wanted_w
    resized = image.resize((new_w, new_h), resample)
    top, left = round((new_h - height) / 2), round((new_w - width) / 2)
    return resized.crop((left, top, left + width, top + height))


def _decode_array(
    image: Image.Image,
    image_size: tuple[int, int],
    in_chans: int,
    crop_pct: float = 1.0,
    interpolation: str = "bilinear",
) -> np.ndarray:
    # Numpy only: this runs in forked workers, which must not touch torch's thread pools.
    image.load()  # decode the whole body now, so a truncated file fails here, not later
    image = ImageOps.exif_transpose(image)
    image = _to_mode(image, mode_for(in_chans))
    image = resize_center_crop(image, tuple(image_size), crop_pct, interpolation)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return array.transpose(2, 0, 1).copy()  # a writable, contiguous (C, H, W) array


def _read_array(
    source: Source,
    image_size: tuple[int, int],
    in_chans: int,
    crop_pct: float = 1.0,
    interpolation: str = "bilinear",
) -> np.ndarray:
    opened = io.BytesIO(source) if isinstance(source, bytes) else source
    with Image.open(opened) as image:
        return _decode_array(image, image_size, in_chans, crop_pct, interpolation)


def decode_image(
    image: Image.Image,
    image_size: tuple[int, int],
    in_chans: int,
    crop_pct: float = 1.0,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """Turn a Pillow image into a uint8 (C, H, W) tensor of the requested size and channels
    (see `resize_center_crop` for `crop_pct` and `interpolation`)."""
    return torch.from_numpy(_decode_array(image, image_size, in_chans, crop_pct, interpolation))


def read_image(
    source: Source,
    image_size: tuple[int, int],
    in_chans: int = 3,
    name: str | None = None,
    crop_pct: float = 1.0,
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """Decode a file path or encoded bytes into a uint8 (C, H, W) tensor; DataError if broken."""
    resample_filter(crop_pct, interpolation)  # a bad setting is the caller's error, not the file's
    try:
        array = _read_array(source, image_size, in_chans, crop_pct, interpolation)
    except DECODE_ERRORS as exc:
        where = name if name is not None else source if not isinstance(source, bytes) else "bytes"
        raise DataError(f"cannot decode image {where}: {exc}") from exc
    return torch.from_numpy(array)


def load_image(
    path: str | os.PathLike[str], image_size: tuple[int, int], in_chans: int = 3
) -> torch.Tensor:
    """Load one image file as a uint8 (C, H, W) tensor, resized and center-cropped."""
    return read_image(path, image_size, in_chans)


def default_workers() -> int:
    """The CPU cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def _decode_chunk(
    sources: list[Source], image_size: tuple[int, int], in_chans: int, keep: bool = True
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Decode a chunk; return (the good images stacked, [(index in chunk, error)])."""
    arrays, failures = [], []
    for i, source in enumerate(sources):
        try:
            array = _read_array(source, image_size, in_chans)
        except DECODE_ERRORS as exc:
            failures.append((i, str(exc) or type(exc).__name__))
            continue
        if keep:
            arrays.append(array)
    if arrays:
        return np.stack(arrays), failures
    return np.empty((0, in_chans, *image_size), dtype=np.uint8), failures


def _chunks(sources: Iterable[Source], size: int) -> Iterator[list[Source]]:
    iterator = iter(sources)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts a worker in milliseconds, where spawn/forkserver re-import torch (~1-2 s each);
    # the workers run Pillow and numpy only, never torch, so forking is safe on Linux.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def decode_images(
    sources: Iterable[Source],
    image_size: tuple[int, int],
    in_chans: int = 3,
    workers: int | None = None,
    chunk_size: int = 512,
    total: int | None = None,
    keep: bool = True,
) -> tuple[torch.Tensor, list[tuple[int, str]]]:
    """Decode many images into one uint8 (N, C, H, W) tensor, in source order.

    Returns (images of the sources that decoded, [(source index, error)] for those that did
    not). `workers` processes (default: every core) each decode chunks of `chunk_size`; one
    worker, or fewer than two chunks' worth of sources (`total`, else len(sources)), decodes
    here. `sources` is consumed lazily, so a reader (e.g. of a tar stream) overlaps decoding.
    With keep=False only the failures are returned (a full check that holds no pixels).
    """
    mode_for(in_chans)
    image_size = tuple(image_size)
    workers = default_workers() if workers is None else workers
    if total is None and isinstance(sources, Sequence):
        total = len(sources)
    chunks = _chunks(sources, chunk_size)
    if workers <= 1 or (total is not None and total < 2 * chunk_size):
        results = [_decode_chunk(chunk, image_size, in_chans, keep) for chunk in chunks]
    else:
        with ProcessPoolExecutor(workers, mp_context=_pool_context()) as pool:
            futures = [pool.submit(_decode_chunk, c, image_size, in_chans, keep) for c in chunks]
            results = [future.result() for future in futures]
    failures = [
        (k * chunk_size + i, message)
        for k, (_, chunk_failures) in enumerate(results)
        for i, message in chunk_failures
    ]
    parts = [images for images, _ in results if len(images)]
    if not parts:
        return torch.empty((0, in_chans, *image_size), dtype=torch.uint8), failures
    return torch.from_numpy(np.concatenate(parts)), failures
