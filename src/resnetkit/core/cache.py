"""The one place that decides where resnetkit keeps its caches (weights, datasets, probes)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "RESNETKIT_CACHE"


def cache_root() -> Path:
    """`$RESNETKIT_CACHE`, else `$XDG_CACHE_HOME/resnetkit`, else `~/.cache/resnetkit`."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "resnetkit"
