"""Checksummed, atomic downloads and tar extraction that cannot write outside its target."""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from resnetkit.core.fileio import file_digest
from resnetkit.data.base import DataError

__all__ = [
    "check_tar_member",
    "download_file",
    "file_digest",
    "normalized_member_name",
    "safe_extract_tar",
]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None = None,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download `url` to `dest` via a temp file in the same folder; verify, then os.replace."""
    if not url.startswith(("http://", "https://")):
        raise DataError(f"refusing to download {url!r}: only http:// and https:// are supported")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # usedforsecurity=False: md5 is an integrity check here, and FIPS builds would refuse it.
    hashes = {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                received, expected_size = _stream(url, out, hashes, progress, timeout)
            except (urllib.error.URLError, OSError) as exc:
                if isinstance(exc, urllib.error.HTTPError):
                    reason = f"HTTP {exc.code} {exc.reason}"
                else:
                    reason = str(getattr(exc, "reason", exc))
                raise DataError(
                    f"could not download {url}: {reason}; check the network, "
                    f"or fetch the file yourself and place it at {dest}"
                ) from exc
            out.flush()
            os.fsync(out.fileno())
        if expected_size is not None and received != expected_size:
            raise DataError(
                f"download of {url} was cut short: got {received} of {expected_size} bytes; retry"
            )
        for name, expected in (("sha256", sha256), ("md5", md5)):
            actual = hashes[name].hexdigest()
            if expected is not None and actual != expected.lower():
                raise DataError(
                    f"checksum mismatch for {url}: expected {name} {expected}, got {actual}; "
                    "the download is corrupt or the file changed upstream"
                )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("downloaded %s -> %s (%d bytes)", url, dest, received)
    return dest


def _stream(
    url: str, out: BinaryIO, hashes: dict[str, Any], progress: bool, timeout: float
) -> tuple[int, int | None]:
    """Copy the response body to `out`, updating hashes; return (bytes, Content-Length)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        received, next_report = 0, 0.1
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            for h in hashes.values():
                h.update(chunk)
            received += len(chunk)
            if progress and total and received / total >= next_report:
                logger.info("%s: %3.0f%% of %d bytes", url, 100 * received / total, total)
                next_report += 0.1
    return received, total


def safe_extract_tar(archive: str | os.PathLike[str], target_dir: str | os.PathLike[str]) -> Path:
    """Extract a tar archive into `target_dir`, refusing any member that could land outside it.

    Every member is checked before anything is written: absolute paths, `..` escapes, paths
    through a symlink in the archive, links pointing outside, and device files or FIFOs raise
    DataError. On Pythons that have it, tarfile's own "data" filter is applied as well.
    """
    target = Path(target_dir)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            symlinks = {normalized_member_name(m.name) for m in members if m.issym()}
            for member in members:
                check_tar_member(member, root, symlinks, archive)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root, members=members, filter="data")
            else:  # pragma: no cover - Pythons before 3.11.4 lack extraction filters
                tar.extractall(root, members=members)
    except tarfile.TarError as exc:
        raise DataError(f"cannot read tar archive {archive}: {exc}; delete it and retry") from exc
    return target


def normalized_member_name(name: str) -> str:
    """A member name with backslashes as slashes and `.`/`..` folded (posix normpath)."""
    return posixpath.normpath(name.replace("\\", "/"))


def check_tar_member(
    member: tarfile.TarInfo,
    root: Path,
    symlinks: set[str],
    archive: str | os.PathLike[str],
    on_disk: bool = True,
    action: str = "extract",
) -> None:
    """Raise DataError if `member` could reach outside `root`: an absolute path, a `..`
    escape, a path through a symlink of the archive, a link pointing outside, a device file
    or FIFO. on_disk=False checks names only (for reading members without extracting)."""
    name = member.name
    where = f"tar archive {archive}: member {name!r}"
    refuse = f"refusing to {action}"
    if PurePosixPath(name).is_absolute() or Path(name).is_absolute() or Path(name).drive:
        raise DataError(f"{where} has an absolute path; {refuse}")
    _check_inside(root, root / name, where, on_disk, refuse)
    _check_no_symlink_parent(name, symlinks, where, refuse)
    if member.ischr() or member.isblk() or member.isfifo():
        raise DataError(f"{where} is a device file or FIFO; {refuse}")
    if member.issym() or member.islnk():
        link = member.linkname
        if PurePosixPath(link).is_absolute() or Path(link).is_absolute():
            raise DataError(f"{where} links to absolute path {link!r}; {refuse}")
        # Symlinks resolve against their own folder, hard links against the archive root.
        base = (root / name).parent if member.issym() else root
        _check_inside(root, base / link, f"{where} (link to {link!r})", on_disk, refuse)
        _check_no_symlink_parent(
            str(PurePosixPath(name).parent / link) if member.issym() else link,
            symlinks,
            where,
            refuse,
        )


def _check_inside(root: Path, path: Path, where: str, on_disk: bool, refuse: str) -> None:
    # Lexical check first (the archive's own links do not exist yet), then the real path,
    # which catches symlinks already present inside the target folder.
    lexical = os.path.normpath(path)
    candidates = (lexical, os.path.realpath(path)) if on_disk else (lexical,)
    inside = str(root).rstrip(os.sep) + os.sep  # root is absolute and normalized
    for candidate in candidates:
        if candidate != str(root) and not candidate.startswith(inside):
            raise DataError(f"{where} leads outside the archive root; {refuse}")


def _check_no_symlink_parent(name: str, symlinks: set[str], where: str, refuse: str) -> None:
    # A path that walks through a symlink from the same archive could escape once the link
    # exists on disk, even though it looks harmless on paper.
    if not symlinks:
        return
    parts = PurePosixPath(name.replace("\\", "/")).parts
    for i in range(1, len(parts)):
        if normalized_member_name("/".join(parts[:i])) in symlinks:
            raise DataError(f"{where} goes through a symlink in the archive; {refuse}")
