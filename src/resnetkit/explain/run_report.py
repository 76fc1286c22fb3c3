"""A run's report as one self-contained HTML page: curves, the numbers, the confusion matrix,
per-class accuracy and the model's most confident mistakes with Grad-CAM overlays.

Every picture is embedded as a data: URI and the page has no scripts or links to fetch, so it
opens offline, can be mailed as one file, and shows the same thing in ten years.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..core.fileio import atomic_write_text
from ..models.resnet import ResNet
from .figure import new_figure
from .gradcam import grad_cam
from .mistakes import Mistake as EvalMistake
from .mistakes import keep_confident_mistakes
from .plots import plot_confusion, plot_curves
from .render import heat_overlay

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class Mistake:
    """A test image the model got wrong, most confident first in a gallery."""

    image: torch.Tensor  # uint8 (C, H, W), as the model saw it before normalisation
    true: int
    predicted: int
    confidence: float  # probability of the predicted class
    true_probability: float
    cam: torch.Tensor  # Grad-CAM of the predicted class, (H, W) in [0, 1]


@torch.no_grad()
def _wrong_predictions(
    model: ResNet, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], count: int
) -> list[EvalMistake]:
    kept: list[EvalMistake] = []
    for images, labels in batches:
        probs = model(images).float().softmax(1)
        kept = keep_confident_mistakes(kept, probs, images, labels, count)
    return kept


def find_mistakes(
    model: ResNet,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    mean: Sequence[float],
    std: Sequence[float],
    count: int = 12,
) -> list[Mistake]:
    """The most confident mistakes on normalised `batches`, each with its Grad-CAM map (one
    pass of its own; `evaluate(..., keep_mistakes=N)` collects them during an evaluation)."""
    was_training = model.training
    model.eval()
    try:
        wrong = _wrong_predictions(model, batches, count)
    finally:
        model.train(was_training)
    return explain_mistakes(model, wrong, mean, std)


def explain_mistakes(
    model: ResNet, wrong: Sequence[EvalMistake], mean: Sequence[float], std: Sequence[float]
) -> list[Mistake]:
    """Pictures and Grad-CAM maps (of the predicted class) for collected wrong predictions."""
    if not wrong:
        return []
    inputs = torch.stack([item[1] for item in wrong]).float()
    device = next(model.parameters()).device
    maps = grad_cam(model, inputs.to(device), torch.tensor([w[3] for w in wrong])).cpu()
    mean_t = torch.tensor(mean).view(-1, 1, 1)
    std_t = torch.tensor(std).view(-1, 1, 1)
    pictures = ((inputs * std_t + mean_t) * 255).round().clamp(0, 255).to(torch.uint8)
    return [
        Mistake(pictures[i], true, predicted, confidence, p_true, maps[i])
        for i, (confidence, _, true, predicted, p_true) in enumerate(wrong)
    ]


# -- pictures -------------------------------------------------------------------------------------


def _data_uri(draw: Any, *args: Any) -> str:
    """Run a plotting function that takes a path, into memory, as a PNG data: URI."""
    buffer = io.BytesIO()
    draw(*args, buffer)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def learning_rate_figure(history: list[dict[str, Any]]) -> Figure:
    figure = new_figure(figsize=(5, 3))
    ax = figure.subplots()
    ax.plot([r["epoch"] for r in history], [r["lr"] for r in history], "o-", markersize=3)
    ax.set(xlabel="epoch", ylabel="learning rate", title="learning rate (end of epoch)")
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def mistake_figure(mistake: Mistake, class_names: Sequence[str]) -> Figure:
    figure = new_figure(figsize=(3.6, 2.1), dpi=100)
    ax_image, ax_cam = figure.subplots(1, 2)
    ax_image.imshow(mistake.image.float().div(255).expand(3, -1, -1).permute(1, 2, 0).numpy())
    ax_cam.imshow(heat_overlay(mistake.image, mistake.cam))
    for ax in (ax_image, ax_cam):
        ax.set_axis_off()
    ax_image.set_title(f"true: {class_names[mistake.true]}", fontsize=8)
    ax_cam.set_title(f"said: {class_names[mistake.predicted]}", fontsize=8)
    figure.tight_layout()
    return figure


# -- the page -------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.9rem; }
td, th { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.8rem; }
.gallery figure { margin: 0; font-size: 0.8rem; }
img { max-width: 100%; }
.bar { background: #4c72b0; height: 0.8rem; display: inline-block; }
pre { background: #f6f6f6; padding: 0.8rem; font-size: 0.8rem; overflow-x: auto; }
"""


