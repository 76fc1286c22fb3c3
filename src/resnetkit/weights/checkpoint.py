"""Checkpoints of a run: model weights for users, full training state for resume.

- `best.safetensors` / `last.safetensors`: weights plus metadata (spec, class names, input
  normalisation, epoch, accuracy), for `eval`, `predict`, `export` and `load_weights`.
- `state-<step>.pt`: everything resume needs (model, optimizer, RNG, epoch, step, history),
  written with `torch.save` and read back only with `weights_only=True`. Each is a verified
  file (`fileio.verified_path`: a `.sha256` sidecar); a file whose hash does not match is
  reported and skipped on resume.

Every file is written to a temporary name, fsynced and renamed, so a crash never leaves a
half-written checkpoint under a real name.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.fileio import atomic_path, remove_verified, verified_path, verify_file
from ..models.pretrained_cfg import PretrainedCfgError, check_cfg, make_cfg
from ..models.resnet import ResNet
from ..models.spec import ResNetSpec
from .io import WeightsError, load_weights, read_metadata, read_state_dict, save_weights

log = logging.getLogger(__name__)

STATE_PATTERN = re.compile(r"^state-(\d+)\.pt$")
STATE_FORMAT = "resnetkit-train-state-v1"
MAX_IMAGE_SIDE = 4096  # as config.MAX_IMAGE_SIZE: metadata asking for more is not ours


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt or does not fit; the message names the file."""


def save_state(directory: Path, step: int, state: Mapping[str, Any], keep: int) -> Path:
    """Write `state-<step>.pt` and its checksum, then delete all but the newest `keep`."""
    path = directory / f"state-{step:09d}.pt"
    with verified_path(path) as tmp:
        torch.save(dict(state, format=STATE_FORMAT), tmp)
    if keep > 0:
        for old in list_states(directory)[:-keep]:
            remove_verified(old)
    return path


def list_states(directory: Path) -> list[Path]:
    """State files, oldest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if STATE_PATTERN.match(p.name)]
    return sorted(found, key=lambda p: int(STATE_PATTERN.match(p.name).group(1)))


def load_state(path: Path) -> dict[str, Any]:
    """Read a training state, verifying its checksum; CheckpointError if it is damaged."""
    # States written before checksums existed have no sidecar; they are read unverified.
    problem = verify_file(path, require_sidecar=False)
    if problem is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt: {problem}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle: torch raises several types
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a resnetkit training state")
    return state


def newest_good_state(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest state that reads back intact; damaged ones are logged and skipped."""
    for path in reversed(list_states(directory)):
        try:
            return path, load_state(path)
        except CheckpointError as exc:
            log.warning("skipping %s", exc)
    return None


def save_model_checkpoint(
    model: nn.Module, path: Path, class_names: tuple[str, ...], extra: Mapping[str, Any]
) -> Path:
    """Weights as safetensors with what `predict` needs to use them alone."""
    metadata = {"class_names": list(class_names), "format": "resnetkit-model-v1", **extra}
    return save_weights(model, path, metadata)


def copy_checkpoint(source: Path, target: Path) -> Path:
    """Copy a checkpoint file crash-safely (best = the last one, without serialising twice)."""
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return target


