"""Progress display for training: a live bar on a terminal, plain lines everywhere else."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class Progress:
    """Receives training events and shows them.

    On a terminal the batch line is redrawn in place (epoch, bar, loss, accuracy, images/s,
    ETA); when output goes to a file or pipe, a plain line is printed every `plain_every`
    seconds and at the end of each epoch, so logs stay readable.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        live: bool | None = None,
        plain_every: float = 30.0,
        enabled: bool = True,
    ) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.plain_every = plain_every
        self.enabled = enabled
        self._last_plain = 0.0
        self._epoch_start = time.perf_counter()

    def _write(self, text: str, end: str = "\n") -> None:
        if self.enabled:
            self.stream.write(text + end)
            self.stream.flush()

    def message(self, text: str) -> None:
        if self.live:
            self._write("\r\033[K" + text)
        else:
            self._write(text)

    def epoch_start(self, epoch: int, epochs: int) -> None:
        self._epoch_start = time.perf_counter()
        self._last_plain = self._epoch_start

    def step(
        self, epoch: int, epochs: int, batch: int, batches: int, loss: float, acc: float, ips: float
    ) -> None:
        elapsed = time.perf_counter() - self._epoch_start
        eta = elapsed / max(batch, 1) * (batches - batch)
        text = (
            f"epoch {epoch + 1}/{epochs} {batch}/{batches} loss {loss:.4f} acc {acc:.2%} "
            f"{ips:,.0f} img/s eta {format_duration(eta)}"
        )
        if self.live:
            width = 24
            filled = int(width * batch / max(batches, 1))
            bar = "#" * filled + "-" * (width - filled)
            self._write(f"\r\033[K[{bar}] {text}", end="")
        elif time.perf_counter() - self._last_plain >= self.plain_every:
            self._last_plain = time.perf_counter()
            self._write(text)

    def epoch_end(self, epoch: int, epochs: int, metrics: dict[str, float], eta: float) -> None:
        test = (
            f"test loss {metrics['test_loss']:.4f} acc {metrics['test_acc']:.2%}"
            if metrics["test_acc"] is not None
            else "not evaluated"
        )
        text = (
            f"epoch {epoch + 1}/{epochs}: train loss {metrics['train_loss']:.4f} "
            f"acc {metrics['train_acc']:.2%} | {test} | {metrics['images_per_s']:,.0f} img/s "
            f"{metrics['epoch_time']:.1f}s | eta {format_duration(eta)}"
        )
        self.message(text)