def _table(rows: Iterable[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _per_class(class_names: Sequence[str], accuracy: Sequence[float]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td class='num'>{acc:.2%}</td>"
        f"<td><span class='bar' style='width:{200 * acc:.0f}px'></span></td></tr>"
        for name, acc in zip(class_names, accuracy, strict=True)
    )
    return f"<table><tr><th>class</th><th>accuracy</th><th></th></tr>{rows}</table>"


def _gallery(mistakes: Sequence[Mistake], class_names: Sequence[str]) -> str:
    if not mistakes:
        return "<p>No mistakes on the evaluated images.</p>"
    figures = []
    for m in mistakes:
        caption = (
            f"{html.escape(class_names[m.predicted])} {m.confidence:.1%}; "
            f"{html.escape(class_names[m.true])} {m.true_probability:.1%}"
        )
        uri = _figure_uri(mistake_figure(m, class_names))
        figures.append(
            f"<figure><img src='{uri}' alt='mistake'><figcaption>{caption}</figcaption></figure>"
        )
    return f"<div class='gallery'>{''.join(figures)}</div>"


def _confusable_pairs(confusion: torch.Tensor, class_names: Sequence[str], count: int = 5) -> str:
    off = confusion.clone()
    off.fill_diagonal_(0)
    values, flat = off.flatten().topk(min(count, off.numel()))
    items = [
        f"<li>{html.escape(class_names[i // len(class_names)])} taken for "
        f"{html.escape(class_names[i % len(class_names)])}: {int(v)} times</li>"
        for v, i in zip(values.tolist(), flat.tolist(), strict=True)
        if v > 0
    ]
    return f"<ul>{''.join(items)}</ul>" if items else ""


@dataclass(frozen=True)
class ReportPage:
    """What one report page shows; sections without data are left out."""

    title: str
    summary: list[tuple[str, str]]
    class_names: tuple[str, ...]
    confusion: torch.Tensor | None = None
    per_class_accuracy: tuple[float, ...] = ()
    mistakes: tuple[Mistake, ...] = ()
    history: tuple[dict[str, Any], ...] = ()
    config: dict[str, Any] | None = None


def render_page(page: ReportPage) -> str:
    parts = [f"<h1>{html.escape(page.title)}</h1>", _table(page.summary)]
    if page.history:
        history = list(page.history)
        parts += [
            "<h2>Curves</h2>",
            f"<img src='{_data_uri(plot_curves, history)}' alt='loss and accuracy curves'>",
            f"<img src='{_figure_uri(learning_rate_figure(history))}' alt='learning rate'>",
        ]
    if page.confusion is not None:
        parts += [
            "<h2>Confusion matrix</h2>",
            f"<img src='{_data_uri(plot_confusion, page.confusion, page.class_names)}' "
            "alt='confusion matrix' style='max-width:640px'>",
            "<p>Most confused:</p>",
            _confusable_pairs(page.confusion, page.class_names),
        ]
    if page.per_class_accuracy:
        parts += [
            "<h2>Per-class accuracy</h2>",
            _per_class(page.class_names, page.per_class_accuracy),
        ]
    if page.confusion is not None:
        parts += [
            "<h2>Most confident mistakes</h2>",
            "<p>Each pair: the image, and the Grad-CAM of the class the model said (where it "
            "found that evidence). Caption: predicted class and its probability; true class "
            "and its probability.</p>",
            _gallery(page.mistakes, page.class_names),
        ]
    if page.config:
        parts += [
            "<h2>Configuration</h2>",
            f"<pre>{html.escape(json.dumps(page.config, indent=1))}</pre>",
        ]
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(page.title)}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )


def write_page(path: str | Path, page: ReportPage) -> Path:
    return atomic_write_text(path, render_page(page))
