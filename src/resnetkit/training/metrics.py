"""The metrics files of a run: metrics.csv, metrics.jsonl and TensorBoard events, one row per
epoch, written by the `MetricsLog` callback."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from .callbacks import Callback, RunInfo, StepMetrics
from .state import TrainState

log = logging.getLogger(__name__)

METRIC_FIELDS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "test_top5",
    "images_per_s",
    "epoch_time",
    "elapsed",
)
VAL_FIELDS = ("val_loss", "val_acc", "val_top5")  # after train_acc, in runs with a val split


def metric_fields(with_val: bool) -> tuple[str, ...]:
    """The columns of metrics.csv; runs without a validation split keep the old ones."""
    if not with_val:
        return METRIC_FIELDS
    at = METRIC_FIELDS.index("test_loss")
    return METRIC_FIELDS[:at] + VAL_FIELDS + METRIC_FIELDS[at:]


class MetricsLog(Callback):
    """Per-epoch metrics as CSV and JSONL (and TensorBoard when available).

    As a callback: rewrites the files from the state's history when training starts (a
    resumed run drops any row written after its last state), appends each epoch's row, and
    closes TensorBoard at the end.
    """

    def __init__(
        self,
        run_dir: Path,
        tensorboard: bool,
        enabled: bool = True,
        fields: tuple[str, ...] = METRIC_FIELDS,
    ) -> None:
        self.enabled = enabled
        self.fields = fields
        self.csv_path = run_dir / "metrics.csv"
        self.jsonl_path = run_dir / "metrics.jsonl"
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
            except ImportError:
                log.warning("tensorboard is not installed; skipping TensorBoard event files")

    def rewrite(self, history: list[dict[str, float]]) -> None:
        """Write the files from the full history (used on resume, to drop any stale tail)."""
        if not self.enabled:
            return
        with open(self.csv_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows(history)
        with open(self.jsonl_path, "w") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in history)

    def append(self, row: dict[str, float]) -> None:
        new = not self.csv_path.exists()
        with open(self.csv_path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields)
            if new:
                writer.writeheader()
            writer.writerow(row)
        with open(self.jsonl_path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        if self.writer is not None:
            step = int(row["step"])
            keys = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
            for key in (*keys, "lr", "images_per_s"):
                if row.get(key) is not None:
                    self.writer.add_scalar(key.replace("_", "/", 1), row[key], step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def on_train_start(self, state: TrainState, info: RunInfo) -> None:
        self.rewrite(state.history)

    def on_step_end(self, state: TrainState, metrics: StepMetrics | None) -> None:
        """On logging steps with gradient clipping: the norm before clipping, to TensorBoard."""
        if self.writer is not None and metrics is not None and metrics.grad_norm is not None:
            self.writer.add_scalar("train/grad_norm", metrics.grad_norm, metrics.step)

    def on_epoch_end(self, state: TrainState, row: dict[str, Any]) -> None:
        self.append(row)

    def on_train_end(self, state: TrainState) -> None:
        self.close()