@dataclass(frozen=True)
class LoadedModel:
    """A model rebuilt from a checkpoint, with what feeding it needs."""

    model: ResNet
    class_names: tuple[str, ...]
    image_size: tuple[int, int] | None  # the decoded image size; None: the data's own
    metadata: dict[str, str]

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """The model's input size, crop, interpolation, normalisation and class names."""
        return self.model.pretrained_cfg

    @property
    def mean(self) -> tuple[float, ...]:
        """The input mean, as the weights' pretrained_cfg says (its one owner)."""
        return tuple(self.pretrained_cfg["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.pretrained_cfg["std"])

    @classmethod
    def from_model(cls, model: ResNet, metadata: Mapping[str, str] | None = None) -> LoadedModel:
        """A model whose weights are already loaded (e.g. `create_model("resnet50.imagenet")`),
        in eval mode: class names, image size and normalisation come from its pretrained_cfg."""
        cfg = model.pretrained_cfg
        names = cfg.get("label_names") or tuple(str(i) for i in range(model.num_classes))
        size = (cfg["input_size"][1], cfg["input_size"][2])
        return cls(model.eval(), tuple(names), size, dict(metadata or {}))


def checkpoint_file(path: str | Path) -> Path:
    """The `.safetensors` file a checkpoint argument names: a file, or a run folder's best."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / "checkpoints" / "best.safetensors", path / "best.safetensors"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise CheckpointError(f"no checkpoints/best.safetensors in run folder {path}")
        path = found
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return path


def load_model_checkpoint(path: str | Path) -> LoadedModel:
    """Rebuild a model from a `.safetensors` checkpoint written by training (or save_weights),
    or from a run folder (its best checkpoint)."""
    path = checkpoint_file(path)
    try:
        metadata = read_metadata(path)
    except WeightsError as exc:
        raise CheckpointError(str(exc)) from None
    if "spec" not in metadata:
        raise CheckpointError(
            f"{path} has no model spec in its metadata; load it with rk.load_weights into a "
            f"model you build yourself"
        )
    spec = ResNetSpec.parse_json(metadata["spec"])
    model = ResNet(spec)
    try:
        state = read_state_dict(path)
        load_weights(model, state, strict=True)
    except WeightsError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    bad = non_finite_tensors(state)
    if bad:
        raise CheckpointError(
            f"{path} holds NaN or inf in {bad[0]}"
            + (f" and {len(bad) - 1} more tensors" if len(bad) > 1 else "")
            + "; the run that made it diverged, so its predictions mean nothing"
        )
    model.eval()
    try:
        names, _, _, size = preprocessing_from_metadata(metadata, spec)
        model.pretrained_cfg = pretrained_cfg_from_metadata(metadata, spec)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return LoadedModel(model, names, size, metadata)


def as_loaded(checkpoint: str | Path | LoadedModel) -> LoadedModel:
    """A `LoadedModel` as it is; a run folder or checkpoint file loaded."""
    return checkpoint if isinstance(checkpoint, LoadedModel) else load_model_checkpoint(checkpoint)


def non_finite_tensors(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold NaN or inf."""
    return [
        k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


def preprocessing_from_metadata(
    metadata: Mapping[str, str], spec: ResNetSpec
) -> tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...], tuple[int, int] | None]:
    """Class names, input mean, std and image size from checkpoint (or export) metadata; absent
    keys get numbered classes, mean/std 0.5 and no fixed size. ValueError where the metadata
    disagrees with the network (class count, channels) or is not what it should be."""
    names = tuple(_json_list(metadata, "class_names", str)) or tuple(
        str(i) for i in range(spec.num_classes)
    )
    if len(names) != spec.num_classes:
        raise ValueError(
            f"metadata names {len(names)} classes but the classifier has {spec.num_classes}"
        )
    mean = tuple(_json_list(metadata, "mean", float)) or (0.5,) * spec.in_chans
    std = tuple(_json_list(metadata, "std", float)) or (0.5,) * spec.in_chans
    for key, values in (("mean", mean), ("std", std)):
        if len(values) != spec.in_chans or not all(math.isfinite(v) for v in values):
            raise ValueError(
                f"metadata {key} {list(values)} does not fit {spec.in_chans} input channels"
            )
    if any(v <= 0 for v in std):
        raise ValueError(f"metadata std {list(std)} must be positive")
    size = _json_list(metadata, "image_size", int) if "image_size" in metadata else None
    if size and (
        len(size) != 2 or not all(spec.min_input_size <= s <= MAX_IMAGE_SIDE for s in size)
    ):
        raise ValueError(
            f"metadata image_size {size} is not two sides from {spec.min_input_size} to "
            f"{MAX_IMAGE_SIDE}"
        )
    return names, mean, std, tuple(size) if size else None


def pretrained_cfg_from_metadata(metadata: Mapping[str, str], spec: ResNetSpec) -> dict[str, Any]:
    """The checkpoint's pretrained_cfg: the one `train` stores, or for older files one derived
    from their class names, mean, std and image size, evaluated whole (crop_pct 1.0, bilinear:
    how resnetkit has always decoded). ValueError where it does not fit the network."""
    if "pretrained_cfg" not in metadata:
        names, mean, std, size = preprocessing_from_metadata(metadata, spec)
        dataset = metadata.get("dataset")
        return make_cfg(
            input_size=(spec.in_chans, *(size or (spec.default_input_size,) * 2)),
            mean=mean,
            std=std,
            num_classes=spec.num_classes,
            label_names=names,
            architecture=spec.name or None,
            source=f"resnetkit train on {dataset}" if dataset else None,
        )
    try:
        stored = json.loads(metadata["pretrained_cfg"])
        cfg = check_cfg(stored if isinstance(stored, dict) else {})
    except (json.JSONDecodeError, PretrainedCfgError) as exc:
        raise ValueError(f"metadata pretrained_cfg is not usable: {exc}") from None
    fits = cfg["input_size"][0] == spec.in_chans and cfg.get("num_classes") == spec.num_classes
    if not fits:
        raise ValueError(
            f"metadata pretrained_cfg (input {list(cfg['input_size'])}, "
            f"{cfg.get('num_classes')} classes) does not fit the network ({spec.in_chans} "
            f"channels, {spec.num_classes} classes)"
        )
    return cfg


def _json_list(metadata: Mapping[str, str], key: str, kind: type) -> list:
    """A JSON list of `kind` values from string metadata ([] when absent)."""
    try:
        values = json.loads(metadata.get(key, "[]"))
    except (json.JSONDecodeError, TypeError):
        raise ValueError(f"metadata {key} is not valid JSON") from None
    ok = isinstance(values, list) and all(
        (isinstance(v, kind) and not isinstance(v, bool)) or (kind is float and type(v) is int)
        for v in values
    )
    if not ok:
        raise ValueError(f"metadata {key} is not a list of {kind.__name__} values")
    return values
