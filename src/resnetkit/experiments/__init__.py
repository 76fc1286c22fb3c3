"""Experiments that reproduce the papers' claims with ordinary, resumable training runs.

- `run_degradation`: plain vs residual nets at two depths (He et al. 2015, Fig. 6).
- `run_compare`: v1 vs v2 units at equal depth, shortcut A vs B, at equal budget.
- `gradient_flow` / `inspect_gradients`: per-layer gradient norms and residual-unit
  activation statistics at initialization and after a few SGD steps.

Each experiment goes plan -> run -> summarise -> render: its plan is data (`RunPlan`s and one
recipe, `runs`), the runs are ordinary resumable training runs (`runs.run_plans`), the numbers
are read back as plain data (`summarise`), and `render` alone writes report.md, report.html,
results.json and the PNG plots from that data.
"""

from .compare import PAIRS, plan_compare, run_compare
from .degradation import degradation_verdict, run_degradation
from .gradients import GradientReport, InspectResult, Snapshot, gradient_flow, inspect_gradients
from .runs import ExperimentError, StepLog, cifar_spec, read_metrics, read_steps, recipe
from .summarise import ExperimentResult, ExperimentSummary, RunSummary

__all__ = [
    "PAIRS",
    "ExperimentError",
    "ExperimentResult",
    "ExperimentSummary",
    "GradientReport",
    "InspectResult",
    "RunSummary",
    "Snapshot",
    "StepLog",
    "cifar_spec",
    "degradation_verdict",
    "gradient_flow",
    "inspect_gradients",
    "plan_compare",
    "read_metrics",
    "read_steps",
    "recipe",
    "run_compare",
    "run_degradation",
]
