"""Callbacks: how code that is not the loop takes part in training.

The loop calls each hook of every callback, in order, at fixed points (Keras's and
Lightning's callbacks, minimal):

    on_train_start(state, info)      once, after set-up (and resume), before the first step
    on_epoch_start(state)            before each epoch's first batch (or a resumed epoch's next)
    on_step_end(state, metrics)      after each optimizer update; `metrics` on logging steps only
    on_epoch_end(state, row)         after the epoch's evaluation, checkpoints and state are saved
    on_train_end(state)              once at the end, also when training stops with an error

The progress display, the metrics files and the experiments' per-window statistics are
callbacks; so are a test's "stop after N steps". Callbacks run on rank 0 only (under torchrun
the other ranks train silently), and a hook that raises stops the run, as Ctrl-C does. A
callback reads the state; changing it changes training.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .state import TrainState


@dataclass(frozen=True)
class RunInfo:
    """What a callback may want to know about the run, given once at its start."""

    run_dir: Path
    epochs: int
    steps_per_epoch: int
    total_steps: int
    precision: str
    precision_reason: str  # why that precision (asked for, measured faster, recorded by the run)


@dataclass(frozen=True)
class StepMetrics:
    """The running means of the epoch so far, over every rank (a logging step's numbers).

    With mixup or cutmix the accuracy counts a prediction as right when it is the dominant
    (largest) share of the image's mixed target."""

    step: int
    epoch: int  # 0-based
    batch: int  # batches of the epoch done, 1-based
    batches: int
    loss: float
    accuracy: float
    images_per_s: float
    grad_norm: float | None = None  # the step's gradient norm before clipping (clip_grad_norm)


class Callback:
    """A hook for each point of the loop; every one does nothing until overridden."""

    def on_train_start(self, state: TrainState, info: RunInfo) -> None:
        pass

    def on_epoch_start(self, state: TrainState) -> None:
        pass

    def on_step_end(self, state: TrainState, metrics: StepMetrics | None) -> None:
        pass

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        pass

    def on_train_end(self, state: TrainState) -> None:
        pass


class CallbackList(Callback):
    """Several callbacks called as one, in the order given."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_train_start(self, state: TrainState, info: RunInfo) -> None:
        for callback in self.callbacks:
            callback.on_train_start(state, info)

    def on_epoch_start(self, state: TrainState) -> None:
        for callback in self.callbacks:
            callback.on_epoch_start(state)

    def on_step_end(self, state: TrainState, metrics: StepMetrics | None) -> None:
        for callback in self.callbacks:
            callback.on_step_end(state, metrics)

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(state, row)

    def on_train_end(self, state: TrainState) -> None:
        """Every callback's end, even when an earlier one raises (the first error wins)."""
        error: BaseException | None = None
        for callback in self.callbacks:
            try:
                callback.on_train_end(state)
            except BaseException as exc:  # re-raised below, once the others have run
                error = error or exc
        if error is not None:
            raise error
