"""Render: an experiment's summarised numbers as report.md, report.html, results.json and plots.

Every function here takes plain data (`ExperimentSummary`, `GradientReport`) and computes
nothing new; the numbers were fixed by `summarise`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..explain.markdown_page import write_markdown_page
from ..training.config import TrainConfig
from ..training.progress import format_duration
from .plots import plot_activations, plot_gradient_norms, plot_section
from .summarise import ExperimentResult, ExperimentSummary, GradientReport, RunSummary, percent

log = logging.getLogger(__name__)

REPRODUCE = "Reproduce (re-running resumes and skips finished runs):"
HOW_NUMBERS_ARE_READ = (
    "Every number is read from the runs' `metrics.jsonl`: train error = 1 - `train_acc` of the "
    "last epoch (running error over that epoch's augmented mini-batches, in training mode), "
    "test error = 1 - `test_acc` after the last epoch, best = the lowest test error of any "
    "epoch, wall time = `elapsed` (training and evaluation)."
)


# -- Markdown pieces -----------------------------------------------------------------------------


def describe_recipe(cfg: TrainConfig) -> str:
    """One Markdown paragraph stating the recipe of `cfg` (the same for every run)."""
    milestones = ", ".join(f"{m:g}" for m in cfg.milestones)
    warmup = f", linear warm-up over {cfg.warmup_epochs:g} epochs" if cfg.warmup_epochs else ""
    subset = f"the first {cfg.subset:,} training images" if cfg.subset else "all training images"
    return (
        f"Recipe (identical for every run): {cfg.data}, {subset}, {cfg.epochs} epochs, "
        f"batch {cfg.batch_size}; SGD lr {cfg.lr:g}, momentum {cfg.momentum:g}"
        f"{' (Nesterov)' if cfg.nesterov else ''}, weight decay {cfg.weight_decay:g}; "
        f"{cfg.schedule} schedule (x{cfg.gamma:g} at epochs {milestones}){warmup}; "
        f"label smoothing {cfg.label_smoothing:g}; augmentation: {cfg.crop_padding}-pixel crop "
        f"padding{', flips' if cfg.flip else ''}{f', cutout {cfg.cutout}' if cfg.cutout else ''}"
        f"; {cfg.precision}, seed {cfg.seed}."
    )


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table as lines; numbers right-aligned."""
    rows = [[str(cell) for cell in row] for row in rows]
    columns = list(zip(*rows, strict=True)) or [()] * len(header)
    align = ["---:" if column and _numeric(column) else "---" for column in columns]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _numeric(cells: Sequence[str]) -> bool:
    return all(re.fullmatch(r"-?[\d,]+(\.\d+)?|n/a", c) for c in cells)


# What each column of a runs table shows of a RunSummary.
_COLUMNS: dict[str, Callable[[RunSummary], Any]] = {
    "model": lambda r: r.label,
    "what": lambda r: r.note,
    "params": lambda r: f"{r.params:,}" if r.params else "n/a",
    "train error (%)": lambda r: percent(r.train_error),
    "test error (%)": lambda r: percent(r.test_error),
    "best test error (%)": lambda r: percent(r.best_test_error),
    "iterations": lambda r: r.steps,
    "wall time": lambda r: format_duration(r.wall_time),
    "run": lambda r: f"[runs/{r.label}](runs/{r.label}/report.md)",
}


def runs_table(runs: Sequence[RunSummary], columns: Sequence[str]) -> list[str]:
    """A Markdown table of runs, one row each, with the named columns of `_COLUMNS`."""
    return markdown_table(columns, [[_COLUMNS[c](r) for c in columns] for r in runs])


def _bullets(lines: Iterable[str]) -> list[str]:
    return [f"- {line}" for line in lines]


def _reproduce(summary: ExperimentSummary) -> list[str]:
    """The recipe, the plan's notes, and the command that reproduces the experiment."""
    lines = [describe_recipe(summary.recipe)]
    for note in summary.notes:
        lines += ["", note]
    return [*lines, "", REPRODUCE, "", "```bash", summary.command, "```", ""]


# -- the experiments' reports -------------------------------------------------------------------


def degradation_markdown(summary: ExperimentSummary) -> str:
    """report.md of the degradation experiment: verdict, plot, final numbers, recipe."""
    (section,) = summary.sections
    total = format_duration(sum(r.wall_time for r in summary.runs))
    columns = ("model", "params", "train error (%)", "test error (%)", "best test error (%)")
    columns += ("iterations", "wall time", "run")
    lines = [
        "# Degradation: plain vs residual networks (He et al. 2015, Fig. 6)",
        "",
        "## Verdict",
        "",
        *_bullets(summary.verdict),
        "",
        f"![training error (dashed) and test error (solid) vs iterations]({section.key}.png)",
        "",
        "Left: plain networks; right: residual networks (shortcut option A). Dashed: training "
        "error of the mini-batches of each logging window (`train_steps.jsonl`); solid: test "
        "error after each epoch (`metrics.jsonl`).",
        "",
        "## Final numbers",
        "",
        *runs_table(summary.runs, columns),
        "",
        f"Total training time: {total}. {HOW_NUMBERS_ARE_READ}",
        "",
    ]
    return "\n".join(lines + _reproduce(summary))


