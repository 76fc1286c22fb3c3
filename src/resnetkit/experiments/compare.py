"""Equal-budget comparisons: v1 vs v2 (pre-activation) units, and shortcut A vs B.

Every run uses the recipe of the degradation experiment (`runs.recipe`) and the same
resumable run folders. Pairs:

- `v1v2`: `resnetD` (v1, shortcut A) vs a pre-activation net of the same depth D (default 56).
  `preact_resnet56` is not registered: it is `preact_resnet110`'s spec with 9 units per stage
  (1x1 projection shortcuts where the shape changes, as registered), written to `specs/`.
  `depth=110` compares `resnet110` with the registered `preact_resnet110`, both with one
  warm-up epoch (He et al. 2015 warm ResNet-110 up at lr 0.01).
- `shortcuts`: `resnet20` and `resnet56` with option A (zero-padding, as registered) vs
  option B (1x1 projections where the shape changes; spec files `resnetN_B.yaml`).

Default budget (30,000 Fashion-MNIST images x 10 epochs per run), estimated on a 2-core CPU at
~1,400 img/s for resnet20 and a third of that for 56 layers, evaluation included: v1v2 about
24 min, shortcuts about 32 min, all (5 runs: resnet56 is shared) about 44 min; v1v2 at depth
110 about 48 min. At 1,000-1,800 img/s scale these by 1.4x-0.8x. Nothing measured yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..training.config import TrainConfig
from ..training.progress import Progress
from .render import compare_markdown, write_report
from .runs import (
    ExperimentError,
    RunPlan,
    cifar_spec,
    experiment_folder,
    prepare_experiment_folder,
    recipe,
    registered_name,
    run_plans,
)
from .summarise import (
    ExperimentResult,
    ExperimentSummary,
    RunSummary,
    Section,
    load_curves,
    percent,
    summarise_runs,
)

PAIRS = ("v1v2", "shortcuts", "all")
DEFAULT_DEPTH = 56
QUICK_DEPTH = 14
DEFAULT_SHORTCUT_DEPTHS = (20, 56)
QUICK_SHORTCUT_DEPTHS = (8, 14)
WARMUP_FROM_DEPTH = 110  # He et al. 2015, section 4.2: ResNet-110 needs a warm-up


def v1v2_plans(depth: int) -> list[RunPlan]:
    """resnetD (v1) and the pre-activation net of depth D (v2)."""
    v1, v2 = cifar_spec(depth, "A"), cifar_spec(depth, preact=True)
    n = v2.stages[0].blocks
    changes = (("warmup_epochs", 1.0),) if depth >= WARMUP_FROM_DEPTH else ()
    v2_origin = (
        "registered"
        if registered_name(v2)
        else f"`preact_resnet110`'s spec with {n} units per stage, spec file specs/{v2.name}.yaml"
    )
    return [
        RunPlan(v1.name, v1, "v1 (post-activation), shortcut A", changes),
        RunPlan(v2.name, v2, f"v2 (pre-activation), shortcut B; {v2_origin}", changes),
    ]


def shortcut_plans(depths: Sequence[int]) -> list[RunPlan]:
    """resnetN with option A (registered) and option B (1x1 projections) for each depth."""
    plans = []
    for depth in sorted(depths):
        a, b = cifar_spec(depth, "A"), cifar_spec(depth, "B")
        plans.append(RunPlan(a.name, a, "v1 (post-activation), shortcut A"))
        plans.append(
            RunPlan(
                b.name,
                b,
                f"v1 (post-activation), shortcut B: 1x1 projections where the shape changes; "
                f"spec file specs/{b.name}.yaml",
            )
        )
    return plans


def _unique(plans: Sequence[RunPlan]) -> list[RunPlan]:
    """The plans with repeats (the same run needed by two pairs) dropped."""
    seen: dict[str, RunPlan] = {}
    for plan in plans:
        if plan.label in seen:
            other = seen[plan.label]
            if (other.spec, other.changes) != (plan.spec, plan.changes):
                raise ExperimentError(
                    f"run {plan.label} is needed twice with different settings; "
                    f"use --pairs to run the comparisons one at a time"
                )
            continue
        seen[plan.label] = plan
    return list(seen.values())


def difference_line(a: RunSummary, b: RunSummary) -> str:
    """`b` minus `a` in training and test error, in percentage points."""
    train = float(percent(b.train_error)) - float(percent(a.train_error))
    test = float(percent(b.test_error)) - float(percent(a.test_error))
    return (
        f"{b.label} − {a.label}: train error {train:+.2f} points "
        f"({percent(b.train_error)}% vs {percent(a.train_error)}%), test error {test:+.2f} "
        f"points ({percent(b.test_error)}% vs {percent(a.test_error)}%)"
    )


@dataclass(frozen=True)
class ComparePlan:
    """Which comparisons to make and the runs each needs."""

    pairs: str
    depth: int
    shortcut_depths: tuple[int, ...]
    sections: tuple[tuple[str, tuple[RunPlan, ...]], ...]  # ("v1v2" | "shortcuts", its runs)

    @property
    def runs(self) -> list[RunPlan]:
        """Every run once, in order (a run needed by two pairs is trained once)."""
        return _unique([plan for _, section in self.sections for plan in section])

    @property
    def warms_up(self) -> bool:
        return self.depth >= WARMUP_FROM_DEPTH and self.pairs != "shortcuts"


def plan_compare(
    pairs: str = "all",
    depth: int | None = None,
    shortcut_depths: Sequence[int] | None = None,
    quick: bool = False,
) -> ComparePlan:
    """The comparisons of `pairs` with their defaults filled in; ExperimentError if unknown."""
    if pairs not in PAIRS:
        raise ExperimentError(
            f"invalid experiment setting 'pairs': got {pairs!r}; allowed values: "
            + ", ".join(PAIRS)
        )
    depth = depth or (QUICK_DEPTH if quick else DEFAULT_DEPTH)
    shortcut_depths = tuple(
        shortcut_depths or (QUICK_SHORTCUT_DEPTHS if quick else DEFAULT_SHORTCUT_DEPTHS)
    )
    sections: list[tuple[str, tuple[RunPlan, ...]]] = []
    if pairs in ("v1v2", "all"):
        sections.append(("v1v2", tuple(v1v2_plans(depth))))
    if pairs in ("shortcuts", "all"):
        sections.append(("shortcuts", tuple(shortcut_plans(shortcut_depths))))
    return ComparePlan(pairs, depth, shortcut_depths, tuple(sections))


def run_compare(
    pairs: str = "all",
    depth: int | None = None,
    shortcut_depths: Sequence[int] | None = None,
    data: str | None = None,
    epochs: int | None = None,
    subset: int | None = None,
    out_dir: str | Path = "runs/experiments",
    name: str | None = None,
    quick: bool = False,
    overwrite: bool = False,
    data_dir: str | None = None,
    progress: Progress | None = None,
) -> ExperimentResult:
    """Train the runs of the chosen pairs (resuming what exists), plot and report.

    Defaults: all pairs at depth 56 and shortcut depths 20 and 56 on 30,000 Fashion-MNIST
    images x 10 epochs (~44 min on 2 CPU cores, see the module docstring). `quick`: synthetic
    data, depth 14 and shortcut depths 8 and 14, 256 images x 2 epochs (seconds).
    """
    plan = plan_compare(pairs, depth, shortcut_depths, quick)
    plans = plan.runs
    base = recipe(data, subset, epochs, quick, data_dir)
    folder = experiment_folder(out_dir, name, "compare", base.data)
    prepare_experiment_folder(folder)
    statuses = run_plans(plans, base, folder, overwrite, progress)  # run
    runs = summarise_runs(folder, plans, statuses)  # summarise
    summary = summarise_compare(plan, runs, base, folder, _command(plan, base, folder, quick))
    return write_report(summary, compare_markdown(summary))  # render


def summarise_compare(
    plan: ComparePlan,
    runs: Sequence[RunSummary],
    base: TrainConfig,
    folder: Path,
    command: str,
) -> ExperimentSummary:
    """Each comparison's runs, curves and differences, as plain data."""
    by_label = {r.label: r for r in runs}
    sections = tuple(
        _section(kind, tuple(by_label[p.label] for p in section), plan.depth)
        for kind, section in plan.sections
    )
    notes = ()
    if plan.warms_up:
        notes = (
            f"Depth {plan.depth} (>= {WARMUP_FROM_DEPTH}): both v1v2 runs warm up linearly over "
            f"the first epoch from lr 0.01 (He et al. 2015 warm ResNet-110 up at 0.01).",
        )
    return ExperimentSummary(
        kind="compare",
        folder=folder,
        recipe=base,
        runs=tuple(runs),
        sections=sections,
        verdict=tuple(line for section in sections for line in section.findings),
        command=command,
        notes=notes,
        results={"pairs": plan.pairs},
    )


