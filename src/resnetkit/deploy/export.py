"""Export a model to ONNX or TorchScript, optionally with BatchNorm folded into the convolutions,
and check that the exported file computes the same logits as PyTorch.

ONNX goes through `torch.onnx.export(..., dynamo=False)` (the TorchScript-based exporter): with
torch 2.13 it still works and needs only the `onnx` package, whereas the dynamo-based exporter
also needs `onnxscript`. TorchScript files are made with `torch.jit.trace`. Both APIs are
deprecated in torch 2.13 but not yet removed; `check_parity` is what tells us they still work.

Metadata (class names, input mean/std, image size, pretrained_cfg, the spec as JSON) travels
inside the file:
in ONNX's `metadata_props`, and in a TorchScript archive as the extra file `resnetkit.json`.
Values are strings, JSON-encoded where they are not, with the same keys as a checkpoint's
safetensors metadata, so `predict` reads either with the same code.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..core.fileio import atomic_path
from ..models.fold import fold_bn, fold_pairs  # noqa: F401  (fold_pairs: the old path)
from ..weights.checkpoint import LoadedModel, as_loaded, checkpoint_file
from .predict import input_side

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
EXPORT_FORMAT = "resnetkit-export-v1"
ONNX_INPUT, ONNX_OUTPUT = "input", "logits"
TORCHSCRIPT_METADATA = "resnetkit.json"  # name of the extra file in the TorchScript archive


class ExportError(ValueError):
    """An export that failed or does not match PyTorch; the message says which file and why."""


@dataclass(frozen=True)
class ExportReport:
    """What `export_checkpoint` wrote and how closely it matches PyTorch."""

    path: Path
    format: str
    max_abs_diff: float  # largest |logit| difference vs the checkpoint's model in PyTorch
    folded: bool
    dynamic_batch: bool
    input_shape: tuple[int, int, int, int]
    tolerance: float
    opset: int | None  # None for TorchScript


_fold_bn = fold_bn  # export_checkpoint's `fold_bn` flag shadows the function's name


# -- writing ----------------------------------------------------------------------------------


def export_metadata(loaded: LoadedModel, folded: bool = False) -> dict[str, str]:
    """What `predict` needs to use an exported file alone, as strings (JSON where needed)."""
    return _as_strings(
        {
            "format": EXPORT_FORMAT,
            "class_names": list(loaded.class_names),
            "mean": list(loaded.mean),
            "std": list(loaded.std),
            "image_size": list(input_side(loaded)),
            "spec": loaded.model.spec.to_json(),
            "bn_folded": folded,
            "pretrained_cfg": loaded.pretrained_cfg,
        }
    )


def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_shape: Sequence[int],
    dynamic_batch: bool = False,
    metadata: Mapping[str, Any] | None = None,
    opset: int = 17,
) -> Path:
    """Write `model` (traced in eval mode at `input_shape`) as ONNX with input "input" and
    output "logits"; `metadata` goes into metadata_props. The batch axis is symbolic if
    `dynamic_batch`."""
    path = Path(path)
    with atomic_path(path) as tmp:
        _write_onnx(model, tmp, input_shape, dynamic_batch, metadata, opset)
    return path


def export_torchscript(
    model: nn.Module,
    path: str | Path,
    input_shape: Sequence[int],
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write `model` traced in eval mode at `input_shape` as TorchScript; `metadata` goes into
    the archive's extra file `resnetkit.json`. Traced ResNets accept any batch size."""
    path = Path(path)
    with atomic_path(path) as tmp:
        _write_torchscript(model, tmp, input_shape, metadata)
    return path


def _write_onnx(
    model: nn.Module,
    path: Path,
    input_shape: Sequence[int],
    dynamic_batch: bool,
    metadata: Mapping[str, Any] | None,
    opset: int,
) -> None:
    onnx = _require("onnx")
    example = _example_input(model, input_shape)
    dynamic_axes = {ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}} if dynamic_batch else None
    with _eval_mode(model), _quiet_tracing():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    for key, value in _as_strings(metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _write_torchscript(
    model: nn.Module, path: Path, input_shape: Sequence[int], metadata: Mapping[str, Any] | None
) -> None:
    example = _example_input(model, input_shape)
    with _eval_mode(model), _quiet_tracing(), torch.no_grad():
        traced = torch.jit.trace(model, example)
        extra = {TORCHSCRIPT_METADATA: json.dumps(_as_strings(metadata or {}))}
        torch.jit.save(traced, str(path), _extra_files=extra)


def read_export_metadata(path: str | Path, format: str | None = None) -> dict[str, str]:
    """The metadata of an exported file; the format defaults to the suffix (.onnx or not)."""
    path = Path(path)
    format = format or _format_of(path)
    _check_format(format)
    if format == "onnx":
        proto = _require("onnx").load(str(path), load_external_data=False)
        return {entry.key: entry.value for entry in proto.metadata_props}
    extra = {TORCHSCRIPT_METADATA: ""}
    with _quiet_tracing():
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[TORCHSCRIPT_METADATA] or "{}")


# -- parity -----------------------------------------------------------------------------------


