"""The experiments' plots, drawn from summarised data: error curves of runs (training error
dashed, test error solid, as He et al. Fig. 6) and per-layer gradient statistics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..explain.figure import default_colours, new_figure
from .summarise import Curves, GradientReport, Section, Snapshot, load_curves

__all__ = ["Curves", "load_curves", "plot_error_panels", "plot_section"]


def plot_error_panels(
    panels: Sequence[tuple[str, Sequence[Curves]]],
    path: Path,
    unit: str = "step",
    title: str = "",
) -> Path:
    """One panel per (title, curves) side by side; the k-th curve of every panel shares a
    colour, so equal depths match across panels."""
    fig = new_figure(figsize=(6 * len(panels), 4.5))
    axes = fig.subplots(1, len(panels), squeeze=False)
    colours = default_colours()
    top = 0.0
    for ax, (panel_title, curves) in zip(axes[0], panels, strict=True):
        for index, curve in enumerate(curves):
            colour = colours[index % len(colours)]
            train = [100 * e for e in curve.train_error]
            test = [100 * e for e in curve.test_error]
            ax.plot(curve.train_x, train, "--", color=colour, lw=1.2, label=f"{curve.label} train")
            ax.plot(curve.test_x, test, "-", color=colour, lw=2, label=f"{curve.label} test")
            top = max(top, _late_max(curve.train_x, train), _late_max(curve.test_x, test))
        ax.set(
            xlabel="iterations" if unit == "step" else "epochs",
            ylabel="error (%)",
            title=panel_title,
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[0]:
        # As in He et al.'s figures, the axis fits the second half of training; the first
        # iterations' errors near 90% would flatten the gap that matters.
        ax.set_ylim(0, min(100.0, max(2.0 * top, 1.0)))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _late_max(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The largest y over the second half of the x range (0 if there is none)."""
    if not xs:
        return 0.0
    middle = max(xs) / 2
    return max((y for x, y in zip(xs, ys, strict=True) if x >= middle), default=0.0)


def plot_section(section: Section, folder: Path) -> Path:
    """The plot of one comparison, `folder/<key>.png`."""
    panels = [(title, list(curves)) for title, curves in section.panels]
    return plot_error_panels(panels, folder / f"{section.key}.png", section.unit, section.title)


# -- gradient flow -------------------------------------------------------------------------------


def plot_gradient_norms(reports: Sequence[GradientReport], path: Path) -> Path:
    """Gradient norm vs layer index (log scale), every model, at init and after training."""
    return _plot_pair(
        reports,
        path,
        lambda s: s.grad_norms,
        "layer index (conv/linear weights, input to output)",
        "gradient norm",
    )


def plot_activations(reports: Sequence[GradientReport], path: Path) -> Path:
    """Standard deviation of each residual unit's output, every model, before and after."""
    return _plot_pair(
        reports, path, lambda s: s.act_std, "residual unit (input to output)", "output std"
    )


def _plot_pair(
    reports: Sequence[GradientReport],
    path: Path,
    values: Callable[[Snapshot], Sequence[float]],
    xlabel: str,
    ylabel: str,
) -> Path:
    """Two panels, at initialization and after training, one line per model (log scale)."""
    fig = new_figure(figsize=(12, 4.5))
    axes = fig.subplots(1, 2, sharey=True)
    steps = reports[0].steps if reports else 0
    whens = (("init", "at initialization"), ("trained", f"after {steps} SGD steps"))
    for ax, (when, title) in zip(axes, whens, strict=True):
        for report in reports:
            ys = values(getattr(report, when))
            ax.plot(range(1, len(ys) + 1), [max(y, 1e-12) for y in ys], ".-", label=report.model)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
