"""A Keras-style summary table: layer, output shape, parameters and MACs, with totals.

MACs come from PyTorch's own FLOP counter (`torch.utils.flop_counter`), halved: one
multiply-accumulate is two FLOPs. Like torchvision's published "GFLOPS", only convolutions and
matrix products are counted; BatchNorm, ReLU, pooling and additions are not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .resnet import ResNet
from .spec import ResNetSpec


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class ModelSummary:
    """The table `summary` returns; `str()` (and the REPL) render it."""

    title: str
    input_shape: tuple[int, ...]
    rows: tuple[LayerRow, ...]
    total_params: int
    trainable_params: int
    total_macs: int

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    def to_text(self) -> str:
        header = ("Layer (type)", "Output shape", "Param #", "MACs")
        body = [
            (f"{r.name} ({r.kind})", _shape(r.output_shape), f"{r.params:,}", format_si(r.macs))
            for r in self.rows
        ]
        widths = [max(len(line[i]) for line in [header, *body]) for i in range(4)]

        def fmt(cells: Sequence[str]) -> str:
            left = f"{cells[0]:<{widths[0]}}  {cells[1]:<{widths[1]}}"
            return f"{left}  {cells[2]:>{widths[2]}}  {cells[3]:>{widths[3]}}"

        rule = "=" * len(fmt(header))
        lines = [f'Model: "{self.title}"', rule, fmt(header), rule]
        lines += [fmt(cells) for cells in body]
        params_mb = self.total_params * 4 / 2**20
        lines += [
            rule,
            f"Input shape: {_shape(self.input_shape)}",
            f"Total params: {self.total_params:,} ({params_mb:.2f} MB as fp32)",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.non_trainable_params:,}",
            f"Total MACs: {self.total_macs:,} ({format_si(self.total_macs)})",
            rule,
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return self.to_text()


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def format_si(value: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f}{unit}"
    return str(int(value))


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _input_for(model: nn.Module, input_size: Sequence[int], batch_size: int) -> torch.Tensor:
    if len(input_size) != 3:
        raise ValueError(f"input_size must be (channels, height, width), got {tuple(input_size)}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    return torch.zeros(batch_size, *input_size, device=device, dtype=dtype)


def count_macs(
    model_or_spec: nn.Module | ResNetSpec, input_size: Sequence[int] | None = None
) -> int:
    """Forward multiply-accumulates for one image, from PyTorch's FLOP counter.

    A spec is built on the meta device, so no memory is allocated and no weights initialised.
    """
    if isinstance(model_or_spec, ResNetSpec):
        spec = model_or_spec
        with torch.device("meta"):
            model: nn.Module = ResNet(spec)
    else:
        model = model_or_spec
        spec = getattr(model, "spec", None)
    if input_size is None:
        if spec is None:
            raise ValueError("input_size is required for a model without a spec")
        input_size = (spec.in_chans, spec.default_input_size, spec.default_input_size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(_input_for(model, input_size, 1))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def summary(
    model: nn.Module,
    input_size: Sequence[int] | None = None,
    batch_size: int = 1,
    depth: int = 2,
    title: str | None = None,
) -> ModelSummary:
    """Run one forward pass and tabulate every module at `depth` (1 = stages, 2 = blocks).

    `input_size` is (channels, height, width); by default the model's native input size.
    """
    spec = getattr(model, "spec", None)
    if input_size is None:
        if spec is None:
            raise ValueError("input_size is required for a model without a spec")
        input_size = (spec.in_chans, spec.default_input_size, spec.default_input_size)
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    x = _input_for(model, input_size, batch_size)
    calls, counter = _traced_forward(model, _modules_at_depth(model, depth), x)
    return ModelSummary(
        title=title or (spec.name if spec is not None and spec.name else type(model).__name__),
        input_shape=tuple(x.shape),
        rows=_rows(calls, counter.get_flop_counts(), type(model).__name__, batch_size),
        total_params=count_params(model),
        trainable_params=count_params(model, trainable_only=True),
        total_macs=counter.get_total_flops() // 2 // batch_size,
    )


Call = tuple[str, nn.Module, tuple[int, ...]]  # a module's name, the module, its output shape


def _traced_forward(
    model: nn.Module, selected: list[tuple[str, nn.Module]], x: torch.Tensor
) -> tuple[list[Call], FlopCounterMode]:
    """One forward pass in eval mode, recording each selected module's calls in order, under
    the FLOP counter; the model's hooks and training mode are restored after."""
    calls: list[Call] = []

    def make_hook(name: str):
        def hook(module: nn.Module, _inputs, output) -> None:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else ()
            calls.append((name, module, shape))

        return hook

    handles = [module.register_forward_hook(make_hook(name)) for name, module in selected]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return calls, counter


def _rows(calls: list[Call], flops: dict, root: str, batch_size: int) -> tuple[LayerRow, ...]:
    """A row per call; a module called again (shared) counts its parameters and MACs once."""
    rows, seen = [], set()
    for name, module, shape in calls:
        first_call = id(module) not in seen
        seen.add(id(module))
        module_flops = sum(flops.get(f"{root}.{name}", {}).values()) if first_call else 0
        rows.append(
            LayerRow(
                name=name,
                kind=type(module).__name__,
                output_shape=shape,
                params=count_params(module) if first_call else 0,
                macs=module_flops // 2 // batch_size,
            )
        )
    return tuple(rows)


def _modules_at_depth(model: nn.Module, depth: int) -> list[tuple[str, nn.Module]]:
    """Modules at exactly `depth`, plus shallower leaves; containers of no work are skipped."""
    chosen = []
    for name, module in model.named_modules():
        if not name or isinstance(module, nn.Identity):
            continue
        level = name.count(".") + 1
        is_leaf = next(module.children(), None) is None
        if level == depth or (level < depth and is_leaf):
            chosen.append((name, module))
    return chosen
