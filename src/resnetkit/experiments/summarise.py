"""Summarise: the numbers of an experiment as plain data, read back from its run folders.

Nothing here formats Markdown or draws: `render` turns an `ExperimentSummary` into report.md,
report.html, results.json and the plots, so the numbers and their presentation stay apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..models.resnet import ResNet
from ..models.spec import ResNetSpec, SpecError
from ..models.summary import count_params
from ..training.config import TrainConfig
from ..weights.io import WeightsError, read_metadata
from .runs import ExperimentError, RunPlan, read_metrics, read_steps

UNITS = ("step", "epoch")


@dataclass(frozen=True)
class RunSummary:
    """The numbers of one finished run, read from its metrics.jsonl."""

    label: str
    run_dir: Path
    status: str
    epochs: int
    steps: int
    train_error: float  # 1 - train_acc of the last epoch (running, augmented, train mode)
    test_error: float  # 1 - test_acc after the last epoch
    best_test_error: float
    wall_time: float  # the trainer's elapsed seconds at the last epoch (evaluation included)
    params: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "label": self.label,
            "run_dir": str(self.run_dir),
            "status": self.status,
            "epochs": self.epochs,
            "steps": self.steps,
            "train_error": self.train_error,
            "test_error": self.test_error,
            "best_test_error": self.best_test_error,
            "wall_time": self.wall_time,
            "params": self.params,
            "note": self.note,
        }


def count_run_params(run_dir: Path) -> int:
    """Parameters of the trained model, from the spec stored in its last checkpoint."""
    try:
        metadata = read_metadata(run_dir / "checkpoints" / "last.safetensors")
        spec = ResNetSpec.parse_json(metadata["spec"])
    except (WeightsError, KeyError, SpecError):
        return 0
    with torch.device("meta"):
        return count_params(ResNet(spec))


def summarize_run(run_dir: Path, label: str, status: str, note: str = "") -> RunSummary:
    """A RunSummary from the run's metrics.jsonl (and its checkpoint's spec for params)."""
    rows = read_metrics(run_dir)
    if not rows:
        raise ExperimentError(f"run {run_dir} has no metrics.jsonl rows: no epoch finished")
    last = rows[-1]
    tested = [r["test_acc"] for r in rows if r["test_acc"] is not None]
    return RunSummary(
        label=label,
        run_dir=run_dir,
        status=status,
        epochs=int(last["epoch"]),
        steps=int(last["step"]),
        train_error=1.0 - last["train_acc"],
        test_error=1.0 - last["test_acc"] if last["test_acc"] is not None else math.nan,
        best_test_error=1.0 - max(tested) if tested else math.nan,
        wall_time=float(last["elapsed"]),
        params=count_run_params(run_dir),
        note=note,
    )


def summarise_runs(
    folder: Path, plans: Sequence[RunPlan], statuses: Sequence[str]
) -> tuple[RunSummary, ...]:
    """One RunSummary per planned run of the experiment in `folder`, in plan order."""
    return tuple(
        summarize_run(folder / "runs" / plan.label, plan.label, status, plan.note)
        for plan, status in zip(plans, statuses, strict=True)
    )


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


def percent(error: float) -> str:
    """An error rate as a percentage with two decimals, the precision of every report (and of
    every verdict, so a verdict never claims a difference the table does not show)."""
    return "n/a" if math.isnan(error) else f"{100 * error:.2f}"


@dataclass(frozen=True)
class Section:
    """One comparison within an experiment: its runs, their curves and what they show."""

    key: str  # names its plot, `<key>.png`
    title: str  # of the plot (and of the report's section, where it has one per comparison)
    runs: tuple[RunSummary, ...]
    panels: tuple[tuple[str, tuple[Curves, ...]], ...]  # one plot panel per (title, curves)
    unit: str  # the curves' x axis: "step" or "epoch"
    findings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExperimentSummary:
    """Everything an experiment's report shows, as plain data."""

    kind: str  # "degradation" or "compare"
    folder: Path
    recipe: TrainConfig  # the one recipe of every run
    runs: tuple[RunSummary, ...]  # every run, in plan order
    sections: tuple[Section, ...]
    verdict: tuple[str, ...]
    command: str  # reproduces the experiment (re-running resumes)
    notes: tuple[str, ...] = ()  # facts of this experiment's plan worth a sentence
    results: dict[str, Any] = field(default_factory=dict)  # results.json's keys besides runs


@dataclass(frozen=True)
class ExperimentResult:
    """Where an experiment's report is, and the numbers it shows."""

    folder: Path
    report: Path
    figures: tuple[Path, ...]
    runs: tuple[RunSummary, ...]
    verdict: tuple[str, ...] = ()

    @property
    def wall_time(self) -> float:
        """Training time of all runs together (seconds, from their metrics)."""
        return sum(r.wall_time for r in self.runs)


# -- gradient flow ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Gradient norms and unit activations on the probe batch at one point of training."""

    loss: float
    grad_norms: tuple[float, ...]  # one per conv/linear weight, in forward order
    act_mean: tuple[float, ...]  # one per residual unit (its output), in forward order
    act_std: tuple[float, ...]


@dataclass(frozen=True)
class GradientReport:
    """Gradient flow of one model: layers, units, and a snapshot before and after training."""

    model: str
    layers: tuple[str, ...]  # parameter names of the conv/linear weights, ordered by depth
    units: tuple[str, ...]  # residual units (blocks), ordered by depth
    init: Snapshot
    trained: Snapshot
    steps: int
    losses: tuple[float, ...]  # training loss of each SGD step
    params: int
    lr: float
    momentum: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return asdict(self)

    @property
    def first_to_last_ratio(self) -> tuple[float, float]:
        """Gradient norm of the first layer over that of the last, at init and after training
        (below 1: gradients shrink on their way back to the input)."""
        return tuple(_ratio(s.grad_norms[0], s.grad_norms[-1]) for s in (self.init, self.trained))


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan
