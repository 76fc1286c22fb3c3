"""Training configuration: one frozen dataclass, validated in one place, read from YAML."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from .schedule import SCHEDULES

OPTIMIZERS = ("sgd", "adamw")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MILESTONE_UNITS = ("epoch", "step")
MAX_IMAGE_SIZE = 4096  # larger sides only exhaust memory; no ResNet recipe uses them


class ConfigError(ValueError):
    """An invalid training configuration; the message names the field and what is allowed."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved as `config.yaml` in the run folder."""

    # what to train, on what
    model: str = "resnet20"
    data: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = False
    image_size: int | None = None  # image folders: resize/crop side; None = model default
    val_fraction: float = 0.0  # image folders: hold out this share of train as the eval split
    subset: int | None = None  # train on the first N images only (demos, experiments)
    num_workers: int = 2  # image folders only: decoding workers
    in_memory: bool | None = None  # image folders: decode once and keep (None: images <= 64 px)
    data_cache: bool = True  # image folders in memory: cache the decoded set on disk
    # model overrides
    zero_init_residual: bool = False
    drop_rate: float = 0.0
    # fine-tuning
    pretrained: str | None = None  # weights tag (e.g. imagenet) or a .safetensors/.pth file
    freeze_backbone: bool = False  # train the classifier only; BatchNorm statistics stay fixed
    backbone_lr_scale: float = 1.0  # backbone learning rate = lr x this; the classifier gets lr
    # optimisation
    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimizer steps (paper: 64k)
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    warmup_epochs: float = 0.0
    milestones: tuple[float, ...] = ()
    milestone_unit: str = "epoch"
    gamma: float = 0.1
    label_smoothing: float = 0.0
    # augmentation
    crop_padding: int = 2
    flip: bool = True
    cutout: int = 0
    # speed
    precision: str = "auto"  # auto: bf16 where measured faster on this machine, else fp32
    channels_last: bool = True
    compile: bool = False
    sync_bn: bool = False  # multi-process (torchrun) on CUDA: BatchNorm statistics over all ranks
    device: str = "auto"
    threads: int | None = None
    # weight averaging: evaluate and ship an exponential moving average of the weights
    ema_decay: float = 0.0  # 0 = off; e.g. 0.999 averages roughly the last 1000 steps
    ema_every: int = 1  # update the average every N optimizer steps
    # evaluation
    tta_flip: bool = False
    tta_translate: int = 0  # also average over copies shifted by this many pixels (0 = off)
    eval_batch_size: int = 512
    eval_every: int = 1  # evaluate every N epochs (and always after the last one)
    # bookkeeping
    seed: int = 0
    out_dir: str = "runs"
    name: str | None = None
    keep_checkpoints: int = 3
    checkpoint_every_steps: int = 0  # 0 = at the end of each epoch only
    max_bad_steps: int = 0  # non-finite losses tolerated (skipped) before the run stops
    tensorboard: bool = True
    log_every_steps: int = 20
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("milestone_unit", self.milestone_unit, MILESTONE_UNITS)
        for name in ("epochs", "batch_size", "eval_batch_size", "eval_every", "ema_every"):
            _positive(name, getattr(self, name))
        for name in ("crop_padding", "cutout", "num_workers", "keep_checkpoints", "seed"):
            _at_least(name, getattr(self, name), 0)
        _at_least("tta_translate", self.tta_translate, 0)
        _at_least("checkpoint_every_steps", self.checkpoint_every_steps, 0)
        _at_least("max_bad_steps", self.max_bad_steps, 0)
        _positive("log_every_steps", self.log_every_steps)
        for name in ("max_steps", "subset", "image_size", "threads"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        if self.image_size is not None and self.image_size > MAX_IMAGE_SIZE:
            raise ConfigError(
                f"invalid config field 'image_size': got {self.image_size}; expected at most "
                f"{MAX_IMAGE_SIZE} pixels"
            )
        _finite_numbers(self)
        _bounded_integers(self)
        if self.name is not None:
            check_run_name(self.name, "invalid config field 'name'")
        if not self.lr > 0:
            raise ConfigError(f"invalid config field 'lr': got {self.lr!r}; expected a number > 0")
        for name, low, high in (
            ("val_fraction", 0.0, 0.9),
            ("label_smoothing", 0.0, 0.9),
            ("drop_rate", 0.0, 0.99),
            ("momentum", 0.0, 0.999),
            ("weight_decay", 0.0, 1.0),
            ("gamma", 0.0, 1.0),
            ("backbone_lr_scale", 0.0, 1.0),
            ("ema_decay", 0.0, 0.999999),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(
                    f"invalid config field '{name}': got {value!r}; expected {low} to {high}"
                )
        if self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise ConfigError(
                f"invalid config field 'warmup_epochs': got {self.warmup_epochs}; expected 0 to "
                f"epochs ({self.epochs})"
            )
        if self.pretrained is not None and not str(self.pretrained).strip():
            raise ConfigError(
                f"invalid config field 'pretrained': got {self.pretrained!r}; expected a "
                f"weights tag such as imagenet, a .safetensors/.pth file, or null for none"
            )
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))

    # -- I/O ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["milestones"] = list(self.milestones)
        if not data["extra"]:
            del data["extra"]
        return data

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"invalid config: expected a mapping of fields, got {type(data).__name__}"
            )
        hints = get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        values = {}
        for key, value in data.items():
            if key not in known:
                raise ConfigError(
                    f"invalid config field '{key}': unknown field; allowed fields: "
                    + ", ".join(sorted(known - {"extra"}))
                )
            values[key] = _coerce(key, value, hints[key])
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"invalid config: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"cannot read config file {path}: not UTF-8 text") from None
        except yaml.YAMLError as exc:
            reason = " ".join(str(exc).split())
            raise ConfigError(f"invalid config file {path}: not valid YAML ({reason})") from None
        return cls.from_dict(data or {})

    def replace(self, **changes: Any) -> TrainConfig:
        merged = self.to_dict() | changes
        return TrainConfig.from_dict(merged)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"invalid config field '{name}': got {value!r}; allowed values: {', '.join(allowed)}"
        )


