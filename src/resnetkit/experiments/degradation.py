"""The degradation experiment of He et al. 2015 (Fig. 6): deeper plain nets train worse,
deeper residual nets do not.

For each depth, `plainN` and `resnetN` are trained with the same recipe and budget
(`runs.recipe`) by the ordinary trainer, one run folder each. Default budget: the first
30,000 Fashion-MNIST training images for 10 epochs (2,350 iterations of batch 128), depths 20
and 56. Estimated (not measured) wall time on a 2-core CPU, from ~1,000-1,800 img/s for
resnet20 (28x28, bf16) and a third of that for the 56-layer nets: each run trains on 300,000
images, so the 20-layer runs take ~3.6 min and the 56-layer runs ~11 min at 1,400 img/s, plus
10 test-set evaluations each (~3 min in all): about 32 minutes for the four runs (25 at
1,800 img/s, 44 at 1,000). docs/experiments.md has room for the measured figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..training.config import TrainConfig
from ..training.progress import Progress
from .render import degradation_markdown, write_report
from .runs import (
    ExperimentError,
    RunPlan,
    cifar_spec,
    experiment_folder,
    prepare_experiment_folder,
    recipe,
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

DEFAULT_DEPTHS = (20, 56)
QUICK_DEPTHS = (8, 14)


def degradation_verdict(plain: dict[int, float], residual: dict[int, float]) -> tuple[str, str]:
    """Two verdict lines from the final training errors (fractions) by depth, comparing the
    deepest with the shallowest depth at the report's precision (two decimals of a percent)."""
    shallow, deep = min(plain), max(plain)
    if shallow == deep:
        return (
            "one depth only: no degradation verdict (give two depths)",
            "one depth only: no verdict on residuals",
        )
    p_shallow, p_deep = percent(plain[shallow]), percent(plain[deep])
    r_shallow, r_deep = percent(residual[shallow]), percent(residual[deep])
    if float(p_deep) > float(p_shallow):
        first = (
            f"plain{deep} has higher training error than plain{shallow} "
            f"({p_deep}% vs {p_shallow}%): degradation reproduced"
        )
    else:
        first = (
            f"plain{deep} does not have higher training error than plain{shallow} "
            f"({p_deep}% vs {p_shallow}%): degradation not reproduced"
        )
    if float(r_deep) <= float(r_shallow):
        second = (
            f"resnet{deep} ≤ resnet{shallow} training error "
            f"({r_deep}% vs {r_shallow}%): residuals fix it"
        )
    else:
        second = (
            f"resnet{deep} > resnet{shallow} training error "
            f"({r_deep}% vs {r_shallow}%): residuals do not fix it here"
        )
    return first, second


def degradation_plans(depths: Sequence[int]) -> list[RunPlan]:
    """plainN then resnetN for each depth (option A shortcuts, as in He et al. Fig. 6)."""
    if not depths:
        raise ExperimentError("invalid experiment setting 'depths': give at least one depth")
    if len(set(depths)) != len(depths):
        raise ExperimentError(f"invalid experiment setting 'depths': got {list(depths)}; repeats")
    plans = [RunPlan(f"plain{d}", cifar_spec(d, "none")) for d in sorted(depths)]
    plans += [RunPlan(f"resnet{d}", cifar_spec(d, "A")) for d in sorted(depths)]
    return plans


def run_degradation(
    data: str | None = None,
    depths: Sequence[int] | None = None,
    epochs: int | None = None,
    subset: int | None = None,
    out_dir: str | Path = "runs/experiments",
    name: str | None = None,
    quick: bool = False,
    overwrite: bool = False,
    data_dir: str | None = None,
    progress: Progress | None = None,
) -> ExperimentResult:
    """Train plainN and resnetN for each depth (resuming what exists), plot and report.

    Defaults: Fashion-MNIST, depths 20 and 56, 30,000 images x 10 epochs (~32 min on 2 CPU
    cores, see the module docstring). `quick`: synthetic data, depths 8 and 14, 256 images x
    2 epochs (seconds). The folder is `out_dir/name` (default `degradation-<data>`).
    """
    depths = tuple(depths or (QUICK_DEPTHS if quick else DEFAULT_DEPTHS))
    plans = degradation_plans(depths)  # plan
    base = recipe(data, subset, epochs, quick, data_dir)
    folder = experiment_folder(out_dir, name, "degradation", base.data)
    prepare_experiment_folder(folder)
    statuses = run_plans(plans, base, folder, overwrite, progress)  # run
    runs = summarise_runs(folder, plans, statuses)  # summarise
    command = _command(base, depths, folder, quick)
    summary = summarise_degradation(runs, depths, base, folder, command)
    return write_report(summary, degradation_markdown(summary))  # render


def summarise_degradation(
    runs: Sequence[RunSummary],
    depths: Sequence[int],
    base: TrainConfig,
    folder: Path,
    command: str,
) -> ExperimentSummary:
    """The verdict and the curves of plain vs residual nets, as plain data."""
    by_label = {r.label: r for r in runs}
    verdict = degradation_verdict(
        {d: by_label[f"plain{d}"].train_error for d in depths},
        {d: by_label[f"resnet{d}"].train_error for d in depths},
    )
    plain = tuple(load_curves(by_label[f"plain{d}"].run_dir, f"plain-{d}") for d in sorted(depths))
    residual = tuple(
        load_curves(by_label[f"resnet{d}"].run_dir, f"ResNet-{d}") for d in sorted(depths)
    )
    section = Section(
        key="degradation",
        title=f"{base.data}: training error (dashed) and test error (solid)",
        runs=tuple(runs),
        panels=(("plain networks", plain), ("residual networks", residual)),
        unit="step",
        findings=verdict,
    )
    return ExperimentSummary(
        kind="degradation",
        folder=folder,
        recipe=base,
        runs=tuple(runs),
        sections=(section,),
        verdict=verdict,
        command=command,
        results={"verdict": verdict},
    )


def _command(base: TrainConfig, depths: Sequence[int], folder: Path, quick: bool) -> str:
    parts = ["resnetkit experiment degradation", f"--data {base.data}"]
    parts.append("--depths " + " ".join(str(d) for d in depths))
    parts.append(f"--epochs {base.epochs}")
    if base.subset:
        parts.append(f"--subset {base.subset}")
    if base.data_dir:
        parts.append(f"--data-dir {base.data_dir}")
    parts.append(f"--out-dir {folder.parent} --name {folder.name}")
    if quick:
        parts.append("--quick")
    return " ".join(parts)
