"""Training configuration in typed sections, each field defined once, read from YAML.

`TrainConfig` names what is trained (`model`, `pretrained`, spec overrides) on which `data`,
and composes one frozen section per concern: `dataset`, `augment`, `optim`, `runtime`,
`eval` and `run`. Each field is an `option(...)` (see `resnetkit.core.options`): its type,
default, help text and allowed values drive validation, YAML loading and the `resnetkit
train` flags alike.

Every field name is unique across the sections, so the flat spelling of the earlier, flat
config keeps working everywhere: recipes and run folders' `config.yaml` with flat keys,
`TrainConfig(lr=0.1, epochs=3)` and `cfg.lr`. Sectioned YAML (`optim: {lr: 0.1}`) loads too.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..core.options import ConfigError, OptionField, check_fields, option, option_fields
from ..core.yaml_text import load_yaml
from ..data.augment import MAX_IMAGE_SIZE, AugmentConfig
from ..models.blocks import ACTIVATIONS
from .schedule import SCHEDULES

__all__ = [
    "RUN_FOLDER_DEFAULTS",
    "SECTIONS",
    "AugmentConfig",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "OptimConfig",
    "RunConfig",
    "RuntimeConfig",
    "TrainConfig",
    "check_run_name",
    "config_options",
]

OPTIMIZERS = ("sgd", "adamw")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MILESTONE_UNITS = ("epoch", "step")
MAX_SEED = 2**63 - 1  # torch.manual_seed takes 64-bit seeds
# A run folder's config.yaml that lacks a key was written before that key's default changed:
# it trained with the old default, so resuming it (or comparing recipes) uses that one.
RUN_FOLDER_DEFAULTS: dict[str, Any] = {"val_fraction": 0.0}


@dataclass(frozen=True)
class DataConfig:
    """Where the data is, how the validation split is held out, and how images are read."""

    data_dir: str | None = option(
        None,
        "where the dataset files are (or go with --download)",
        default_text="the resnetkit cache; for Fashion-MNIST also /usr/share/datasets",
    )
    download: bool = option(False, "download a named dataset that is not found (checksummed)")
    image_size: int | None = option(
        None,
        "resize images to this side (image folders: resize and crop)",
        low=1,
        high=MAX_IMAGE_SIZE,
        default_text="the data's own; image folders: the model's input size",
    )
    val_fraction: float = option(
        0.1,
        "hold out this share of the training set (stratified by class, seeded) to choose the "
        "best checkpoint; the test split is then only reported. 0: select on test",
        low=0.0,
        high=0.9,
    )
    subset: int | None = option(
        None,
        "train on the first N training images only (after the validation share is held out)",
        low=1,
        default_text="all",
    )
    num_workers: int = option(
        2, "image folders that stream: decoding worker processes", low=0, resume=True
    )
    in_memory: bool | None = option(
        None,
        "image folders: decode once and keep in memory",
        metavar="BOOL",
        default_text="when images are at most 64 px",
    )
    data_cache: bool = option(True, "image folders in memory: cache the decoded set on disk")

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class OptimConfig:
    """How long and how the weights are optimised: optimizer, schedule, loss, averaging."""

    epochs: int = option(10, "passes over the training set", low=1, resume=True)
    max_steps: int | None = option(
        None,
        "stop after this many optimizer steps (the paper's 64k)",
        low=1,
        default_text="as many as the epochs take",
    )
    batch_size: int = option(
        128, "global batch size (torchrun processes take an equal share each)", low=1
    )
    optimizer: str = option("sgd", "optimizer", choices=OPTIMIZERS)
    lr: float = option(0.1, "peak learning rate", above=0.0)
    momentum: float = option(0.9, "SGD momentum", low=0.0, high=0.999)
    nesterov: bool = option(True, "Nesterov momentum (SGD)")
    weight_decay: float = option(
        5e-4, "L2 penalty on conv and linear weights (never BatchNorm or biases)", low=0, high=1
    )
    schedule: str = option("onecycle", "learning-rate schedule", choices=SCHEDULES)
    warmup_epochs: float = option(
        0.0,
        "linear warm-up from lr x --warmup-start over this many epochs (at most epochs)",
        low=0.0,
    )
    warmup_start: float = option(0.1, "the warm-up starts at lr x this", low=0.0, high=1.0)
    final_lr_ratio: float = option(
        0.0,
        "the linear and cosine schedules end at lr x this (airbench ends at 0.07)",
        low=0.0,
        high=1.0,
    )
    milestones: tuple[float, ...] = option(
        (), "step schedule: where the rate is multiplied by gamma", metavar="M"
    )
    milestone_unit: str = option("epoch", "unit of the milestones", choices=MILESTONE_UNITS)
    gamma: float = option(0.1, "step schedule: factor at each milestone", low=0.0, high=1.0)
    label_smoothing: float = option(0.0, "cross-entropy label smoothing", low=0.0, high=0.9)
    ema_decay: float = option(
        0.0,
        "evaluate and ship an exponential moving average of the weights (0 = off; 0.999 "
        "averages roughly the last 1000 steps)",
        low=0.0,
        high=0.999999,
    )
    ema_every: int = option(1, "update the weight average every N optimizer steps", low=1)
    freeze_backbone: bool = option(
        False, "train the classifier only; BatchNorm statistics stay fixed"
    )
    backbone_lr_scale: float = option(
        1.0, "backbone learning rate = lr x this (the classifier keeps lr)", low=0.0, high=1.0
    )
    norm_lr_scale: float = option(
        1.0,
        "BatchNorm scales and shifts train at lr x this (Page's and Jordan's fast CIFAR "
        "recipes use 64 with fixed BatchNorm scales)",
        above=0.0,
        high=1000.0,
    )
    max_bad_steps: int = option(
        0, "non-finite losses skipped before the run stops (0: stop at the first)", low=0
    )
    clip_grad_norm: float | None = option(
        None,
        "clip the gradients' global L2 norm to this before each optimizer step",
        above=0.0,
        default_text="off",
    )
    accum_steps: int = option(
        1,
        "gradient accumulation: one optimizer step per N batches (effective batch: "
        "batch_size x N; the schedule counts optimizer steps)",
        low=1,
    )
    lookahead_steps: int = option(
        0,
        "Lookahead (Zhang et al. 2019): every N optimizer steps, slow weights move "
        "--lookahead-alpha of the way to the trained ones and training restarts from them "
        "(0 = off)",
        low=0,
    )
    lookahead_alpha: float = option(
        0.5,
        "Lookahead: the share of the way the slow weights move (with --lookahead-power, the "
        "share they reach at the last step)",
        above=0.0,
        high=1.0,
    )
    lookahead_start_epochs: float = option(
        0.0,
        "Lookahead: begin after this many epochs (the slow weights start as the trained ones then)",
        low=0.0,
    )
    lookahead_power: float = option(
        0.0,
        "Lookahead: 0 keeps the share constant; p > 0 averages harder as training ends, "
        "share = 1 - (1 - alpha) x (step / total)^p (airbench's weight average: 3)",
        low=0.0,
        high=10.0,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.warmup_epochs > self.epochs:
            raise ConfigError(
                f"invalid config field 'warmup_epochs': got {self.warmup_epochs}; expected 0 "
                f"to epochs ({self.epochs})"
            )
        self._check_timed_lookahead()
        if self.final_lr_ratio and self.schedule not in ("linear", "cosine"):
            raise ConfigError(
                f"invalid config field 'final_lr_ratio': got {self.final_lr_ratio:g}; only the "
                f"linear and cosine schedules end at a ratio (the {self.schedule} schedule has "
                f"its own end); set it to 0"
            )

    def _check_timed_lookahead(self) -> None:
        timed = {
            "lookahead_start_epochs": self.lookahead_start_epochs,
            "lookahead_power": self.lookahead_power,
        }
        for name, value in timed.items():
            if value and not self.lookahead_steps:
                raise ConfigError(
                    f"invalid config field '{name}': got {value:g} but Lookahead is off "
                    f"(lookahead_steps 0); set lookahead_steps or leave {name} at 0"
                )
        if self.lookahead_steps and self.lookahead_start_epochs >= self.epochs:
            raise ConfigError(
                f"invalid config field 'lookahead_start_epochs': got "
                f"{self.lookahead_start_epochs:g}; Lookahead would never start in a run of "
                f"{self.epochs} epochs; expected less than epochs"
            )


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and in what arithmetic the run executes; none of it changes the recipe."""

    precision: str = option(
        "auto",
        "auto: bf16 autocast where a probe measures it faster on this machine, else fp32 (see "
        "`resnetkit doctor`); fp16 needs CUDA",
        choices=PRECISIONS,
    )
    device: str = option("auto", "auto (CUDA when available), cpu, cuda, cuda:1, ...")
    threads: int | None = option(
        None, "intra-op threads", low=1, default_text="every available core", resume=True
    )
    channels_last: bool = option(True, "channels-last memory format (faster convolutions)")
    compile: bool = option(False, "torch.compile the model")
    sync_bn: bool = option(
        False, "torchrun on CUDA: BatchNorm statistics over all processes (SyncBatchNorm)"
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class EvalConfig:
    """When and how the held-out splits are evaluated."""

    eval_every: int = option(
        1, "evaluate every N epochs (and always after the last)", low=1, resume=True
    )
    eval_batch_size: int = option(512, "batch size for evaluation", low=1, resume=True)
    tta_flip: bool = option(
        False, "test-time augmentation: average with the mirrored image", resume=True
    )
    tta_translate: int = option(
        0, "test-time augmentation: also average copies shifted by N pixels (0 = off)", low=0
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class RunConfig:
    """The run folder, the seed, checkpoints and logging."""

    seed: int = option(
        0,
        "seeds initialisation, data order, augmentation and the validation split",
        low=0,
        high=MAX_SEED,
    )
    out_dir: str = option("runs", "parent folder of run folders")
    name: str | None = option(None, "run folder name", default_text="MODEL-DATA-TIMESTAMP")
    keep_checkpoints: int = option(
        3, "training states kept for --resume, newest first", low=0, resume=True
    )
    checkpoint_every_steps: int = option(
        0, "also save the training state every N steps (0: at epoch ends only)", low=0, resume=True
    )
    log_every_steps: int = option(
        20, "progress line and loss check every N steps", low=1, resume=True
    )
    tensorboard: bool = option(True, "write TensorBoard event files", resume=True)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.name is not None:
            check_run_name(self.name, "invalid config field 'name'")


# Section name -> its class, in the order config.yaml and --help list them.
SECTIONS: dict[str, type] = {
    "dataset": DataConfig,
    "augment": AugmentConfig,
    "optim": OptimConfig,
    "runtime": RuntimeConfig,
    "eval": EvalConfig,
    "run": RunConfig,
}


@dataclass(frozen=True, init=False)
class TrainConfig:
    """Everything a training run depends on; saved as `config.yaml` in the run folder.

    Build it from sections, flat field names, or both (flat names apply on top of a given
    section): `TrainConfig(optim=OptimConfig(lr=0.1))` equals `TrainConfig(lr=0.1)`. A flat
    name reads through to its section: `cfg.lr is cfg.optim.lr`.
    """

    model: str = option("resnet20", "registered name or .yaml/.json spec (`resnetkit models`)")
    data: str = option(
        "fashion-mnist", "fashion-mnist, mnist, cifar10, cifar100, synthetic or folder:PATH"
    )
    pretrained: str | None = option(
        None,
        "start from pretrained weights: a tag (imagenet, imagenet_v2; see `resnetkit models "
        "--pretrained`) or a .safetensors/.pth file",
        metavar="TAG_OR_FILE",
    )
    zero_init_residual: bool = option(
        False, "zero the last BatchNorm of each residual branch: units start as the identity"
    )
    drop_rate: float = option(0.0, "dropout before the classifier", low=0.0, high=0.99)
    whiten_stem: bool = option(
        False,
        "initialise the first convolution as a whitening of the training images' patches "
        "(the fast CIFAR-10 trainers' first layer)",
    )
    freeze_stem: bool = option(
        False,
        "keep the first convolution's weights where they start (with --whiten-stem, a fixed "
        "whitening layer, as airbench's); its bias still trains",
    )
    bn_momentum: float | None = option(
        None,
        "BatchNorm running statistics: the share of each new batch, torch's convention "
        "(airbench's 0.4 tracks the fast-moving weights of a short run)",
        above=0.0,
        high=1.0,
        default_text="0.1, torch's",
    )
    drop_path_rate: float = option(
        0.0,
        "stochastic depth (Huang et al. 2016): in training, skip each unit's residual branch per "
        "image, with a rate rising linearly to this at the last unit (0 = off: the spec's own; "
        "residual networks only; 0.05 to 0.1 is common for ResNet-50)",
        low=0.0,
        high=0.99,
    )
    act: str | None = option(
        None,
        "the activation after each BatchNorm and addition (relu is the papers'; gelu and silu "
        "are smooth)",
        choices=ACTIVATIONS,
        default_text="the model's own",
    )
    norm_scale: bool | None = option(
        None,
        "learn BatchNorm scales; false keeps them where they start (1, or the pretrained "
        "weights' own) and only the shifts train (with --norm-lr-scale, the fast CIFAR "
        "trainers' BatchNorm)",
        default_text="the model's own",
    )
    logit_scale: float | None = option(
        None,
        "multiply the classifier's outputs by this (Page 2018 used 0.125)",
        above=0.0,
        default_text="the model's own",
    )
    dataset: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # free-form notes

    def __init__(self, **values: Any) -> None:
        by_section: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        for key in list(values):
            if key in _OWNER:
                by_section[_OWNER[key]][key] = values.pop(key)
            elif key not in _TOP_LEVEL:
                raise TypeError(f"TrainConfig() got an unexpected keyword argument {key!r}")
        for f in dataclasses.fields(self):
            if f.name in SECTIONS:
                value = _section(f.name, values.get(f.name), by_section[f.name])
            elif f.name == "extra":
                value = values.get("extra") or {}
                if not isinstance(value, Mapping):
                    raise ConfigError(
                        f"invalid config field 'extra': got {value!r}; expected a mapping"
                    )
                value = dict(value)
            else:
                value = values.get(f.name, f.default)
            object.__setattr__(self, f.name, value)
        check_fields(self)
        self._check_across_sections()

    def _check_across_sections(self) -> None:
        if self.pretrained is not None and not str(self.pretrained).strip():
            raise ConfigError(
                f"invalid config field 'pretrained': got {self.pretrained!r}; expected a "
                f"weights tag such as imagenet, a .safetensors/.pth file, or null for none"
            )
        if self.augment.low_res_size and self.augment.low_res_epochs >= self.optim.epochs:
            raise ConfigError(
                f"invalid config field 'low_res_epochs': got {self.augment.low_res_epochs}; "
                f"expected fewer than epochs ({self.optim.epochs}), so the last epochs train at "
                f"full size"
            )
        if self.whiten_stem and self.pretrained is not None:
            raise ConfigError(
                "invalid config field 'whiten_stem': it would overwrite the pretrained first "
                "layer; use one of whiten_stem and pretrained"
            )

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not attributes: the flat spelling of section fields.
        owner = _OWNER.get(name)
        if owner is None:
            raise AttributeError(f"'TrainConfig' object has no attribute {name!r}")
        return getattr(object.__getattribute__(self, owner), name)

    # -- I/O ----------------------------------------------------------------------------------

    def to_dict(self, sections: bool = False) -> dict[str, Any]:
        """Flat {field: value} (the format of config.yaml), or nested by section."""
        data: dict[str, Any] = {}
        for section, spec in config_options():
            value = getattr(self, spec.name)
            value = list(value) if isinstance(value, tuple) else value
            if sections and section is not None:
                data.setdefault(section, {})[spec.name] = value
            else:
                data[spec.name] = value
        if self.extra:
            data["extra"] = dict(self.extra)
        return data

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Flat keys, as every earlier version wrote and read them; a comment heads each
        section's keys."""
        nested = self.to_dict(sections=True)
        top = {k: v for k, v in nested.items() if k not in SECTIONS and k != "extra"}
        parts = [yaml.safe_dump(top, sort_keys=False)]
        for name in SECTIONS:
            parts.append(f"# {name}\n" + yaml.safe_dump(nested[name], sort_keys=False))
        if "extra" in nested:
            parts.append(yaml.safe_dump({"extra": nested["extra"]}, sort_keys=False))
        text = "".join(parts)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
    ) -> TrainConfig:
        """Flat keys, sections (`optim: {lr: 0.1}`) or a mix; `defaults` fill flat fields that
        `data` does not give (an old run folder's settings from before a default changed)."""
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"invalid config: expected a mapping of fields, got {type(data).__name__}"
            )
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key in SECTIONS and (value is None or isinstance(value, Mapping)):
                for name, item in (value or {}).items():
                    if _OWNER.get(name) != key:
                        raise _unknown(name, key)
                    _put(values, name, item)
            elif key in _OWNER or (key in _TOP_LEVEL and key not in SECTIONS):
                _put(values, key, value)
            elif key in SECTIONS:
                raise ConfigError(
                    f"invalid config section '{key}': got {value!r}; expected a mapping of "
                    f"its fields, e.g. {key}: {{{_fields_of(key)[0]}: ...}}"
                )
            else:
                raise _unknown(key)
        for key, value in (defaults or {}).items():
            values.setdefault(key, value)
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"invalid config: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path, defaults: Mapping[str, Any] | None = None) -> TrainConfig:
        path = Path(path)
        try:
            data = load_yaml(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"cannot read config file {path}: not UTF-8 text") from None
        except yaml.YAMLError as exc:
            reason = " ".join(str(exc).split())
            raise ConfigError(f"invalid config file {path}: not valid YAML ({reason})") from None
        return cls.from_dict(data or {}, defaults)

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with `changes` (flat field names or whole sections) applied."""
        merged = self.to_dict()
        for key, value in changes.items():
            if key in SECTIONS:
                for name in _fields_of(key):
                    merged.pop(name, None)
                if dataclasses.is_dataclass(value) and not isinstance(value, type):
                    value = dataclasses.asdict(value)
            merged[key] = value
        return TrainConfig.from_dict(merged)


def config_options() -> tuple[tuple[str | None, OptionField], ...]:
    """Every setting of a training run as (section or None for top level, its definition),
    in the order of config.yaml and `resnetkit train --help`."""
    return _ALL_OPTIONS


_ALL_OPTIONS: tuple[tuple[str | None, OptionField], ...] = tuple(
    [(None, spec) for spec in option_fields(TrainConfig)]
    + [(name, spec) for name, cls in SECTIONS.items() for spec in option_fields(cls)]
)
_OWNER: dict[str, str] = {spec.name: s for s, spec in _ALL_OPTIONS if s is not None}
_TOP_LEVEL = frozenset(f.name for f in dataclasses.fields(TrainConfig))


def _section(name: str, given: Any, flat: dict[str, Any]) -> Any:
    """Section `name` from a section object or mapping (or nothing), with `flat` on top."""
    cls = SECTIONS[name]
    if given is None:
        return cls(**flat)
    if isinstance(given, cls):
        return dataclasses.replace(given, **flat) if flat else given
    if isinstance(given, Mapping):
        return cls(**{**given, **flat})
    raise ConfigError(
        f"invalid config section '{name}': got {given!r}; expected a mapping of its fields"
    )


def _fields_of(section: str) -> list[str]:
    return [spec.name for s, spec in _ALL_OPTIONS if s == section]


def _put(values: dict[str, Any], key: str, value: Any) -> None:
    if key in values:
        raise ConfigError(
            f"invalid config field '{key}': given twice (flat and in section {_OWNER[key]})"
        )
    values[key] = value


def _unknown(key: Any, section: str | None = None) -> ConfigError:
    allowed = _fields_of(section) if section else sorted(_OWNER.keys() | _TOP_LEVEL)
    close = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    if section and key in _OWNER:
        hint = f"'{key}' belongs to section {_OWNER[key]}; "
    elif section and key in _TOP_LEVEL:
        hint = f"'{key}' is a top-level field; "
    where = f"'{section}.{key}'" if section else f"'{key}'"
    scope = f"fields of {section}" if section else "fields and sections"
    return ConfigError(
        f"invalid config field {where}: unknown field; {hint}allowed {scope}: " + ", ".join(allowed)
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
