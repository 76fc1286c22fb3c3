"""A run's report.md: the final numbers, the per-class accuracy and the two plots
(`explain.plots`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..explain.plots import plot_confusion, plot_curves
from .progress import format_duration

__all__ = ["plot_confusion", "plot_curves", "write_run_report"]


def write_run_report(
    run_dir: Path,
    history: list[dict[str, float]],
    final: Any,
    class_names: tuple[str, ...],
    cfg: Any,
    wall: float,
    runtime: dict[str, Any] | None = None,
    selected_on: str = "test",
    selection: str | None = None,
) -> Path:
    """report.md with the final numbers, the per-class accuracy and the two plots.

    `selected_on` names the split that chose the best checkpoint ("val" or "test") and
    `selection` says how, in a sentence."""
    plot_curves(history, run_dir / "curves.png", f"{cfg.model} on {cfg.data}")
    lines = [f"# {cfg.model} on {cfg.data}", ""]
    lines += _number_lines(history, wall, runtime, selected_on, selection)
    lines += ["", "![curves](curves.png)", ""]
    if final is not None:
        last = history[-1]
        shown = "test" if last.get("test_acc") is not None else "val"
        plot_confusion(final.confusion, class_names, run_dir / "confusion.png", shown)
        lines += [f"| class | {shown} accuracy |", "| --- | --- |"]
        lines += [
            f"| {name} | {acc:.2%} |"
            for name, acc in zip(class_names, final.per_class_accuracy, strict=True)
        ]
        lines += ["", "![confusion matrix](confusion.png)", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def _number_lines(
    history: list[dict[str, float]],
    wall: float,
    runtime: dict[str, Any] | None,
    selected_on: str,
    selection: str | None,
) -> list[str]:
    """The bullet list: length, final accuracies, the best checkpoint and how it was chosen,
    train accuracy and throughput."""
    last = history[-1]
    lines = [
        f"- epochs: {int(last['epoch'])}, steps: {int(last['step'])}, "
        f"wall time: {format_duration(wall)}",
    ]
    for split in ("test", "val"):
        if last.get(f"{split}_acc") is not None:
            lines.append(
                f"- final {split} accuracy: {last[f'{split}_acc']:.2%} (top-5 "
                f"{last[f'{split}_top5']:.2%}), loss {last[f'{split}_loss']:.4f}"
            )
    scored = [r for r in history if r.get(f"{selected_on}_acc") is not None]
    if scored:
        best = max(scored, key=lambda r: r[f"{selected_on}_acc"])
        numbers = ", ".join(
            f"{split} accuracy {best[f'{split}_acc']:.2%}"
            for split in ("val", "test")
            if best.get(f"{split}_acc") is not None
        )
        lines.append(
            f"- best checkpoint: epoch {int(best['epoch'])}, {numbers} (selected on {selected_on})"
        )
    if selection:
        lines.append(f"- model selection: {selection}")
    return [
        *lines,
        f"- final train accuracy: {last['train_acc']:.2%}, loss {last['train_loss']:.4f}",
        f"- throughput: {last['images_per_s']:,.0f} images/s"
        + (f", precision {runtime['precision']} ({runtime['reason']})" if runtime else ""),
    ]
