"""Gradient flow: per-layer gradient norms and residual-unit activation statistics, at
initialization and after a few SGD steps, for any number of models side by side.

`gradient_flow(model, batches, steps)` is the library function; its `GradientReport` is plain
data (`summarise`). `inspect_gradients` builds the models, feeds them the same batches and has
`render` write a report, a JSON file and two plots.
Default `resnetkit inspect gradients plain56 resnet56`: Fashion-MNIST, batch 128, 100 SGD
steps in fp32; estimated (not measured) at about 1-2 minutes on a 2-core CPU.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.fileio import slug
from ..data import load_dataset, make_loader
from ..models.registry import resolve_spec
from ..models.summary import count_params
from ..weights.factory import create_model
from .render import write_gradient_report
from .runs import ExperimentError
from .summarise import GradientReport, Snapshot

__all__ = ["GradientReport", "InspectResult", "Snapshot", "gradient_flow", "inspect_gradients"]

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]

DEFAULT_STEPS = 100
DEFAULT_BATCH_SIZE = 128
QUICK_STEPS = 3
QUICK_BATCH_SIZE = 16


def _units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The residual units of a resnetkit model (its blocks); none for other modules."""
    if not hasattr(model, "stages") or not hasattr(model, "stage_names"):
        return []
    return [
        (f"{name}.{index}", unit)
        for name, stage in zip(model.stage_names, model.stages(), strict=True)
        for index, unit in enumerate(stage)
    ]


def _snapshot(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, order: list[str] | None
) -> tuple[Snapshot, list[str]]:
    """One forward/backward pass on the probe batch, recording what the hooks see; returns the
    snapshot and the conv/linear weights in the order the forward pass used them."""
    names = {module: name for name, module in model.named_modules()}
    called: list[str] = []
    stats: list[tuple[float, float]] = []
    handles = []

    def record_call(module: nn.Module, _inputs: Any, _output: Any) -> None:
        name = f"{names[module]}.weight" if names[module] else "weight"
        if name not in called:
            called.append(name)

    def record_unit(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        out = output.detach().float()
        stats.append((out.mean().item(), out.std().item()))

    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(record_call))
    for _, unit in _units(model):
        handles.append(unit.register_forward_hook(record_unit))
    model.train()
    model.zero_grad(set_to_none=True)
    try:
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    order = order or called
    params = dict(model.named_parameters())
    norms = []
    for name in order:
        grad = params[name].grad
        norms.append(0.0 if grad is None else grad.detach().float().norm().item())
    model.zero_grad(set_to_none=True)
    snapshot = Snapshot(
        loss=loss.item(),
        grad_norms=tuple(norms),
        act_mean=tuple(m for m, _ in stats),
        act_std=tuple(s for _, s in stats),
    )
    return snapshot, order


def _endless(batches: Iterable[Batch]) -> Iterator[Batch]:
    """Batches from `batches`, starting over when it runs out (if it can be iterated again:
    a list or a loader; a loader then runs its next epoch)."""
    while True:
        iterator = iter(batches)
        first = next(iterator, None)
        if first is None:
            raise ValueError("gradient_flow needs at least one batch")
        yield first
        yield from iterator
        if isinstance(batches, Iterator):  # a one-shot iterator cannot start over
            raise ValueError("gradient_flow ran out of batches; pass steps + 1 batches or more")


