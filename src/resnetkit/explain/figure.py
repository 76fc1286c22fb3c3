"""Figures, with matplotlib imported only when one is drawn.

matplotlib takes about half a second to import, more than the rest of resnetkit after torch;
`import resnetkit` and commands that draw nothing should not pay it. Only the object-oriented
API is used (a `Figure`, never `pyplot`), so the caller's backend and figures are untouched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

__all__ = ["colormap", "default_colours", "new_figure"]


def new_figure(**kwargs: Any) -> Figure:
    """`matplotlib.figure.Figure(**kwargs)`."""
    from matplotlib.figure import Figure  # deferred: see the module docstring

    return Figure(**kwargs)


def colormap(name: str) -> Colormap:
    from matplotlib import colormaps  # deferred: see the module docstring

    return colormaps[name]


def default_colours() -> list[str]:
    """matplotlib's default colour cycle."""
    from matplotlib import rcParams  # deferred: see the module docstring

    return rcParams["axes.prop_cycle"].by_key()["color"]
