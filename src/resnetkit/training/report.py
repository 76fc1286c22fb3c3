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
    raw_accuracy: float | None = None,
) -> Path:
    """report.md with the final numbers, the per-class accuracy and the two plots.

    `selected_on` names the split that chose the best checkpoint ("val" or "test") and
    `selection` says how, in a sentence. `raw_accuracy`: with a weight average, the trained
    weights' own top-1 on the split shown, for comparison."""
    plot_curves(history, run_dir / "curves.png", f"{cfg.model} on {cfg.data}")
    last = history[-1]
    lines = [
        f"# {cfg.model} on {cfg.data}",
        "",
        f"- epochs: {int(last['epoch'])}, steps: {int(last['step'])}, "
        f"wall time: {format_duration(wall)}",
    ]
    for split in ("test", "val"):
        if last.get(f"{split}_acc") is not None:
            lines.append(
                f"- final {split} accuracy: {last[f'{split}_acc']:.2%} (top-5 "
                f"{last[f'{split}_top5']:.2%}), loss {last[f'{split}_loss']:.4f}"
            )
    if raw_accuracy is not None:
        shown = "test" if last.get("test_acc") is not None else "val"
        lines.append(
            f"- raw weights (trained, not averaged; last_raw.safetensors): final {shown} "
            f"accuracy {raw_accuracy:.2%}; the accuracies above are of the weight average (EMA)"
        )
    lines += best_checkpoint_lines(history, selected_on)
    if selection:
        lines.append(f"- model selection: {selection}")
    lines += [
        f"- final train accuracy{train_accuracy_note(cfg)}: {last['train_acc']:.2%}, loss "
        f"{last['train_loss']:.4f}",
        f"- throughput: {last['images_per_s']:,.0f} images/s"
        + (f", precision {runtime['precision']} ({runtime['reason']})" if runtime else ""),
        "",
        "![curves](curves.png)",
        "",
    ]
    if final is not None:
        shown = "test" if last.get("test_acc") is not None else "val"
        plot_confusion(final.confusion, class_names, run_dir / "confusion.png", shown)
        lines += per_class_lines(final.per_class_accuracy, class_names, shown)
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def train_accuracy_note(cfg: Any) -> str:
    """What the train accuracy counts when mixup or cutmix mixes the targets."""
    augment = getattr(cfg, "augment", None)
    if augment is None or not augment.mixing:
        return ""
    return " (mixup/cutmix on: against the dominant label of each mixed image)"


def best_checkpoint_lines(history: list[dict[str, float]], selected_on: str) -> list[str]:
    """The line that names best.safetensors' epoch and accuracies (none before an evaluation)."""
    scored = [r for r in history if r.get(f"{selected_on}_acc") is not None]
    if not scored:
        return []
    best = max(scored, key=lambda r: r[f"{selected_on}_acc"])
    numbers = ", ".join(
        f"{split} accuracy {best[f'{split}_acc']:.2%}"
        for split in ("val", "test")
        if best.get(f"{split}_acc") is not None
    )
    return [f"- best checkpoint: epoch {int(best['epoch'])}, {numbers} (selected on {selected_on})"]


def per_class_lines(per_class_accuracy: Any, class_names: tuple[str, ...], shown: str) -> list[str]:
    """The per-class accuracy table and the confusion matrix below it."""
    lines = [f"| class | {shown} accuracy |", "| --- | --- |"]
    lines += [
        f"| {name} | {acc:.2%} |" for name, acc in zip(class_names, per_class_accuracy, strict=True)
    ]
    return [*lines, "", "![confusion matrix](confusion.png)", ""]
