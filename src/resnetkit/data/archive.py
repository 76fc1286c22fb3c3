"""Image folders packed in a .tar, .tar.gz or .tgz, read straight from the archive.

The archive holds what an image folder holds (<class>/<image>, or train/ and test/ of those),
optionally inside one top-level folder (`cifar10/train/...`). Members are never extracted:
every member is checked with the rules used to extract the CIFAR tarballs (no absolute paths,
no `..`, no links leaving the archive, no devices) and only regular files with an image
extension are read.
"""

from __future__ import annotations

import logging
import os
import posixpath
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from resnetkit.data.base import DataError, DatasetInfo, InMemoryDataset
from resnetkit.data.cache import cached_dataset, cached_json, hash_parts
from resnetkit.data.decode import Source, mode_for
from resnetkit.data.download import check_tar_member, file_digest, normalized_member_name
from resnetkit.data.folder import (
    StreamedImages,
    decode_samples,
    folder_info,
    is_image_name,
    resolve_class_names,
)

__all__ = [
    "ARCHIVE_SUFFIXES",
    "ArchiveImageDataset",
    "ImageArchive",
    "archive_digest",
    "archive_layout",
    "is_image_archive",
    "load_image_archive_in_memory",
]

logger = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_SPLIT_NAMES = ("train", "val", "test")
# Members are checked by name only, against a root that is never touched.
_VIRTUAL_ROOT = Path("/archive-root")


def is_image_archive(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a file named like a tar archive (.tar, .tar.gz, .tgz)."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES) and Path(path).is_file()


@dataclass(frozen=True)
class _Member:
    name: str  # normalized path inside the archive
    offset: int  # where the member's bytes start in an uncompressed tar
    size: int


class ImageArchive:
    """The image members of a tar archive, listed (and safety-checked) once.

    Paths given to the methods are folders relative to the archive's data root: the archive
    root, or its single top-level folder when everything lies inside one (and it is not a
    split folder itself).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"image archive {self.path} does not exist")
        self.compressed = not str(self.path).lower().endswith(".tar")
        members = list(self._safe_members())
        self.base = _data_root([m.name for m in members])
        prefix = f"{self.base}/" if self.base else ""
        self.members = [
            _Member(m.name[len(prefix) :], m.offset, m.size)
            for m in members
            if m.name.startswith(prefix)
        ]

    def _safe_members(self) -> Iterator[_Member]:
        try:
            with tarfile.open(self.path, "r:*") as tar:
                infos = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"cannot read tar archive {self.path}: {exc}") from exc
        symlinks = {normalized_member_name(m.name) for m in infos if m.issym()}
        for info in infos:
            check_tar_member(info, _VIRTUAL_ROOT, symlinks, self.path, False, "read it")
            name = normalized_member_name(info.name).removeprefix("./")
            if info.isreg() and is_image_name(name):
                yield _Member(name, info.offset_data, info.size)

    def has_dir(self, folder: str) -> bool:
        """Whether the data root holds `folder`/ with images in it."""
        return any(m.name.startswith(f"{folder}/") for m in self.members)

    def class_names(self, folder: str = "") -> tuple[str, ...]:
        """The sorted <class> folder names under `folder`."""
        names = sorted({rel.split("/", 1)[0] for rel in self._under(folder) if "/" in rel})
        if not names:
            raise DataError(
                f"image archive {self.path} has no class folders under "
                f"{self._where(folder)}; expected <class>/<image> there"
            )
        return tuple(names)

    def samples(
        self, folder: str = "", class_names: Sequence[str] | None = None
    ) -> tuple[tuple[str, ...], list[tuple[_Member, int]]]:
        """(class names, [(member, label)]) for `folder`/<class>/**/<image>, sorted by name."""
        found = self.class_names(folder)
        names = resolve_class_names(found, class_names, f"{self.path}:{self._where(folder)}")
        prefix = f"{folder}/" if folder else ""
        samples = []
        for member in sorted(self.members, key=lambda m: m.name):
            rel = member.name.removeprefix(prefix) if member.name.startswith(prefix) else None
            if rel is None or "/" not in rel:
                continue  # loose files beside the class folders are not data
            samples.append((member, names.index(rel.split("/", 1)[0])))
        return names, samples

    def layout(self) -> dict[str, list[str]]:
        """{folder: class names} for the data root ("") and its train/val/test folders."""
        folders = [f for f in ("", *_SPLIT_NAMES) if f == "" or self.has_dir(f)]
        return {f: list(self.class_names(f)) for f in folders}

    def _under(self, folder: str) -> Iterator[str]:
        prefix = f"{folder}/" if folder else ""
        return (m.name[len(prefix) :] for m in self.members if m.name.startswith(prefix))

    def _where(self, folder: str) -> str:
        return "/".join(p for p in (self.base, folder) if p) + "/"

    def read_all(self, members: Sequence[_Member]) -> Iterator[bytes]:
        """Yield the bytes of `members` (in that order), reading the archive once."""
        if not self.compressed:
            with open(self.path, "rb") as f:
                for member in members:
                    f.seek(member.offset)
                    yield f.read(member.size)
            return
        # A compressed stream only reads forward: collect the wanted members in one pass.
        wanted = {self._full_name(m.name): i for i, m in enumerate(members)}
        blobs: list[bytes | None] = [None] * len(members)
        next_out = 0
        with tarfile.open(self.path, "r:*") as tar:
            for info in tar:
                index = wanted.get(normalized_member_name(info.name).removeprefix("./"))
                if index is None or not info.isreg():
                    continue
                handle = tar.extractfile(info)
                blobs[index] = handle.read() if handle is not None else b""
                while next_out < len(blobs) and blobs[next_out] is not None:
                    yield blobs[next_out]
                    blobs[next_out] = None  # hand each blob on once, keep memory flat
                    next_out += 1
        if next_out != len(members):
            raise DataError(f"tar archive {self.path} changed while it was read; retry")

    def _full_name(self, name: str) -> str:
        return f"{self.base}/{name}" if self.base else name


def archive_digest(path: str | os.PathLike[str]) -> str:
    """The cache key of an archive's content: its size and SHA-256."""
    # Hashing (~1 GB/s) costs far less than decoding, and keys on content rather than a path.
    return f"{Path(path).stat().st_size}-{file_digest(path)}"


def archive_layout(
    path: str | os.PathLike[str],
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, list[str]]:
    """{folder: class names} of an archive's split folders ("" is its data root), cached
    so that a later load can pick its folder without listing the archive again."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image archive {path} does not exist")
    key = hash_parts(["layout", archive_digest(path)])
    build = lambda: ImageArchive(path).layout()  # noqa: E731
    return cached_json(f"{path.resolve()}|layout", key, build, cache, cache_dir)


def _data_root(names: Sequence[str]) -> str:
    """The archive's single top-level folder if every image lies two levels inside it."""
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) != 1:
        return ""
    (top,) = tops
    if top in _SPLIT_NAMES or any(name.count("/") < 2 for name in names):
        return ""
    return top