def compare_markdown(summary: ExperimentSummary) -> str:
    """report.md of the equal-budget comparisons: one section per pair kind, then the recipe."""
    columns = ("model", "what", "params", "train error (%)", "test error (%)")
    columns += ("best test error (%)", "wall time", "run")
    lines = ["# Equal-budget comparisons: v1 vs v2 units, shortcut A vs B", ""]
    for section in summary.sections:
        alt = f"{section.title}: training error (dashed) and test error (solid) vs epochs"
        lines += [f"## {section.title}", "", f"![{alt}]({section.key}.png)", ""]
        lines += [*runs_table(section.runs, columns), "", *_bullets(section.findings), ""]
    lines += [
        "## How to read the numbers",
        "",
        f"{HOW_NUMBERS_ARE_READ} Curves: training error dashed (per logging window, "
        "`train_steps.jsonl`), test error solid (per epoch).",
        "",
    ]
    return "\n".join(lines + _reproduce(summary))


def write_report(summary: ExperimentSummary, markdown: str) -> ExperimentResult:
    """The plots, report.md, report.html (the same, plots embedded) and results.json."""
    figures = tuple(plot_section(section, summary.folder) for section in summary.sections)
    report = summary.folder / "report.md"
    report.write_text(markdown)
    write_markdown_page(report)  # report.html: the same, plots side by side, self-contained
    log.info("report: %s", report)
    results = {"experiment": summary.kind, **summary.results}
    write_results_json(summary.folder / "results.json", summary.runs, **results)
    return ExperimentResult(summary.folder, report, figures, summary.runs, summary.verdict)


def write_results_json(path: Path, result_runs: Sequence[RunSummary], **extra: Any) -> Path:
    """The report's numbers as JSON, for scripts."""
    data = {**extra, "runs": [r.to_dict() for r in result_runs]}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


# -- gradient flow -------------------------------------------------------------------------------


def _g(value: float) -> str:
    return f"{value:.3g}"


def gradients_markdown(
    reports: Sequence[GradientReport], data: str, batch_size: int, seed: int
) -> str:
    """report.md of `inspect gradients`: the setting, the plots, a summary row per model and
    each model's per-layer and per-unit numbers."""
    lines = [
        "# Gradient flow: " + " vs ".join(r.model for r in reports),
        "",
        f"Data: {data}, batch {batch_size}, seed {seed}. Each model starts from the same "
        "random seed and sees the same batches. The first batch is the probe: gradient norms "
        "(of every conv/linear weight, in forward order) and the mean/std of every residual "
        "unit's output are measured on it in training mode, at initialization and after the "
        f"SGD steps (lr {reports[0].lr:g}, momentum {reports[0].momentum:g}, no weight decay). "
        "All numbers are in `gradients.json`.",
        "",
        "![gradient norm per layer](gradients.png)",
        "",
        "![residual unit output std](activations.png)",
        "",
        "| model | params | layers | loss at init | loss after | first/last grad norm at "
        "init | after | min grad norm at init | max at init |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in reports:
        ratio_init, ratio_after = r.first_to_last_ratio
        lines.append(
            f"| {r.model} | {r.params:,} | {len(r.layers)} | {r.init.loss:.4f} | "
            f"{r.trained.loss:.4f} | {_g(ratio_init)} | {_g(ratio_after)} | "
            f"{_g(min(r.init.grad_norms))} | {_g(max(r.init.grad_norms))} |"
        )
    lines.append("")
    for r in reports:
        lines += _gradient_details(r)
    return "\n".join(lines)


def _gradient_details(r: GradientReport) -> list[str]:
    """A collapsed block with one model's numbers per layer and per residual unit."""
    layers = zip(r.layers, r.init.grad_norms, r.trained.grad_norms, strict=True)
    units = zip(
        r.units, r.init.act_mean, r.init.act_std, r.trained.act_mean, r.trained.act_std, strict=True
    )
    return [
        f"<details><summary>{r.model}: per layer and per unit</summary>",
        "",
        "| # | layer | grad norm at init | after |",
        "| ---: | --- | ---: | ---: |",
        *(f"| {i} | {name} | {_g(a)} | {_g(b)} |" for i, (name, a, b) in enumerate(layers, 1)),
        "",
        "| # | unit | mean at init | std at init | mean after | std after |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {i} | {unit} | {_g(m0)} | {_g(s0)} | {_g(m1)} | {_g(s1)} |"
            for i, (unit, m0, s0, m1, s1) in enumerate(units, 1)
        ),
        "",
        "</details>",
        "",
    ]


def write_gradient_report(
    folder: Path, reports: Sequence[GradientReport], data: str, batch_size: int, seed: int
) -> tuple[Path, Path, tuple[Path, ...]]:
    """gradients.json, the two plots, report.md and report.html in `folder`; returns the
    report, the JSON file and the plots."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "gradients.json"
    payload = {
        "data": data,
        "batch_size": batch_size,
        "seed": seed,
        "models": [r.to_dict() for r in reports],
    }
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    figures = (
        plot_gradient_norms(reports, folder / "gradients.png"),
        plot_activations(reports, folder / "activations.png"),
    )
    report = folder / "report.md"
    report.write_text(gradients_markdown(reports, data, batch_size, seed))
    write_markdown_page(report)  # report.html: the same, plots embedded, self-contained
    return report, json_path, figures
