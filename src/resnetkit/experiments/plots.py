"""Error curves of experiment runs: training error dashed, test error solid (He et al. Fig. 6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib import rcParams
from matplotlib.figure import Figure

from .runs import read_metrics, read_steps

UNITS = ("step", "epoch")


@dataclass(frozen=True)
class Curves:
    """Training and test error (fractions) of one run against steps or epochs."""

    label: str
    train_x: tuple[float, ...]
    train_error: tuple[float, ...]
    test_x: tuple[float, ...]
    test_error: tuple[float, ...]


def load_curves(run_dir: Path, label: str, unit: str = "step") -> Curves:
    """Curves of a run from train_steps.jsonl (windowed training error) and metrics.jsonl."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    metrics = read_metrics(run_dir)
    steps = read_steps(run_dir)
    if not steps:  # no windows logged (tiny runs): fall back to the per-epoch running error
        steps = [{**r, "train_error": 1.0 - r["train_acc"]} for r in metrics]
    tested = [r for r in metrics if r["test_acc"] is not None]
    return Curves(
        label=label,
        train_x=tuple(float(r[unit]) for r in steps),
        train_error=tuple(float(r["train_error"]) for r in steps),
        test_x=tuple(float(r[unit]) for r in tested),
        test_error=tuple(1.0 - float(r["test_acc"]) for r in tested),
    )


def plot_error_panels(
    panels: Sequence[tuple[str, Sequence[Curves]]],
    path: Path,
    unit: str = "step",
    title: str = "",
) -> Path:
    """One panel per (title, curves) side by side; the k-th curve of every panel shares a
    colour, so equal depths match across panels."""
    fig = Figure(figsize=(6 * len(panels), 4.5))
    axes = fig.subplots(1, len(panels), squeeze=False)
    colours = rcParams["axes.prop_cycle"].by_key()["color"]
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
