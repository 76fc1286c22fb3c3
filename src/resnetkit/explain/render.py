"""Pictures and pages for explanations: an overlay figure per image and a self-contained index.

Only matplotlib's object-oriented API is used (a `Figure`, never `pyplot`), so nothing here
touches the caller's backend or global figure state: notebooks keep their inline plots.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..core.fileio import atomic_path, atomic_write_text
from .figure import colormap, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Explained:
    """One explained image: where it came from, what the model said, and the picture made."""

    source: str
    top: tuple[tuple[str, float], ...]  # (class, probability), most likely first
    explained_class: str
    picture: Path


def heat_overlay(image: torch.Tensor, cam: torch.Tensor, alpha: float = 0.45) -> np.ndarray:
    """An RGB float array: the image in grey or colour with the map in 'jet' laid over it."""
    rgb = image.float().div(255).expand(3, -1, -1).permute(1, 2, 0).numpy()
    heat = colormap("jet")(cam.clamp(0, 1).numpy())[..., :3]
    return np.clip((1 - alpha) * rgb + alpha * heat, 0.0, 1.0)


def overlay_figure(image: torch.Tensor, cam: torch.Tensor, item: Explained) -> Figure:
    """Image | Grad-CAM overlay | top-k probabilities, side by side."""
    figure = new_figure(figsize=(9.6, 3.2), dpi=100)
    ax_image, ax_cam, ax_bars = figure.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.3]})
    shown = image.float().div(255).expand(3, -1, -1).permute(1, 2, 0).numpy()
    ax_image.imshow(shown, interpolation="nearest")
    ax_image.set_title(Path(item.source).name, fontsize=9)
    ax_cam.imshow(heat_overlay(image, cam), interpolation="bilinear")
    ax_cam.set_title(f"Grad-CAM: {item.explained_class}", fontsize=9)
    for ax in (ax_image, ax_cam):
        ax.set_axis_off()
    names = [name for name, _ in item.top][::-1]
    probs = [100 * p for _, p in item.top][::-1]
    bars = ax_bars.barh(range(len(names)), probs, color="#4c72b0")
    ax_bars.set_yticks(range(len(names)), names, fontsize=8)
    ax_bars.set_xlim(0, 100)
    ax_bars.set_xlabel("probability (%)", fontsize=8)
    ax_bars.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax_bars.set_title("top classes", fontsize=9)
    figure.tight_layout()
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def embedded_png(path: Path) -> str:
    """A data: URI, so pages need no files beside them and make no network requests."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def write_index(out_dir: Path, items: Sequence[Explained], title: str) -> Path:
    """index.html: every overlay with its prediction, images embedded."""
    rows = []
    for item in items:
        best, prob = item.top[0]
        rows.append(
            f'<figure><img src="{embedded_png(item.picture)}" alt="{html.escape(item.source)}">'
            f"<figcaption>{html.escape(item.source)}: <b>{html.escape(best)}</b> "
            f"{prob:.1%}; map for <i>{html.escape(item.explained_class)}</i></figcaption>"
            "</figure>"
        )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
figure {{ margin: 0 0 1.5rem; }} img {{ max-width: 100%; border: 1px solid #ddd; }}
figcaption {{ font-size: 0.9rem; color: #444; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Grad-CAM (Selvaraju et al. 2017): red marks the regions whose features raise the score of
the explained class; blue, those that do not.</p>
{"".join(rows)}
</body></html>
"""
    return atomic_write_text(out_dir / "index.html", page)
