"""Progress display for training: a tqdm bar where a person watches, plain lines elsewhere.

"Watching" means a terminal or a Jupyter kernel (whose streams are not terminals): there
`tqdm.auto` draws the bar, as a widget in a notebook that has ipywidgets and as text
otherwise. Logs, pipes and files get one plain line every `plain_every` seconds and one per
epoch, so they stay readable; `enabled=False` (the CLI's -q) shows nothing. The training
loop drives it as a callback (`training.callbacks`).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm.auto import tqdm

from .callbacks import Callback, RunInfo, StepMetrics
from .state import TrainState


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython imported and running as a kernel app)."""
    ipython = sys.modules.get("IPython")  # never imported here: only a running kernel has it
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def is_interactive(stream: TextIO) -> bool:
    """Whether a person watches `stream`: a terminal, or a notebook's output."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty()) or in_notebook()


class Progress(Callback):
    """Receives training events and shows them.

    Where output is interactive (see `is_interactive`; `live` forces either way) each epoch
    gets a tqdm bar with loss, accuracy and images/s, closed at the end of the epoch by the
    epoch's summary line. Otherwise a plain line is printed every `plain_every` seconds and at
    the end of each epoch.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        live: bool | None = None,
        plain_every: float = 30.0,
        enabled: bool = True,
    ) -> None:
        self.stream = stream or sys.stderr
        self.live = is_interactive(self.stream) if live is None else live
        self.plain_every = plain_every
        self.enabled = enabled
        self._last_plain = 0.0
        self._epoch_start = time.perf_counter()
        self._bar: Any = None  # the current epoch's tqdm bar, in live mode
        self.epochs = 0  # the run's length, told by on_train_start

    def _write(self, text: str) -> None:
        if self.enabled:
            self.stream.write(text + "\n")
            self.stream.flush()

    def message(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)  # above the bar, which stays drawn
        else:
            self._write(text)

    def epoch_start(self, epoch: int, epochs: int) -> None:
        self.close()
        self._epoch_start = time.perf_counter()
        self._last_plain = self._epoch_start

    def step(
        self, epoch: int, epochs: int, batch: int, batches: int, loss: float, acc: float, ips: float
    ) -> None:
        if not self.enabled:
            return
        if self.live:
            self._draw(
                epoch, epochs, batch, batches, f"loss {loss:.4f} acc {acc:.2%} {ips:,.0f} img/s"
            )
            return
        if time.perf_counter() - self._last_plain >= self.plain_every:
            self._last_plain = time.perf_counter()
            elapsed = self._last_plain - self._epoch_start
            eta = elapsed / max(batch, 1) * (batches - batch)
            self._write(
                f"epoch {epoch + 1}/{epochs} {batch}/{batches} loss {loss:.4f} acc {acc:.2%} "
                f"{ips:,.0f} img/s eta {format_duration(eta)}"
            )

    def _draw(self, epoch: int, epochs: int, batch: int, batches: int, postfix: str) -> None:
        if self._bar is None:
            self._bar = tqdm(
                total=batches,
                desc=f"epoch {epoch + 1}/{epochs}",
                unit="batch",
                file=self.stream,
                leave=False,  # the epoch's summary line replaces it
                dynamic_ncols=True,
            )
        self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.update(batch - self._bar.n)

    def epoch_end(self, epoch: int, epochs: int, metrics: dict[str, float], eta: float) -> None:
        self.close()
        test = (
            f"test loss {metrics['test_loss']:.4f} acc {metrics['test_acc']:.2%}"
            if metrics["test_acc"] is not None
            else "not evaluated"
        )
        self.message(
            f"epoch {epoch + 1}/{epochs}: train loss {metrics['train_loss']:.4f} "
            f"acc {metrics['train_acc']:.2%} | {test} | {metrics['images_per_s']:,.0f} img/s "
            f"{metrics['epoch_time']:.1f}s | eta {format_duration(eta)}"
        )

    def close(self) -> None:
        """Close the bar of an unfinished epoch (e.g. after an interruption)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # -- as a training callback --------------------------------------------------------------

    def on_train_start(self, state: TrainState, info: RunInfo) -> None:
        self.epochs = info.epochs
        self.message(f"precision {info.precision}: {info.precision_reason}")

    def on_epoch_start(self, state: TrainState) -> None:
        self.epoch_start(state.epoch, self.epochs)

    def on_step_end(self, state: TrainState, metrics: StepMetrics | None) -> None:
        if metrics is not None:  # a logging step
            m = metrics
            self.step(m.epoch, self.epochs, m.batch, m.batches, m.loss, m.accuracy, m.images_per_s)

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        epoch = int(row["epoch"]) - 1
        eta = (self.epochs - epoch - 1) * row["epoch_time"]  # the epochs left, at this pace
        self.epoch_end(epoch, self.epochs, row, eta)

    def on_train_end(self, state: TrainState) -> None:
        self.close()
