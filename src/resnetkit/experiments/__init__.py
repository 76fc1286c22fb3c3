"""Experiments that reproduce the papers' claims with ordinary, resumable training runs.

- `run_degradation`: plain vs residual nets at two depths (He et al. 2015, Fig. 6).
- `run_compare`: v1 vs v2 units at equal depth, shortcut A vs B, at equal budget.
- `gradient_flow` / `inspect_gradients`: per-layer gradient norms and residual-unit
  activation statistics at initialization and after a few SGD steps.

Each experiment writes a self-contained report.md with PNG plots into its folder.
"""

from .compare import PAIRS, run_compare
from .degradation import degradation_verdict, run_degradation
from .gradients import GradientReport, InspectResult, Snapshot, gradient_flow, inspect_gradients
from .runs import (
    ExperimentError,
    ExperimentResult,
    RunSummary,
    StepLog,
    cifar_spec,
    read_metrics,
    read_steps,
    recipe,
)

__all__ = [
    "PAIRS",
    "ExperimentError",
    "ExperimentResult",
    "GradientReport",
    "InspectResult",
    "RunSummary",
    "Snapshot",
    "StepLog",
    "cifar_spec",
    "degradation_verdict",
    "gradient_flow",
    "inspect_gradients",
    "read_metrics",
    "read_steps",
    "recipe",
    "run_compare",
    "run_degradation",
]
