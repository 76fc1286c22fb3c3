"""Decoded image sets cached on disk as safetensors, keyed by what they were decoded from.

A cache file holds `images` (uint8 N, C, H, W) and `labels` (int64 N) plus metadata: the
content key (a hash of the source files and the decoding parameters), the class names and how
many files were skipped. One file per (source, parameters), so a changed source replaces its
stale cache instead of piling up new ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from resnetkit.core.fileio import atomic_path, atomic_write_text, slug
from resnetkit.data.base import DatasetInfo, InMemoryDataset, default_cache_dir

__all__ = [
    "CACHE_FORMAT",
    "cached_dataset",
    "cached_json",
    "decoded_cache_dir",
    "hash_parts",
]

logger = logging.getLogger(__name__)

# Bump when the decoding itself changes (resampling, colour conversion), so old caches rebuild.
CACHE_FORMAT = "1"

MakeInfo = Callable[[tuple[str, ...]], DatasetInfo]


def decoded_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """`cache_dir` if given, else the dataset cache's `decoded/` folder."""
    return Path(cache_dir) if cache_dir is not None else default_cache_dir() / "decoded"


def hash_parts(parts: Iterable[object]) -> str:
    """A sha256 over the reprs of `parts`, one per line."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode("utf-8", "surrogateescape"))
        digest.update(b"\n")
    return digest.hexdigest()


def _cache_path(identity: str, folder: Path) -> Path:
    stem = slug(identity.rstrip("/").rsplit("/", 1)[-1])[-60:]
    return folder / f"{stem or 'data'}-{hash_parts([identity])[:16]}.safetensors"


def _read(path: Path, key: str, make_info: MakeInfo, strict: bool) -> InMemoryDataset | None:
    """The cached dataset at `path` if it was made for `key`; None if stale."""
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
        if meta.get("key") != key or meta.get("format") != CACHE_FORMAT:
            logger.info("decoded cache %s is stale; rebuilding it", path)
            return None
        if strict and meta.get("skipped", "0") != "0":
            return None  # decode again, so that strict mode can name the broken file
        info = make_info(tuple(json.loads(meta["class_names"])))
        images, labels = f.get_tensor("images"), f.get_tensor("labels")
    skipped = int(meta.get("skipped", "0"))
    if skipped:
        logger.warning(
            "%s: %d unreadable image(s) were skipped when this cache was built", info.name, skipped
        )
    return InMemoryDataset(images, labels, info)


def cached_dataset(
    identity: str,
    key: str,
    make_info: MakeInfo,
    build: Callable[[], tuple[InMemoryDataset, int]],
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    strict: bool = False,
) -> InMemoryDataset:
    """Return the dataset cached for (`identity`, `key`), else `build()` it and cache it.

    `identity` names the source and parameters (which file to use), `key` hashes its
    content (and must cover the class names); `make_info` turns the cached class names into
    the DatasetInfo; `build` returns (dataset, number of skipped files). A cache file that cannot be
    read is logged and rebuilt; with cache=False nothing is read or written. With `strict`, a
    cache built while skipping broken files is not used (the rebuild raises).
    """
    if not cache:
        return build()[0]
    path = _cache_path(identity, decoded_cache_dir(cache_dir))
    if path.is_file():
        try:
            dataset = _read(path, key, make_info, strict)
        except (OSError, ValueError, KeyError, SafetensorError) as exc:
            logger.warning("decoded cache %s is unreadable (%s); rebuilding it", path, exc)
            dataset = None
        if dataset is not None:
            logger.info("%d images from the decoded cache %s", len(dataset), path)
            return dataset
    dataset, skipped = build()
    info = dataset.info
    metadata = {
        "format": CACHE_FORMAT,
        "key": key,
        "source": identity,
        "class_names": json.dumps(list(info.class_names)),
        "skipped": str(skipped),
    }
    try:
        with atomic_path(path) as tmp:
            save_file({"images": dataset.images, "labels": dataset.labels}, tmp, metadata)
    except OSError as exc:  # a read-only or full cache folder costs speed, not the run
        logger.warning("could not write the decoded cache %s: %s", path, exc)
    else:
        logger.info("cached %d decoded images in %s", len(dataset), path)
    return dataset


def cached_json(
    identity: str,
    key: str,
    build: Callable[[], Any],
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """Like cached_dataset, for a small JSON-able value (e.g. an archive's folder layout)."""
    if not cache:
        return build()
    path = _cache_path(identity, decoded_cache_dir(cache_dir)).with_suffix(".json")
    try:
        stored = json.loads(path.read_text("utf-8"))
        if stored.get("format") == CACHE_FORMAT and stored.get("key") == key:
            return stored["value"]
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        logger.warning("cache file %s is unreadable (%s); rebuilding it", path, exc)
    value = build()
    try:
        atomic_write_text(path, json.dumps({"format": CACHE_FORMAT, "key": key, "value": value}))
    except OSError as exc:
        logger.warning("could not write the cache file %s: %s", path, exc)
    return value
