"""A run's pictures: loss/accuracy curves and the confusion matrix, as PNG.

Drawn on `matplotlib.figure.Figure`, never pyplot: the caller's backend and figures are left
alone."""

from __future__ import annotations

from pathlib import Path

import torch

from .figure import new_figure


def plot_curves(history: list[dict[str, float]], path: Path, title: str = "") -> Path:
    epochs = [row["epoch"] for row in history]
    fig = new_figure(figsize=(10, 4))
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
    fig = new_figure(figsize=(size, size))
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