def _positive(name: str, value: Any) -> None:
    _at_least(name, value, 1)


def _at_least(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"invalid config field '{name}': got {value!r}; expected an integer >= {minimum}"
        )


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Turn YAML/CLI values into the field's type, or raise a ConfigError naming the field."""
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"invalid config field '{name}': must not be empty")
    try:
        if "tuple" in text:
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                value = [value]
            return tuple(float(v) for v in value)
        if "dict" in text:
            if not isinstance(value, Mapping):
                raise TypeError
            return dict(value)
        if text.startswith("bool") or hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
                return value.lower() in ("true", "yes", "1")
            raise TypeError
        if text.startswith("int") or hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if text.startswith("float") or hint is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if text.startswith("str"):
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise TypeError
            return str(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(
            f"invalid config field '{name}': got {value!r}; expected {_human_type(hint)}"
        ) from None
    return value


def _human_type(hint: Any) -> str:
    """int | None -> 'an integer or empty': the type as a user reads it."""
    words = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "text"}
    text = hint.__name__ if isinstance(hint, type) else str(hint)
    base = text.replace("typing.", "").removesuffix(" | None")
    if "tuple" in base:
        described = "a list of numbers"
    elif "dict" in base:
        described = "a mapping"
    else:
        described = words.get(base, base)
    return described + (" or empty" if text.endswith("| None") else "")


def _finite_numbers(cfg: TrainConfig) -> None:
    """NaN or infinity in any float field (or a milestone) is a mistake, whatever the range."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        values = value if f.name == "milestones" else (value,)
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(
                    f"invalid config field '{f.name}': got {v!r}; expected a finite number"
                )


MAX_INT = 2**31 - 1  # epochs, steps, sizes: anything larger is a typo (and overflows torch)
MAX_SEED = 2**63 - 1  # torch.manual_seed takes 64-bit seeds


def _bounded_integers(cfg: TrainConfig) -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        limit = MAX_SEED if f.name == "seed" else MAX_INT
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            raise ConfigError(
                f"invalid config field '{f.name}': got {value}; expected at most {limit}"
            )


def check_run_name(name: str, what: str = "invalid run name") -> str:
    """A run or experiment name is one plain folder name: no separators, '..' or dot-start."""
    text = str(name)
    if (
        not text.strip()
        or text in (".", "..")
        or any(c in text for c in "/\\\0")
        or Path(text).is_absolute()
        or text != text.strip()
    ):
        raise ConfigError(
            f"{what}: got {text!r}; expected a plain folder name (no '/', '..' or absolute "
            f"path); use --out-dir for the parent folder"
        )
    return text
