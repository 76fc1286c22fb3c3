import hashlib
import logging
import socket
import tarfile
from pathlib import Path

import pytest

from data_fixtures import add_tar_member, serve_directory
from resnetkit.data import DataError, download_file, safe_extract_tar


@pytest.fixture
def served(tmp_path: Path) -> Path:
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "blob.bin").write_bytes(bytes(range(256)) * 4000)  # ~1 MB, several chunks
    return folder


def test_download_file_writes_the_file_when_the_checksum_matches(
    tmp_path: Path, served: Path, caplog
):
    data = (served / "blob.bin").read_bytes()
    dest = tmp_path / "out" / "blob.bin"
    with serve_directory(served) as url, caplog.at_level(logging.INFO, "resnetkit.data"):
        result = download_file(
            url + "blob.bin",
            dest,
            sha256=hashlib.sha256(data).hexdigest(),
            md5=hashlib.md5(data).hexdigest(),
            progress=True,
        )
    assert result == dest and dest.read_bytes() == data
    assert list(dest.parent.iterdir()) == [dest]
    assert "100% of 1024000 bytes" in caplog.text


def test_checksum_mismatch_names_url_and_hashes_and_leaves_no_file(tmp_path: Path, served: Path):
    actual = hashlib.sha256((served / "blob.bin").read_bytes()).hexdigest()
    dest = tmp_path / "out" / "blob.bin"
    with serve_directory(served) as url, pytest.raises(DataError) as info:
        download_file(url + "blob.bin", dest, sha256="ab" * 32, progress=False)
    message = str(info.value)
    assert url + "blob.bin" in message and "ab" * 32 in message and actual in message
    assert list(dest.parent.iterdir()) == [], "neither the file nor a temp file may remain"


def test_a_failed_download_keeps_the_previous_file(tmp_path: Path, served: Path):
    dest = tmp_path / "blob.bin"
    dest.write_bytes(b"old")
    with serve_directory(served) as url, pytest.raises(DataError):
        download_file(url + "blob.bin", dest, md5="0" * 32, progress=False)
    assert dest.read_bytes() == b"old"


def test_a_missing_remote_file_raises_data_error(tmp_path: Path, served: Path):
    with serve_directory(served) as url, pytest.raises(DataError, match="HTTP 404"):
        download_file(url + "missing.bin", tmp_path / "x", progress=False)
    assert list(tmp_path.iterdir()) == [served]


def test_an_unreachable_server_raises_data_error(tmp_path: Path):
    with socket.socket() as sock:  # grab a free port, then close it so nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DataError, match="could not download"):
        download_file(f"http://127.0.0.1:{port}/x", tmp_path / "x", progress=False, timeout=5)


def test_download_file_refuses_non_http_urls(tmp_path: Path):
    with pytest.raises(DataError, match="only http"):
        download_file("file:///etc/passwd", tmp_path / "x")


def _tar(path: Path, *members: tuple) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, attributes in members:
            add_tar_member(tar, name, **attributes)
    return path


def test_safe_extract_tar_extracts_regular_files_and_inner_links(tmp_path: Path):
    archive = _tar(
        tmp_path / "ok.tar",
        ("data/a.txt", {"data": b"hello"}),
        ("data/link", {"type": tarfile.SYMTYPE, "linkname": "a.txt"}),
    )
    target = tmp_path / "target"
    safe_extract_tar(archive, target)
    assert (target / "data" / "a.txt").read_bytes() == b"hello"
    assert (target / "data" / "link").read_bytes() == b"hello"


MALICIOUS = {
    "absolute path": [("/tmp/resnetkit-evil", {})],
    "parent escape": [("../evil", {})],
    "nested parent escape": [("data/../../evil", {})],
    "symlink to /etc": [("etc", {"type": tarfile.SYMTYPE, "linkname": "/etc"})],
    "relative symlink out": [("up", {"type": tarfile.SYMTYPE, "linkname": "../.."})],
    "hard link out": [("h", {"type": tarfile.LNKTYPE, "linkname": "../outside.txt"})],
    "write through symlink": [
        ("d", {"type": tarfile.SYMTYPE, "linkname": "."}),
        ("d/../evil", {}),
    ],
    "device file": [("null", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3})],
    "fifo": [("pipe", {"type": tarfile.FIFOTYPE})],
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_safe_extract_tar_refuses_members_that_escape_and_writes_nothing(tmp_path: Path, case):
    (tmp_path / "outside.txt").write_text("keep")
    archive = _tar(tmp_path / "evil.tar", ("fine.txt", {}), *MALICIOUS[case])
    target = tmp_path / "sub" / "target"
    target.mkdir(parents=True)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(DataError, match="refusing to extract"):
        safe_extract_tar(archive, target)
    assert list(target.iterdir()) == [], "nothing may be extracted from a bad archive"
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert list((tmp_path / "sub").iterdir()) == [target]
    assert (tmp_path / "outside.txt").read_text() == "keep"
    assert not Path("/tmp/resnetkit-evil").exists()


def test_safe_extract_tar_reports_a_corrupt_archive(tmp_path: Path):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="cannot read tar archive"):
        safe_extract_tar(archive, tmp_path / "t")
