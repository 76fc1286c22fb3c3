"""A run's report: loss/accuracy curves and a confusion matrix as PNG, and a Markdown page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from .progress import format_duration


def plot_curves(history: list[dict[str, float]], path: Path, title: str = "") -> Path:
    epochs = [row["epoch"] for row in history]
    tested = [row for row in history if row["test_acc"] is not None]
    test_epochs = [row["epoch"] for row in tested]
    fig = Figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax_loss.plot(test_epochs, [r["test_loss"] for r in tested], "o-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.plot(epochs, [100 * r["train_acc"] for r in history], label="train")
    ax_acc.plot(test_epochs, [100 * r["test_acc"] for r in tested], "o-", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_confusion(
    confusion: torch.Tensor,
    class_names: tuple[str, ...],
    path: Path,
    title: str = "confusion matrix (test)",
) -> Path:
    """A PNG of the row-normalised matrix (rows: true, columns: predicted), counts in cells;
    `path` may be a file name or a binary file object."""
    counts = confusion.double()
    rates = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(class_names)
    size = max(5.0, 0.45 * n + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), class_names, fontsize=8)
        for i in range(n):
            for j in range(n):
                if counts[i, j] > 0:
                    colour = "white" if rates[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, int(counts[i, j]), ha="center", va="center", fontsize=7, color=colour
                    )
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    return path


def write_run_report(
    run_dir: Path,
    history: list[dict[str, float]],
    final: Any,
    class_names: tuple[str, ...],
    cfg: Any,
    wall: float,
    runtime: dict[str, Any] | None = None,
) -> Path:
    """report.md with the final numbers, the per-class accuracy and the two plots."""
    plot_curves(history, run_dir / "curves.png", f"{cfg.model} on {cfg.data}")
    last = history[-1]
    best = max((r for r in history if r["test_acc"] is not None), key=lambda r: r["test_acc"])
    lines = [
        f"# {cfg.model} on {cfg.data}",
        "",
        f"- epochs: {int(last['epoch'])}, steps: {int(last['step'])}, "
        f"wall time: {format_duration(wall)}",
        f"- final test accuracy: {last['test_acc']:.2%} (top-5 {last['test_top5']:.2%}), "
        f"loss {last['test_loss']:.4f}",
        f"- best test accuracy: {best['test_acc']:.2%} at epoch {int(best['epoch'])}",
        f"- final train accuracy: {last['train_acc']:.2%}, loss {last['train_loss']:.4f}",
        f"- throughput: {last['images_per_s']:,.0f} images/s"
        + (f", precision {runtime['precision']} ({runtime['reason']})" if runtime else ""),
        "",
        "![curves](curves.png)",
        "",
    ]
    if final is not None:
        plot_confusion(final.confusion, class_names, run_dir / "confusion.png")
        lines += ["| class | accuracy |", "| --- | --- |"]
        lines += [
            f"| {name} | {acc:.2%} |"
            for name, acc in zip(class_names, final.per_class_accuracy, strict=True)
        ]
        lines += ["", "![confusion matrix](confusion.png)", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
