"""A run's report: loss/accuracy curves and a confusion matrix as PNG, and a Markdown page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from .progress import format_duration


def plot_curves(history: list[dict[str, float]], path: Path, title: str = "") -> Path:
    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax_acc.plot(epochs, [100 * r["train_acc"] for r in history], label="train")
    for split in ("val", "test"):
        rows = [r for r in history if r.get(f"{split}_acc") is not None]
        if rows:
            at = [r["epoch"] for r in rows]
            ax_loss.plot(at, [r[f"{split}_loss"] for r in rows], "o-", label=split)
            ax_acc.plot(at, [100 * r[f"{split}_acc"] for r in rows], "o-", label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
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
    split: str = "test",
    title: str | None = None,
) -> Path:
    """A PNG of the row-normalised matrix (rows: true, columns: predicted), counts in cells;
    `path` may be a file name or a binary file object. The title names the split unless given."""
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
    ax.set(xlabel="predicted", ylabel="true", title=title or f"confusion matrix ({split})")
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
    selected_on: str = "test",
    selection: str | None = None,
) -> Path:
    """report.md with the final numbers, the per-class accuracy and the two plots.

    `selected_on` names the split that chose the best checkpoint ("val" or "test") and
    `selection` says how, in a sentence."""
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
    lines += [
        f"- final train accuracy: {last['train_acc']:.2%}, loss {last['train_loss']:.4f}",
        f"- throughput: {last['images_per_s']:,.0f} images/s"
        + (f", precision {runtime['precision']} ({runtime['reason']})" if runtime else ""),
        "",
        "![curves](curves.png)",
        "",
    ]
    if final is not None:
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