def check_parity(
    model: nn.Module, exported_path: str | Path, format: str, inputs: torch.Tensor
) -> float:
    """Largest absolute logit difference between the exported file and `model` in eval mode on
    the batch `inputs` (ONNX through ONNX Runtime on the CPU, TorchScript through torch.jit)."""
    _check_format(format)
    with _eval_mode(model), torch.no_grad():
        expected = model(inputs).float().cpu()
    batch = inputs.detach().float().cpu()
    if format == "onnx":
        ort = _require("onnxruntime")
        try:
            session = ort.InferenceSession(str(exported_path), providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            actual = torch.from_numpy(session.run(None, {name: batch.numpy()})[0])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ExportError(f"ONNX Runtime cannot run {exported_path}: {exc}") from None
    else:
        with _quiet_tracing(), torch.no_grad():
            actual = torch.jit.load(str(exported_path), map_location="cpu")(batch)
    if actual.shape != expected.shape:
        raise ExportError(
            f"{exported_path} returns shape {list(actual.shape)}, PyTorch {list(expected.shape)}"
        )
    return float((actual.float() - expected).abs().max())


def export_checkpoint(
    checkpoint: str | Path | LoadedModel,
    format: str,
    out: str | Path,
    fold_bn: bool = False,
    dynamic_batch: bool = False,
    tolerance: float = 1e-4,
    batch_size: int = 4,
    opset: int = 17,
    overwrite: bool = False,
) -> ExportReport:
    """Export a run folder's best checkpoint (or a .safetensors file, or a `LoadedModel` such as
    named weights) and check it against that model in PyTorch. If the logits differ by more
    than `tolerance`, raise ExportError and leave nothing at `out` (an older file there is
    kept). An existing `out` is replaced only with `overwrite`, and never when it is the
    checkpoint itself."""
    _check_format(format)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not tolerance >= 0 or tolerance == float("inf"):
        raise ExportError(f"invalid tolerance {tolerance!r}: expected a finite number >= 0")
    named = isinstance(checkpoint, LoadedModel)
    check_output(Path(out), None if named else checkpoint_file(checkpoint), overwrite)
    loaded = as_loaded(checkpoint)
    reference = loaded.model
    model = _fold_bn(reference) if fold_bn else reference
    shape = (batch_size, reference.spec.in_chans, *input_side(loaded))
    metadata = export_metadata(loaded, folded=fold_bn)
    out = Path(out)
    # Written under a temporary name and checked there, so a bad export never gets the real name.
    with atomic_path(out) as tmp:
        if format == "onnx":
            _write_onnx(model, tmp, shape, dynamic_batch, metadata, opset)
        else:
            _write_torchscript(model, tmp, shape, metadata)
        # A second, larger batch shows that the batch axis really is dynamic.
        sizes = (batch_size, batch_size + 1) if dynamic_batch else (batch_size,)
        generator = torch.Generator().manual_seed(0)
        diff = max(
            check_parity(reference, tmp, format, torch.randn((n, *shape[1:]), generator=generator))
            for n in sizes
        )
        if not diff <= tolerance:  # also catches NaN
            raise ExportError(
                f"the exported {format} model differs from PyTorch by {diff:.3g} (max abs "
                f"logit), more than the tolerance {tolerance:g}; {out} was not written"
            )
    return ExportReport(
        path=out,
        format=format,
        max_abs_diff=diff,
        folded=fold_bn,
        dynamic_batch=dynamic_batch,
        input_shape=shape,
        tolerance=tolerance,
        opset=opset if format == "onnx" else None,
    )


# -- helpers ----------------------------------------------------------------------------------


def check_output(out: Path, source: Path | None, overwrite: bool) -> None:
    """ExportError unless `out` may be written: not a folder, not the checkpoint being read
    (`source`, even with `overwrite`), and not an existing file without `overwrite`."""
    if out.is_dir():
        raise ExportError(f"output {out} is a folder; give a file name, e.g. {out}/model.onnx")
    same = source is not None and out.resolve() == source.resolve()
    if out.exists() and source is not None:
        same = same or os.path.samefile(out, source)
    if same:
        raise ExportError(f"output {out} is the checkpoint being exported; choose another name")
    if out.exists() and not overwrite:
        raise ExportError(f"output {out} already exists; pass --overwrite to replace it")


def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; allowed: {', '.join(FORMATS)}")


def _format_of(path: Path) -> str:
    return "onnx" if path.suffix.lower() == ".onnx" else "torchscript"


def _as_strings(metadata: Mapping[str, Any]) -> dict[str, str]:
    # The rule of save_weights: strings as they are, everything else as JSON.
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


def _example_input(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    shape = tuple(input_shape)
    if len(shape) != 4:
        raise ValueError(f"input_shape must be (N, C, H, W), got {list(shape)}")
    device = next(iter(model.parameters()), torch.empty(0)).device
    return torch.randn(shape, device=device)


def _require(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ExportError(
            f"ONNX export needs the {name} package: pip install 'resnetkit[export]'"
        ) from None


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Run in eval mode (BN uses its running statistics), then restore the caller's mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Hide warnings the user cannot act on: the input checks in `ResNet.check_input` become
    constants of the trace (only the batch axis may vary, and it is not checked), shortcut A's
    strided slice is not constant-folded, and torch 2.13 deprecates the TorchScript APIs we
    use on purpose (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r"Constant folding - Only steps=1")
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+` is deprecated")
        warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript-based")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\.")
        yield