def gradient_flow(
    model: nn.Module,
    batches: Iterable[Batch],
    steps: int = DEFAULT_STEPS,
    lr: float = 0.1,
    momentum: float = 0.0,
    name: str = "",
) -> GradientReport:
    """Per-layer gradient norms and residual-unit output statistics at initialization and
    after `steps` steps of plain SGD (no weight decay, no schedule; `momentum` 0 by default).

    The first batch is the probe: both snapshots measure it, in training mode, so they are
    comparable; the following batches train. Modifies `model` (it is trained).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    stream = _endless(batches)
    images, labels = next(stream)
    init, order = _snapshot(model, images, labels, None)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    losses = []
    model.train()
    for _ in range(steps):
        x, y = next(stream)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    trained, _ = _snapshot(model, images, labels, order)
    spec = getattr(model, "spec", None)
    return GradientReport(
        model=name or (spec.name if spec is not None and spec.name else type(model).__name__),
        layers=tuple(order),
        units=tuple(unit for unit, _ in _units(model)),
        init=init,
        trained=trained,
        steps=steps,
        losses=tuple(losses),
        params=count_params(model),
        lr=lr,
        momentum=momentum,
    )


# -- the command: plan, measure, render ------------------------------------------------------------


@dataclass(frozen=True)
class InspectResult:
    """Where the gradient report is, and its numbers."""

    folder: Path
    report: Path
    json: Path
    figures: tuple[Path, ...]
    reports: tuple[GradientReport, ...]


def inspect_gradients(
    models: Sequence[str],
    data: str | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    out: str | Path | None = None,
    quick: bool = False,
    lr: float = 0.1,
    momentum: float = 0.0,
    seed: int = 0,
    data_dir: str | None = None,
    overwrite: bool = False,
) -> InspectResult:
    """Run `gradient_flow` on each model (registered name or spec file) with the same seed
    and batches, then write report.md, gradients.json, gradients.png and activations.png.

    Defaults: Fashion-MNIST, batch 128, 100 steps. `quick`: synthetic 16x16 data, batch 16,
    3 steps. The folder `out` (default runs/inspect/gradients-<models>) is created; its four
    files are replaced only with `overwrite`.
    """
    data = data or ("synthetic" if quick else "fashion-mnist")
    steps = (QUICK_STEPS if quick else DEFAULT_STEPS) if steps is None else steps
    if batch_size is None:
        batch_size = QUICK_BATCH_SIZE if quick else DEFAULT_BATCH_SIZE
    _check_settings(models, steps, batch_size, lr, momentum, seed)
    if out is not None:
        check_report_folder(Path(out), overwrite)
    size = (16, 16) if quick and data == "synthetic" else None
    train = load_dataset(data, "train", data_dir=data_dir, image_size=size, seed=seed)
    if batch_size > len(train):
        raise ExperimentError(
            f"invalid experiment setting 'batch_size': {batch_size} is more than the "
            f"{len(train)} training images"
        )
    reports = [
        _measure(name, train, data, batch_size, steps, lr, momentum, seed) for name in models
    ]
    default = Path("runs/inspect") / f"gradients-{slug('-'.join(r.model for r in reports))}"
    folder = Path(out) if out is not None else default
    check_report_folder(folder, overwrite)
    report, json_path, figures = write_gradient_report(folder, reports, data, batch_size, seed)
    return InspectResult(folder, report, json_path, figures, tuple(reports))


def _check_settings(
    models: Sequence[str], steps: int, batch_size: int, lr: float, momentum: float, seed: int
) -> None:
    """ExperimentError naming the first setting that cannot work."""
    if not models:
        raise ExperimentError("invalid experiment setting 'models': give at least one model")
    if steps < 0 or batch_size < 1:
        raise ExperimentError(
            f"invalid experiment setting: steps must be >= 0 and batch size >= 1, got "
            f"{steps} and {batch_size}"
        )
    for name, value in (("lr", lr), ("momentum", momentum)):
        if not (math.isfinite(value) and value >= 0):
            raise ExperimentError(
                f"invalid experiment setting '{name}': got {value!r}; expected a finite number >= 0"
            )
    if not 0 <= seed < 2**63:
        raise ExperimentError(
            f"invalid experiment setting 'seed': got {seed}; expected 0 to 2**63-1"
        )


def _measure(
    model_name: str,
    train: Any,
    data: str,
    batch_size: int,
    steps: int,
    lr: float,
    momentum: float,
    seed: int,
) -> GradientReport:
    """`gradient_flow` of one model on `train`, from the shared seed and batch order."""
    info = train.info
    spec = resolve_spec(model_name, num_classes=info.num_classes, in_chans=info.in_chans)
    if min(info.image_size) < spec.min_input_size:
        raise ExperimentError(
            f"{model_name} needs images of at least {spec.min_input_size} pixels; "
            f"{data} has {info.image_size[0]}x{info.image_size[1]}"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)  # every model starts from the same random stream
    model = create_model(spec).to(device)
    loader = make_loader(train, batch_size, device, shuffle=True, seed=seed, drop_last=True)
    is_file = str(model_name).endswith((".yaml", ".yml", ".json"))
    label = Path(model_name).stem if is_file else str(model_name)
    log.info("%s: %d steps of SGD, batch %d", label, steps, batch_size)
    return gradient_flow(model, loader, steps, lr, momentum, name=label)


REPORT_FILES = ("report.md", "report.html", "gradients.json", "gradients.png", "activations.png")


def check_report_folder(folder: Path, overwrite: bool) -> None:
    """ExperimentError if `folder` is a file, or already holds a report and not `overwrite`."""
    if folder.exists() and not folder.is_dir():
        raise ExperimentError(f"output {folder} exists and is not a folder; choose another --out")
    existing = [name for name in REPORT_FILES if (folder / name).exists()]
    if existing and not overwrite:
        raise ExperimentError(
            f"{folder} already holds a report ({', '.join(existing)}); pass --overwrite to "
            f"replace it or choose another --out"
        )