def _section(kind: str, runs: tuple[RunSummary, ...], depth: int) -> Section:
    """v1v2: one panel and one difference; shortcuts: a panel and a difference per depth."""
    if kind == "v1v2":
        title = f"v1 vs v2 (pre-activation) at depth {depth}"
        curves = tuple(load_curves(r.run_dir, r.label, "epoch") for r in runs)
        return Section(kind, title, runs, ((title, curves),), "epoch", (difference_line(*runs),))
    panels, found = [], []
    for a, b in zip(runs[::2], runs[1::2], strict=True):
        curves = (
            load_curves(a.run_dir, "shortcut A", "epoch"),
            load_curves(b.run_dir, "shortcut B", "epoch"),
        )
        panels.append((f"{a.label}: shortcut A vs B", curves))
        found.append(difference_line(a, b))
    title = "shortcut A (zero-padding) vs B (projection)"
    return Section(kind, title, runs, tuple(panels), "epoch", tuple(found))


def _command(plan: ComparePlan, base: TrainConfig, folder: Path, quick: bool) -> str:
    parts = [
        "resnetkit experiment compare",
        f"--pairs {plan.pairs}",
        f"--depth {plan.depth}",
        "--shortcut-depths " + " ".join(str(d) for d in plan.shortcut_depths),
        f"--data {base.data}",
        f"--epochs {base.epochs}",
    ]
    if base.subset:
        parts.append(f"--subset {base.subset}")
    if base.data_dir:
        parts.append(f"--data-dir {base.data_dir}")
    parts.append(f"--out-dir {folder.parent} --name {folder.name}")
    if quick:
        parts.append("--quick")
    return " ".join(parts)
