"""The run folder's own bookkeeping: the marker that makes it ours, a lock against two trainers,
and cleaning up the temporary files a killed process leaves behind.

Nothing here deletes a file resnetkit did not create: `--overwrite` removes only a folder that
carries the marker, and the temp-file cleanup matches only the names `fileio.atomic_path` makes
for checkpoint files.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import re
import socket
import time
from pathlib import Path

from ..weights.checkpoint import list_states

log = logging.getLogger(__name__)

MARKER = ".resnetkit-run"
LOCK = ".lock"
MARKER_VERSION = 1
# Everything resnetkit writes at the top of a run folder (the trainer, its report, the
# experiments' step log). --overwrite deletes a run folder only when it holds nothing else,
# so a file a user put there is never removed with it.
RUN_ENTRIES = frozenset(
    {
        MARKER,
        LOCK,
        "config.yaml",
        "runtime.json",
        "metrics.csv",
        "metrics.jsonl",
        "train_steps.jsonl",
        "report.md",
        "report.html",
        "curves.png",
        "confusion.png",
        "checkpoints",
        "tensorboard",
    }
)
# `atomic_path` names a temporary `.<final name>.<random>.tmp`; these are the final names of the
# files a run writes into checkpoints/.
_TEMP_PATTERN = re.compile(
    r"^\.(state-\d+\.pt(\.sha256)?|(last|best)\.safetensors)\.[A-Za-z0-9_]+\.tmp$"
)


class RunError(ValueError):
    """A problem with the run folder (exists, busy, missing, nothing to resume)."""


def write_marker(run_dir: Path) -> Path:
    """Mark `run_dir` as made by resnetkit (only such folders are ever removed)."""
    path = run_dir / MARKER
    path.write_text(json.dumps({"version": MARKER_VERSION, "created": time.time()}) + "\n")
    return path


def has_marker(run_dir: Path) -> bool:
    return (run_dir / MARKER).is_file()


def check_replaceable(run_dir: Path, overwrite: bool) -> None:
    """Refuse an existing, non-empty `run_dir` unless `overwrite` and it is resnetkit's own run."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir} exists and is not a folder; choose another --name")
    existing = next((p for p in run_dir.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise RunError(
            f"output folder {existing} is a file, not a folder; choose another --out-dir"
        )
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return
    if not overwrite:
        raise RunError(
            f"run folder {run_dir} already exists; pass --overwrite to replace it"
            + (f" or --resume {run_dir} to continue it" if resumable(run_dir) else "")
        )
    if run_dir.is_symlink():
        raise RunError(f"{run_dir} is a symbolic link; refusing to delete what it points to")
    if not has_marker(run_dir):
        if (run_dir / "config.yaml").is_file():
            raise RunError(
                f"{run_dir} looks like a run made by an older resnetkit (no {MARKER} marker); "
                f"refusing to delete it: remove it by hand (rm -r {run_dir}) if you mean to"
            )
        raise RunError(f"{run_dir} exists and is not a resnetkit run folder; refusing to delete it")
    holder = lock_holder(run_dir)
    if holder is not None:
        raise RunError(f"{run_dir} is in use: {holder}; refusing to replace it")
    foreign = sorted(foreign_entries(run_dir))
    if foreign:
        raise RunError(
            f"{run_dir} holds files resnetkit did not write ({', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}); refusing to delete them: move them out "
            "and run again"
        )


# What resnetkit writes inside the run folder's own subfolders (checked as deep as it writes).
SUBFOLDER_ENTRIES = {
    "checkpoints": ("last.safetensors", "best.safetensors", "last_raw.safetensors", "state-*.pt"),
    "tensorboard": ("events.out.tfevents.*",),
}


def foreign_entries(run_dir: Path) -> list[str]:
    """Paths (relative to `run_dir`) that resnetkit did not write: a top-level name it never
    writes, a folder (or link) where it writes a file, or anything in its subfolders other than
    the files it puts there (and their `.sha256` sidecars)."""
    foreign = []
    for entry in run_dir.iterdir():
        real_dir = entry.is_dir() and not entry.is_symlink()
        if not _ours(entry.name) or real_dir != (entry.name in SUBFOLDER_ENTRIES):
            foreign.append(entry.name)
        elif real_dir:
            patterns = SUBFOLDER_ENTRIES[entry.name]
            foreign += [
                f"{entry.name}/{inner.name}"
                for inner in entry.iterdir()
                if not (inner.is_file() and _ours_inside(inner.name, patterns))
            ]
    return foreign


def _ours_inside(name: str, patterns: tuple[str, ...]) -> bool:
    name = name.removesuffix(".sha256")
    return _ours_temporary(name) or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _ours_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _ours(name: str) -> bool:
    """A name resnetkit writes into a run folder, or the temporary name of one being written
    (`core.fileio.atomic_path`: `.NAME.XXXX.tmp`)."""
    return name in RUN_ENTRIES or _ours_temporary(name)


def remove_run_dir(run_dir: Path) -> None:
    """Delete a run folder that carries the marker and holds only what resnetkit writes (both
    checked right before), file by file: the folders are removed with `rmdir`, which fails
    rather than take along anything that appeared after the check."""
    check_replaceable(run_dir, overwrite=True)
    if not run_dir.exists():
        return
    try:
        for entry in run_dir.iterdir():
            if entry.name in SUBFOLDER_ENTRIES:
                for inner in entry.iterdir():
                    inner.unlink()
                entry.rmdir()
            else:
                entry.unlink()
        run_dir.rmdir()
    except OSError as exc:
        raise RunError(
            f"could not replace {run_dir}: {exc.strerror} ({exc.filename}); it changed while "
            "being replaced, remove what is left by hand"
        ) from None


def resumable(run_dir: Path) -> bool:
    return bool(list_states(run_dir / "checkpoints"))


# -- the lock --------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_lock(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_stale(info: dict | None) -> bool:
    if info is None:  # unreadable: a process killed while writing it
        return True
    if info.get("host") != socket.gethostname():
        return False  # another machine's process: we cannot tell, so it holds the lock
    pid = info.get("pid")
    return not isinstance(pid, int) or not _pid_alive(pid)


def lock_holder(run_dir: Path) -> str | None:
    """Who trains in `run_dir` now ('process 123 on host since ...'), or None."""
    info = _read_lock(run_dir / LOCK)
    if not (run_dir / LOCK).exists() or _is_stale(info):
        return None
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"process {info.get('pid')} on {info.get('host')} has trained there since {since}"


class RunLock:
    """`.lock` in the run folder, created with O_EXCL and holding pid, host and start time;
    a lock whose process no longer exists (on this host) is taken over with a log line."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self.held = False

    def acquire(self) -> RunLock:
        info = json.dumps(
            {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        )
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                old = _read_lock(self.path)
                if not _is_stale(old):
                    raise RunError(
                        f"run folder {self.path.parent} is busy: {lock_holder(self.path.parent)}"
                        f"; wait for it to finish or stop it first"
                    ) from None
                log.info("taking over the stale lock of a stopped process: %s", old)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(info + "\n")
            self.held = True
            return self
        raise RunError(f"cannot lock run folder {self.path.parent}; try again")

    def release(self) -> None:
        if self.held:
            info = _read_lock(self.path)
            if info is not None and info.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False


def clean_stale_temp_files(checkpoints: Path) -> list[Path]:
    """Delete the half-written checkpoint temp files a killed run left behind (only names the
    project itself makes); call it while holding the run's lock."""
    removed = []
    if not checkpoints.is_dir():
        return removed
    for path in checkpoints.iterdir():
        if _TEMP_PATTERN.match(path.name) and path.is_file() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    if removed:
        log.info("removed %d stale temporary file(s) from %s", len(removed), checkpoints)
    return removed
