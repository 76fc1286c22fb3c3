"""Reading and writing weights: safetensors first, `.pth` only through `weights_only=True`.

Our v1 ImageNet models use torchvision's parameter names, so a torchvision or timm ResNet
checkpoint loads with `strict=True` and no renaming.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..core.fileio import atomic_path

# Wrappers that training scripts commonly put around a state dict.
_NESTED_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "ema")
_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel and torch.compile


class WeightsError(ValueError):
    """Weights that cannot be read or do not fit the model; the message says which and why."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file, or a .pth/.pt/.bin file read with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(
                f"cannot read {path} as safetensors ({exc}); is it corrupt?"
            ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad or unsafe pickles
        raise WeightsError(
            f"cannot read {path} as a PyTorch state dict with weights_only=True: "
            f"{unpickling_reason(exc)}"
        ) from None
    return _unwrap(obj, path)


def unpickling_reason(exc: BaseException) -> str:
    """The line of a torch.load error that says what is wrong with the file, without torch's
    hint to retry with weights_only=False: that would run the file's code, so we never say it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [
        line
        for line in lines
        if "weights_only" not in line and "Weights only load failed" not in line
    ]
    reason = useful[0] if useful else type(exc).__name__
    if any("Weights only load failed" in line for line in lines):
        reason = f"it holds objects other than tensors, which are never loaded ({reason})"
    return reason


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        nested = next((k for k in _NESTED_KEYS if k in obj), None)
        if nested is None:
            raise WeightsError(
                f"{path} holds a dict without tensors at the top level nor under one of "
                f"{', '.join(_NESTED_KEYS)}"
            )
        obj = obj[nested]
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    state = dict(obj)
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _is_tensor_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def classifier_keys(model: nn.Module) -> set[str]:
    return {k for k in model.state_dict() if k.startswith("fc.")}


def load_weights(
    model: nn.Module,
    path_or_state: str | Path | Mapping[str, torch.Tensor],
    strict: bool = True,
    skip_classifier: bool = False,
) -> nn.Module:
    """Load weights into `model` and return it.

    With `skip_classifier=True` the checkpoint's `fc.*` tensors are ignored, so a 1000-class
    backbone loads into a model with another number of classes. Missing, unexpected and
    mis-shaped keys raise `WeightsError` listing them (with `strict=True`).
    """
    if isinstance(path_or_state, Mapping):
        state, source = dict(path_or_state), "state dict"
    else:
        state, source = read_state_dict(path_or_state), str(path_or_state)
    expected = model.state_dict()
    if skip_classifier:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    mismatched = [
        f"{k} {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    missing = [k for k in expected if k not in state]
    if skip_classifier:
        missing = [k for k in missing if not k.startswith("fc.")]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if mismatched:
        hint = ""
        if any(m.startswith("fc.") for m in mismatched):
            hint = " (a different number of classes: pass skip_classifier=True to keep a new head)"
        problems.append(f"shape mismatch for {_short_list(mismatched)}{hint}")
    if strict and missing:
        problems.append(f"missing keys {_short_list(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys {_short_list(unexpected)}")
    if problems:
        raise WeightsError(f"weights from {source} do not fit the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=False)
    return model


def _short_list(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def save_weights(
    model: nn.Module, path: str | Path, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write the model's state dict as safetensors; the spec goes into the metadata as JSON.

    Metadata values that are not strings are stored as JSON text.
    """
    path = Path(path)
    meta = {}
    spec = getattr(model, "spec", None)
    if spec is not None:
        meta["spec"] = spec.to_json()
    for key, value in (metadata or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata stored in a safetensors file header."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"cannot read metadata of {path} ({exc})") from None
