"""The `resnetkit` command: argument parsing and printing only (in `commands`); each command
calls the library.

The names of `commands` are re-exported here: `resnetkit.cli` was that module before the
package existed (`resnetkit.cli:main` is the console script).
"""

from .commands import *  # noqa: F403
from .commands import main

__all__ = ["main"]
