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

import logging
from collections.abc import Sequence
from pathlib import Path

from ..config import TrainConfig
from ..explain.markdown_page import write_markdown_page
from ..progress import Progress, format_duration
from .plots import load_curves, plot_error_panels
from .runs import (
    ExperimentError,
    ExperimentResult,
    RunPlan,
    RunSummary,
    cifar_spec,
    describe_recipe,
    experiment_folder,
    markdown_table,
    percent,
    prepare_experiment_folder,
    recipe,
    registered_name,
    run_all,
    write_results_json,
)

log = logging.getLogger(__name__)

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
    if pairs not in PAIRS:
        raise ExperimentError(
            f"invalid experiment setting 'pairs': got {pairs!r}; allowed values: "
            + ", ".join(PAIRS)
        )
    depth = depth or (QUICK_DEPTH if quick else DEFAULT_DEPTH)
    shortcut_depths = tuple(
        shortcut_depths or (QUICK_SHORTCUT_DEPTHS if quick else DEFAULT_SHORTCUT_DEPTHS)
    )
    sections: list[tuple[str, list[RunPlan]]] = []
    if pairs in ("v1v2", "all"):
        sections.append(("v1v2", v1v2_plans(depth)))
    if pairs in ("shortcuts", "all"):
        sections.append(("shortcuts", shortcut_plans(shortcut_depths)))
    base = recipe(data, subset, epochs, quick, data_dir)
    folder = experiment_folder(out_dir, name, "compare", base.data)
    prepare_experiment_folder(folder)
    plans = _unique([plan for _, section in sections for plan in section])
    by_label = {r.label: r for r in run_all(plans, base, folder, overwrite, progress)}

    lines = ["# Equal-budget comparisons: v1 vs v2 units, shortcut A vs B", ""]
    figures: list[Path] = []
    verdict: list[str] = []
    for kind, section in sections:
        runs = [by_label[plan.label] for plan in section]
        if kind == "v1v2":
            title = f"v1 vs v2 (pre-activation) at depth {depth}"
            panels = [(title, [load_curves(r.run_dir, r.label, "epoch") for r in runs])]
            found = [difference_line(runs[0], runs[1])]
        else:
            title = "shortcut A (zero-padding) vs B (projection)"
            panels = []
            found = []
            for a, b in zip(runs[::2], runs[1::2], strict=True):
                curves = [
                    load_curves(a.run_dir, "shortcut A", "epoch"),
                    load_curves(b.run_dir, "shortcut B", "epoch"),
                ]
                panels.append((f"{a.label}: shortcut A vs B", curves))
                found.append(difference_line(a, b))
        figure = plot_error_panels(panels, folder / f"{kind}.png", unit="epoch", title=title)
        figures.append(figure)
        verdict += found
        lines += _section(title, figure.name, runs, found)
    lines += [
        "## How to read the numbers",
        "",
        "Every number is read from the runs' `metrics.jsonl`: train error = 1 - `train_acc` of "
        "the last epoch (running error over that epoch's augmented mini-batches, in training "
        "mode), test error = 1 - `test_acc` after the last epoch, best = the lowest test error "
        "of any epoch, wall time = `elapsed` (training and evaluation). Curves: training error "
        "dashed (per logging window, `train_steps.jsonl`), test error solid (per epoch).",
        "",
        describe_recipe(base),
        *(
            [
                "",
                f"Depth {depth} (>= {WARMUP_FROM_DEPTH}): both v1v2 runs warm up linearly over "
                f"the first epoch from lr 0.01 (He et al. 2015 warm ResNet-110 up at 0.01).",
            ]
            if depth >= WARMUP_FROM_DEPTH and pairs != "shortcuts"
            else []
        ),
        "",
        "Reproduce (re-running resumes and skips finished runs):",
        "",
        "```bash",
        _command(pairs, depth, shortcut_depths, base, folder, quick),
        "```",
        "",
    ]
    report = folder / "report.md"
    report.write_text("\n".join(lines))
    write_markdown_page(report)  # report.html: the same, plots side by side, self-contained
    log.info("report: %s", report)
    runs_in_order = [by_label[plan.label] for plan in plans]
    write_results_json(folder / "results.json", runs_in_order, experiment="compare", pairs=pairs)
    return ExperimentResult(folder, report, tuple(figures), tuple(runs_in_order), tuple(verdict))


def _section(
    title: str, figure: str, runs: Sequence[RunSummary], found: Sequence[str]
) -> list[str]:
    rows = [
        (
            r.label,
            r.note,
            f"{r.params:,}" if r.params else "n/a",
            percent(r.train_error),
            percent(r.test_error),
            percent(r.best_test_error),
            format_duration(r.wall_time),
            f"[runs/{r.label}](runs/{r.label}/report.md)",
        )
        for r in runs
    ]
    header = (
        "model",
        "what",
        "params",
        "train error (%)",
        "test error (%)",
        "best test error (%)",
        "wall time",
        "run",
    )
    return [
        f"## {title}",
        "",
        f"![{title}: training error (dashed) and test error (solid) vs epochs]({figure})",
        "",
        *markdown_table(header, rows),
        "",
        *(f"- {line}" for line in found),
        "",
    ]


def _command(
    pairs: str,
    depth: int,
    shortcut_depths: Sequence[int],
    base: TrainConfig,
    folder: Path,
    quick: bool,
) -> str:
    parts = [
        "resnetkit experiment compare",
        f"--pairs {pairs}",
        f"--depth {depth}",
        "--shortcut-depths " + " ".join(str(d) for d in shortcut_depths),
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
