"""Crash-safe file writing: write a temporary file, fsync it, then atomically rename; verified
files, whose SHA-256 is kept beside them in a `<name>.sha256` sidecar; and safe file names.

Verified files are the training states of a run (`checkpoint.save_state`) and the converted
weights in the download cache (`pretrained`). The sidecar holds the hex digest and a newline,
the format both have always used, so run folders and caches written before keep verifying.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

SIDECAR_SUFFIX = ".sha256"
_CHUNK = 1 << 20
_UNSAFE_IN_NAMES = re.compile(r"[^A-Za-z0-9_.-]+")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    A crash or exception before the rename leaves the old file (if any) untouched and no
    partial file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600), and some writers recreate it; give the final
        # file the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_current_umask())
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _fsync_dir(directory: Path) -> None:
    # The rename itself is durable only once the directory entry is flushed (POSIX).
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- verified files: hash, sidecar, atomic rename --------------------------------------------------


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """The hex digest of a file, read in 1 MiB chunks: the one file hasher of the package."""
    # usedforsecurity=False: md5 (dataset archives) is an integrity check here, and FIPS
    # builds would refuse it otherwise.
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file."""
    return file_digest(path, "sha256")


def sidecar_path(path: str | Path) -> Path:
    """Where the checksum of `path` is kept: `<name>.sha256` beside it."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


@contextlib.contextmanager
def verified_path(path: str | Path) -> Iterator[Path]:
    """As `atomic_path`, and the finished temporary file's SHA-256 is written to the sidecar
    before the rename: a file under its final name always has its checksum beside it (a crash
    in between leaves a sidecar that vouches for nothing, which readers ignore)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        yield tmp
        atomic_write_text(sidecar_path(path), sha256_file(tmp) + "\n")


def verify_file(path: str | Path, require_sidecar: bool = True) -> str | None:
    """None if `path` matches the digest in its sidecar, else why not, for a message: the
    sidecar is missing (accepted when not `require_sidecar`), or the digests differ."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return "its checksum file is missing" if require_sidecar else None
    text = sidecar.read_text().split()
    recorded = text[0].lower() if text else ""  # "<hex>" or sha256sum's "<hex>  <name>"
    actual = sha256_file(path)
    if actual != recorded:
        return f"sha256 {actual[:12]}... does not match the recorded {recorded[:12] or '(none)'}..."
    return None


def remove_verified(path: str | Path) -> None:
    """Delete a verified file and its sidecar (either may already be gone)."""
    Path(path).unlink(missing_ok=True)
    sidecar_path(path).unlink(missing_ok=True)


# -- names -----------------------------------------------------------------------------------------


def slug(text: str) -> str:
    """`text` made safe inside a file or folder name: each run of characters other than
    ASCII letters, digits, '_', '.' and '-' becomes one '_'. The one rule for run,
    experiment, report and picture names."""
    return _UNSAFE_IN_NAMES.sub("_", text)


def data_slug(data: str) -> str:
    """The dataset's part of a default run or experiment name: `fashion-mnist`, or the
    folder's own name for `folder:PATH`."""
    return slug(Path(data.removeprefix("folder:")).name)