def _dataset_name(path: Path, folder: str) -> str:
    return f"folder:{posixpath.join(str(path), folder)}".rstrip("/")


class ArchiveImageDataset(StreamedImages):
    """Streams <class>/<image> members of a tar archive as (uint8 (C, H, W), label) pairs.

    An uncompressed .tar is read at each member's offset; a compressed one is read once and
    its (still encoded) image bytes are held in memory, since a gzip stream cannot seek.
    """

    def __init__(
        self,
        archive: ImageArchive | str | os.PathLike[str],
        folder: str = "",
        image_size: tuple[int, int] = (224, 224),
        in_chans: int = 3,
        strict: bool = False,
        class_names: Sequence[str] | None = None,
        workers: int | None = None,
    ) -> None:
        self.archive = archive if isinstance(archive, ImageArchive) else ImageArchive(archive)
        self.strict = strict
        mode_for(in_chans)
        names, members = self.archive.samples(folder, class_names)
        self.info = folder_info(
            _dataset_name(self.archive.path, folder), names, image_size, in_chans
        )
        if self.archive.compressed:
            blobs = self.archive.read_all([m for m, _ in members])
            pairs = zip(blobs, members, strict=True)
            self.samples = [(blob, label, m.name) for blob, (m, label) in pairs]
        else:
            self.samples = [(m, label, m.name) for m, label in members]
        self._handle: tuple[int, object] | None = None
        if strict:
            self._check_all([self._source(i) for i in range(len(self))], workers)

    def _name(self, index: int) -> str:
        return f"{self.archive.path}:{self.samples[index][2]}"

    def _source(self, index: int) -> Source:
        data = self.samples[index][0]
        if isinstance(data, bytes):
            return data
        # One file handle per process: DataLoader workers fork with the dataset.
        if self._handle is None or self._handle[0] != os.getpid():
            self._handle = (os.getpid(), open(self.archive.path, "rb"))  # noqa: SIM115
        f = self._handle[1]
        f.seek(data.offset)
        return f.read(data.size)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handle"] = None  # spawned workers open their own
        return state


def load_image_archive_in_memory(
    archive: str | os.PathLike[str],
    folder: str = "",
    image_size: tuple[int, int] = (224, 224),
    in_chans: int = 3,
    strict: bool = False,
    class_names: Sequence[str] | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
) -> InMemoryDataset:
    """Decode `folder`/<class>/<image> of a tar archive into an InMemoryDataset.

    `folder` is relative to the archive's data root ("" for the root itself, or "train",
    "test"). Decoding runs in `workers` processes (default: every core) while the archive is
    read. The result is cached like load_image_folder_in_memory's, keyed by the archive's
    SHA-256 plus the folder, classes, image size and channels, so a cache hit reads neither
    the archive's members nor any image. cache=False neither reads nor writes the cache.
    """
    path = Path(archive)
    mode_for(in_chans)
    size = tuple(image_size)
    if not path.is_file():
        raise DataError(f"image archive {path} does not exist")
    names = tuple(class_names) if class_names is not None else None
    key = hash_parts(["archive", archive_digest(path), folder, names, size, in_chans])
    identity = f"{path.resolve()}|{folder}|{size}|{in_chans}"

    def make_info(names: tuple[str, ...]) -> DatasetInfo:
        return folder_info(_dataset_name(path, folder), names, size, in_chans)

    def build() -> tuple[InMemoryDataset, int]:
        reader = ImageArchive(path)
        names, samples = reader.samples(folder, class_names)
        members = [m for m, _ in samples]
        return decode_samples(
            reader.read_all(members),
            [label for _, label in samples],
            [f"{path}:{m.name}" for m in members],
            make_info(names),
            strict,
            workers,
        )

    return cached_dataset(identity, key, make_info, build, cache, cache_dir, strict)
