"""The training loop, a run folder that keeps everything, and exact resume.

The loop is plain code in stages (see `fit`): `setup`, then `train_one_epoch` and `end_epoch`
for each epoch, then `finish`. Batches come from `resnetkit.data` already augmented and
normalised on the device, `train_step` does forward, loss, backward and update, and the only
host syncs are where progress or logging ask for a number. Everything a resume needs is in a
`TrainState`; display, metrics files and other extensions are callbacks.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..core.fileio import atomic_write_text, data_slug
from ..data import (
    DataError,
    DatasetInfo,
    MissingSplitError,
    load_dataset,
    make_loader,
    stratified_subset,
)
from ..data.augment import resize_batch, train_resolution
from ..data.loader import derive_seed
from ..data.mixing import mix_batch
from ..explain.run_report import ReportPage, explain_mistakes, write_page
from ..models.pretrained_cfg import trained_cfg
from ..models.registry import resolve_spec
from ..models.resnet import ResNet
from ..models.spec import ResNetSpec
from ..weights import checkpoint as ckpt
from ..weights.factory import create_model
from ..weights.pretrained import InputNormalisation, freeze_backbone, pretrained_normalisation
from . import distributed, rundir
from .callbacks import Callback, CallbackList, RunInfo, StepMetrics
from .config import (
    RUN_FOLDER_DEFAULTS,
    ConfigError,
    EvalConfig,
    OptimConfig,
    RuntimeConfig,
    TrainConfig,
    config_options,
)
from .ema import WeightEma
from .evaluate import EvalResult, evaluate
from .lookahead import Lookahead
from .loss import soft_target_cross_entropy
from .metrics import METRIC_FIELDS as METRIC_FIELDS  # the old names, importable from here
from .metrics import VAL_FIELDS as VAL_FIELDS
from .metrics import MetricsLog, metric_fields
from .optim import clip_gradients, optimizer_steps, window_size
from .progress import Progress, format_duration
from .report import write_run_report
from .rundir import RunError, RunLock
from .runtime import PRECISIONS, PrecisionDecision, autocast, describe_cpu, resolve_precision
from .schedule import Schedule, epochs_to_steps
from .state import TrainState, new_running
from .whitening import first_conv, whiten_first_conv

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite more often than `max_bad_steps` allows."""


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict[str, float]]
    best_accuracy: float
    final: EvalResult | None
    wall_time: float
    class_names: tuple[str, ...] = field(default_factory=tuple)
    is_main: bool = True  # False on ranks other than 0 of a torchrun launch
    selected_on: str = "test"  # the split that chose best.safetensors: "val" or "test"
    # With a weight average (ema_decay > 0): the trained weights, not averaged, evaluated on the
    # split the report shows (last_raw.safetensors), to compare with `final`.
    raw_final: EvalResult | None = None

    @property
    def final_accuracy(self) -> float:
        return self.history[-1]["test_acc"] if self.history else float("nan")

    @property
    def best_row(self) -> dict[str, float] | None:
        """The metrics row of the epoch whose weights are best.safetensors."""
        return best_row(self.history, self.selected_on)


def best_row(history: list[dict[str, Any]], selected_on: str) -> dict[str, Any] | None:
    """The first evaluated row with the highest accuracy on `selected_on` (as `fit` keeps it)."""
    key = f"{selected_on}_acc"
    rows = [r for r in history if r.get(key) is not None]
    return max(rows, key=lambda r: r[key]) if rows else None


# -- set-up --------------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"invalid config field 'device': got {name!r}; use auto, cpu or cuda"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("invalid config field 'device': CUDA requested but no GPU is available")
    return device


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def finite_everywhere(loss: torch.Tensor, dinfo: distributed.DistInfo) -> bool:
    """Whether the loss is finite on every rank, so all ranks skip or stop together."""
    if not dinfo.enabled:
        return bool(torch.isfinite(loss))
    flag = torch.isfinite(loss.detach()).to(torch.float32).reshape(1)
    return distributed.all_reduce_sum(flag, dinfo).item() == dinfo.world_size


def wrap_distributed(
    model: nn.Module, runtime: RuntimeConfig, dinfo: distributed.DistInfo, device: torch.device
) -> nn.Module:
    """DistributedDataParallel around the model when launched by torchrun; else the model."""
    if not dinfo.enabled:
        return model
    if runtime.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def configure_threads(threads: int | None) -> int:
    """Use every core for intra-op parallelism (PyTorch's default can be fewer in containers)."""
    torch.set_num_threads(max(1, threads or available_cores()))
    return torch.get_num_threads()


def param_groups(
    model: nn.Module,
    weight_decay: float,
    backbone_lr_scale: float = 1.0,
    norm_lr_scale: float = 1.0,
) -> list[dict[str, Any]]:
    """Weight decay on conv and linear weights only; never on BatchNorm or biases.

    Each group's `lr_scale` is the factor the training loop applies to the scheduled learning
    rate. With `backbone_lr_scale != 1` the classifier gets two groups of its own; with
    `norm_lr_scale != 1` the BatchNorm scales and shifts get one, at that multiple of the
    backbone's rate (Page's and Jordan's fast CIFAR trainers raise it 64-fold for the shifts,
    whose gradients are small once the scales are fixed).
    """
    split = backbone_lr_scale != 1.0
    head = {id(p) for p in model.get_classifier().parameters()} if split else set()
    norms = _norm_parameter_ids(model) if norm_lr_scale != 1.0 else set()
    decay, no_decay, norm, head_decay, head_no_decay = [], [], [], [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        if id(param) in head:
            (head_decay if param.ndim > 1 else head_no_decay).append(param)
        elif id(param) in norms:
            norm.append(param)
        else:
            (decay if param.ndim > 1 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "lr_scale": backbone_lr_scale},
        {"params": no_decay, "weight_decay": 0.0, "lr_scale": backbone_lr_scale},
    ]
    if norms:
        scale = backbone_lr_scale * norm_lr_scale
        groups.append({"params": norm, "weight_decay": 0.0, "lr_scale": scale})
    if split:
        groups += [
            {"params": head_decay, "weight_decay": weight_decay, "lr_scale": 1.0},
            {"params": head_no_decay, "weight_decay": 0.0, "lr_scale": 1.0},
        ]
    return groups


# What `norm_lr_scale` and `bn_momentum` act on (GroupNorm and LayerNorm keep no statistics).
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _norm_parameter_ids(model: nn.Module) -> set[int]:
    return {
        id(param)
        for module in model.modules()
        if isinstance(module, BATCH_NORMS)
        for param in module.parameters(recurse=False)
    }


def build_optimizer(
    model: nn.Module,
    optim: OptimConfig,
    steps_per_epoch: int | None = None,
    total_steps: int | None = None,
) -> torch.optim.Optimizer | Lookahead:
    """SGD or AdamW over `param_groups`, inside Lookahead where asked; a TrainConfig works too
    (its flat names read through). A Lookahead that starts late or whose share falls needs the
    run's `steps_per_epoch` and `total_steps`."""
    groups = param_groups(model, optim.weight_decay, optim.backbone_lr_scale, optim.norm_lr_scale)
    for group in groups:
        group["lr"] = optim.lr * group["lr_scale"]
    optimizer: torch.optim.Optimizer
    if optim.optimizer == "sgd":
        nesterov = optim.nesterov and optim.momentum > 0
        optimizer = torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum, nesterov=nesterov)
    else:
        optimizer = torch.optim.AdamW(groups, lr=optim.lr)
    if optim.lookahead_steps:
        timed = optim.lookahead_start_epochs > 0 or optim.lookahead_power > 0
        if timed and (steps_per_epoch is None or total_steps is None):
            raise ValueError(
                "a Lookahead with lookahead_start_epochs or lookahead_power needs the run's "
                "steps_per_epoch and total_steps"
            )
        return Lookahead(
            optimizer,
            optim.lookahead_steps,
            optim.lookahead_alpha,
            start_step=round(optim.lookahead_start_epochs * (steps_per_epoch or 1)),
            total_steps=total_steps or 1,
            power=optim.lookahead_power,
        )
    return optimizer


def build_schedule(optim: OptimConfig, steps_per_epoch: int, total_steps: int) -> Schedule:
    if optim.milestone_unit == "epoch":
        milestones = epochs_to_steps(optim.milestones, steps_per_epoch)
    else:
        milestones = tuple(int(m) for m in optim.milestones)
    return Schedule(
        kind=optim.schedule,
        lr=optim.lr,
        total_steps=total_steps,
        warmup_steps=min(total_steps, round(optim.warmup_epochs * steps_per_epoch)),
        warmup_start=optim.warmup_start,
        final_lr_ratio=optim.final_lr_ratio,
        milestones=milestones,
        gamma=optim.gamma,
    )


def default_run_name(cfg: TrainConfig) -> str:
    data = data_slug(cfg.data)
    model = Path(cfg.model).stem if cfg.model.endswith((".yaml", ".yml", ".json")) else cfg.model
    return f"{model}-{data}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse an existing run folder unless `overwrite`, and then only a resnetkit run (one
    with the marker) that no process is training."""
    rundir.check_replaceable(run_dir, overwrite)


def prepare_run_dir(
    run_dir: Path, cfg: TrainConfig, overwrite: bool, config_text: str | None = None
) -> Path:
    """Create the run folder (replacing an old run only with `overwrite`), mark it as ours and
    save the config (as `config_text`, by default the whole of `cfg`)."""
    if overwrite:
        rundir.remove_run_dir(run_dir)
    else:
        check_run_dir(run_dir, overwrite)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    rundir.write_marker(run_dir)
    text = cfg.to_yaml() if config_text is None else config_text
    atomic_write_text(run_dir / "config.yaml", text)
    return run_dir


# Fields that may change when a run is resumed (marked `resume=True` where they are defined):
# they do not change what was already trained.
RESUME_SAFE = tuple(spec.name for _, spec in config_options() if spec.option.resume)
# Schedules whose learning rate at the steps already taken does not depend on the run's length.
LENGTH_FREE_SCHEDULES = ("step", "constant")


def resume_config(
    run_dir: Path, changes: dict[str, Any] | None = None, source: RunSource | None = None
) -> TrainConfig:
    """The run's saved config with `changes` applied where resuming allows them; RunError
    naming the others. Applied changes are written back to config.yaml (atomically). `source`
    (default: `train`'s) checks that the run is one it can continue."""
    source = source or RunSource()
    if not (run_dir / "config.yaml").is_file():
        raise RunError(f"cannot resume {run_dir}: no config.yaml there (not a run folder)")
    if not rundir.resumable(run_dir):
        raise RunError(
            f"cannot resume {run_dir}: it stopped before its first checkpoint; start it again "
            f"with the same command and --overwrite"
        )
    saved_cfg = TrainConfig.from_yaml(run_dir / "config.yaml", defaults=RUN_FOLDER_DEFAULTS)
    cfg = source.saved_config(saved_cfg, run_dir)
    saved = cfg.to_dict()
    changed = {k: v for k, v in (changes or {}).items() if saved.get(k) != v}
    if not changed:
        return cfg
    refused = sorted(k for k in changed if k not in RESUME_SAFE)
    if refused:
        raise RunError(
            f"cannot change {', '.join(refused)} when resuming {run_dir} (only "
            f"{', '.join(RESUME_SAFE)} may change); start a new run instead"
        )
    if "epochs" in changed:
        if changed["epochs"] < cfg.optim.epochs:
            raise RunError(
                f"cannot lower epochs from {cfg.optim.epochs} to {changed['epochs']} when "
                f"resuming; resuming can only add epochs"
            )
        if cfg.optim.lookahead_steps and cfg.optim.lookahead_power:
            raise RunError(
                f"cannot change epochs of {run_dir} when resuming: its Lookahead share falls "
                f"over the run's {cfg.optim.epochs} epochs (lookahead_power "
                f"{cfg.optim.lookahead_power:g}), so a new length would change the averaging "
                f"already done; start a new run for {changed['epochs']} epochs"
            )
        if cfg.optim.schedule not in LENGTH_FREE_SCHEDULES:
            raise RunError(
                f"cannot change epochs of {run_dir} when resuming: its {cfg.optim.schedule} "
                f"schedule is laid out over {cfg.optim.epochs} epochs, so a new length would "
                f"change the learning rate of the steps already taken; only step and constant "
                f"schedules can be extended (start a new run for {changed['epochs']} epochs)"
            )
    new = cfg.replace(**changed)
    atomic_write_text(run_dir / "config.yaml", source.config_yaml(new))
    for key, value in changed.items():
        log.info("resume: %s changed from %r to %r (saved in config.yaml)", key, saved[key], value)
    return new


def check_finite_weights(model: nn.Module, when: str) -> None:
    """NonFiniteLossError if any parameter or buffer holds NaN or inf (one host sync)."""
    tensors = [(k, t) for k, t in model.state_dict().items() if t.is_floating_point()]
    if not tensors:
        return
    finite = torch.stack([torch.isfinite(t).all() for _, t in tensors])
    if bool(finite.all()):
        return
    bad = [k for (k, _), ok in zip(tensors, finite.tolist(), strict=True) if not ok]
    raise NonFiniteLossError(
        f"the run diverged: {bad[0]} holds NaN or inf {when}"
        + (f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else "")
        + "; stopped. Lower --lr"
    )


@dataclass
class Data:
    train: Any  # BatchIterator or DeviceLoader
    test: Any | None  # reported only (unless there is no val); None: the data has no test split
    info: DatasetInfo  # class names, channels, image size and the normalisation in use
    val: Any | None = None  # held out from training to choose `best`; None: chosen on test
    val_count: int = 0
    # The user's own DataLoaders (`resnetkit.fit`): the splits are theirs, and the images'
    # normalisation is unknown, so the report shows no pictures of them.
    from_user: bool = False

    @property
    def selected_on(self) -> str:
        """The split that chooses the best checkpoint."""
        return "val" if self.val is not None else "test"


def load_data(cfg: TrainConfig, device: torch.device, rank: int = 0, world: int = 1) -> Data:
    """Train, validation and test loaders: in-memory data lives on the device as uint8.

    With `val_fraction > 0` the validation split (the data's own val/ folder, else a
    stratified, seeded share of the training set) chooses the best checkpoint, and the test
    split is only reported; with 0 there is no validation split and the test split chooses.
    """
    if cfg.optim.batch_size % world:
        raise ConfigError(
            f"invalid config field 'batch_size': the global batch {cfg.optim.batch_size} does "
            f"not split evenly over {world} processes"
        )
    spec = resolve_spec(cfg.model)  # an unknown model fails here, before any data is read
    norm = pretrained_normalisation(cfg)  # pretrained weights bring their own input statistics
    options = dataset_options(cfg, norm, spec.default_input_size)
    train, val, test = load_splits(cfg, options, norm)
    streamed = cfg.data.startswith("folder:") and not options.get("in_memory")
    loader_args = dict(
        device=device,
        channels_last=cfg.runtime.channels_last,
        num_workers=cfg.dataset.num_workers if streamed else 0,
    )
    train_loader = make_loader(
        train,
        cfg.optim.batch_size // world,
        shuffle=True,
        seed=cfg.run.seed,
        augment=cfg.augment,
        rank=rank,
        world_size=world,
        **loader_args,
    )
    test_loader, val_loader = (
        make_loader(split, cfg.eval.eval_batch_size, shuffle=False, **loader_args)
        if split is not None
        else None
        for split in (test, val)
    )
    val_count = len(val) if val is not None else 0
    return Data(train_loader, test_loader, train.info, val_loader, val_count)


def dataset_options(
    cfg: TrainConfig, norm: InputNormalisation | None, default_side: int
) -> dict[str, Any]:
    """The keyword arguments of `load_dataset` for every split: where the data is, the image
    size (for image folders: the flag's, else the weights', else the model's `default_side`),
    the split seed and, for image folders, whether they are decoded into memory."""
    source = cfg.dataset
    is_folder = cfg.data.startswith("folder:")
    size = None
    if is_folder:
        side = source.image_size or (norm and norm.input_size) or default_side
        size = (side, side)
    elif source.image_size:
        size = (source.image_size, source.image_size)
    options = dict(
        data_dir=source.data_dir,
        download=source.download,
        image_size=size,
        seed=cfg.run.seed,
        val_fraction=source.val_fraction,
    )
    if is_folder:
        # Small images (CIFAR-sized) are decoded once, in parallel, cached on disk and kept on
        # the device; large ones stream through decoding workers.
        in_memory = source.in_memory if source.in_memory is not None else max(size) <= 64
        options |= dict(in_memory=in_memory, cache=source.data_cache)
    return options


def load_splits(
    cfg: TrainConfig, options: dict[str, Any], norm: InputNormalisation | None
) -> tuple[Any, Any | None, Any | None]:
    """The train, validation and test datasets, the training set cut to `subset` and all
    normalised as pretrained weights expect. No validation split with `val_fraction` 0; no
    test split where an image folder has only train/ and val/."""
    source = cfg.dataset
    train = load_dataset(cfg.data, "train", **options)
    val = load_dataset(cfg.data, "val", **options) if source.val_fraction > 0 else None
    try:
        test = load_dataset(cfg.data, "test", **options)
    except MissingSplitError:
        if val is None:
            raise
        test = None  # an image folder without test/: its validation split is all there is
    if source.subset is not None and source.subset < len(train):
        # The named datasets' files are already in random order, so their first N images are
        # a fair sample (and the experiments' documented numbers rely on exactly those).
        chosen = (
            stratified_subset(train.labels, source.subset, cfg.run.seed)
            if cfg.data.startswith("folder:")
            else torch.arange(source.subset)
        )
        train = train.subset(chosen)
    if norm is not None:
        for dataset in (train, val, test):
            if dataset is not None:
                dataset.info = norm.apply(dataset.info)
    return train, val, test


def build_model(
    cfg: TrainConfig, data: Data, device: torch.device, load_pretrained: bool = True
) -> ResNet:
    overrides = dict(
        num_classes=len(data.info.class_names),
        in_chans=data.info.in_chans,
        zero_init_residual=cfg.zero_init_residual,
        drop_rate=cfg.drop_rate,
    )
    if cfg.drop_path_rate > 0:  # 0 keeps a spec file's own rate
        check_drop_path(cfg, resolve_spec(cfg.model))
        overrides["drop_path_rate"] = cfg.drop_path_rate
    for name in ("act", "norm_scale", "logit_scale"):  # None keeps the spec's own
        if getattr(cfg, name) is not None:
            overrides[name] = getattr(cfg, name)
    spec = resolve_spec(cfg.model, **overrides)
    side = min(data.info.image_size)
    if side < spec.min_input_size:
        raise ConfigError(
            f"images of {side}x{side} are smaller than {cfg.model} accepts "
            f"(at least {spec.min_input_size}); use a cifar-stem model or --image-size"
        )
    if cfg.augment.crop_padding >= side:
        raise ConfigError(
            f"invalid config field 'crop_padding': {cfg.augment.crop_padding} pixels of padding "
            f"need images larger than {side}x{side}; lower --crop-padding or raise --image-size"
        )
    pretrained = cfg.pretrained if load_pretrained else None  # resume restores its own weights
    model = create_model(spec, pretrained=pretrained)
    if cfg.whiten_stem and load_pretrained:  # on resume the checkpoint has the weights
        whiten_from_data(model, data)
    if cfg.freeze_stem:
        first_conv(model).weight.requires_grad_(False)
    if cfg.bn_momentum is not None:
        set_bn_momentum(model, cfg.bn_momentum)
    if cfg.optim.freeze_backbone:
        freeze_backbone(model)
    model = model.to(device)
    if cfg.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def set_bn_momentum(model: nn.Module, momentum: float) -> None:
    """Every BatchNorm's running statistics take `momentum` of each new batch."""
    for module in model.modules():
        if isinstance(module, BATCH_NORMS):
            module.momentum = momentum


def whiten_from_data(model: nn.Module, data: Data, images: int = 2048) -> None:
    """The first convolution set to the patch whitening of the first training batches, as the
    network sees them (normalised and augmented; the loader's draws do not touch the global
    random state, so training afterwards is unchanged)."""
    batches, seen = [], 0
    for batch, _ in data.train.iter_from(0, 0):
        batches.append(batch.float().cpu())
        seen += len(batch)
        if seen >= images:
            break
    used = torch.cat(batches)[:images]
    filters = whiten_first_conv(model, used)
    log.info(
        "first convolution: %d filters from the patch whitening of %d images", filters, len(used)
    )


def check_drop_path(cfg: TrainConfig, spec: ResNetSpec) -> None:
    """ConfigError where stochastic depth has no residual branch to skip (a plain network)."""
    if spec.shortcut == "none":
        raise ConfigError(
            f"invalid config field 'drop_path_rate': got {cfg.drop_path_rate:g}; {cfg.model} is "
            f"a plain network (no shortcuts), so it has no residual branch to skip; use 0"
        )


# With a weight average, the trained weights are kept beside it, in last.safetensors' format.
RAW_CHECKPOINT = "last_raw.safetensors"
RAW_META = {"weights": "trained (raw: not averaged)"}


class RunSource:
    """What a run trains on what, and how its run folder records them.

    This one is `train`'s: a registered model on a named dataset, both named in the config.
    `resnetkit.fit` (`training/fit.py`) passes a user's module and DataLoaders instead. The
    loop's stages are the same for both; only these steps differ.
    """

    made_by = "resnetkit train"  # config.yaml's extra.made_by; absent in runs of this source
    resume_with = "`resnetkit train --resume RUN_FOLDER` (or train(None, resume=RUN_FOLDER))"

    def load_data(self, cfg: TrainConfig, device: torch.device, rank: int, world: int) -> Data:
        return load_data(cfg, device, rank, world)

    def build_model(
        self, cfg: TrainConfig, data: Data, device: torch.device, load_pretrained: bool
    ) -> nn.Module:
        return build_model(cfg, data, device, load_pretrained)

    def config_yaml(self, cfg: TrainConfig) -> str:
        """config.yaml's text."""
        return cfg.to_yaml()

    def config_dict(self, cfg: TrainConfig) -> dict[str, Any]:
        """The settings report.html lists."""
        return cfg.to_dict()

    def saved_config(self, cfg: TrainConfig, run_dir: Path) -> TrainConfig:
        """A resumed run's saved config as this source trains it; RunError where another
        source made the run."""
        made_by = cfg.extra.get("made_by", RunSource.made_by)
        if made_by != self.made_by:
            how = cfg.extra.get("resume_with", RunSource.resume_with)
            raise RunError(
                f"cannot resume {run_dir} with {self.made_by}: it was made by {made_by}; "
                f"resume it with {how}"
            )
        return cfg

    def checkpoint_meta(
        self, cfg: TrainConfig, data: Data, precision: str, state: TrainState, run_dir: Path
    ) -> dict[str, Any]:
        return checkpoint_meta(cfg, data, precision, state, run_dir)


# -- precision: decided once, recorded in the run folder -----------------------------------------

RUNTIME_RECORD = "runtime.json"
REPORT_MISTAKES = 12  # most confident mistakes shown in report.html


def read_runtime_record(run_dir: Path) -> dict[str, Any]:
    try:
        record = json.loads((run_dir / RUNTIME_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def decide_precision(
    runtime: RuntimeConfig, device: torch.device, run_dir: Path, resuming: bool, dinfo: Any
) -> PrecisionDecision:
    """What the resumed run used, else `runtime.precision` resolved on this machine.

    A resumed run keeps its precision, so resuming on another machine continues the same
    arithmetic. Under torchrun rank 0 decides for every rank, so they all train alike.
    """
    recorded = read_runtime_record(run_dir).get("precision") if resuming else None
    if recorded in PRECISIONS[1:]:
        return PrecisionDecision(runtime.precision, recorded, "recorded by the run being resumed")
    decision = resolve_precision(runtime.precision, device) if dinfo.is_main else None
    if not dinfo.enabled:
        return decision
    index = PRECISIONS.index(decision.precision) if decision else 0
    index = int(distributed.all_reduce_sum(torch.tensor([float(index)], device=device), dinfo))
    return decision or PrecisionDecision(runtime.precision, PRECISIONS[index], "chosen by rank 0")


def write_runtime_record(run_dir: Path, decision: PrecisionDecision, device: torch.device) -> None:
    """runtime.json: the precision actually used and the machine it was decided on."""
    cpu = describe_cpu()
    record = decision.as_dict() | {
        "device": str(device),
        "cpu": cpu.model_name,
        "isa": cpu.isa,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    atomic_write_text(run_dir / RUNTIME_RECORD, json.dumps(record, indent=1) + "\n")


# -- the loop -----------------------------------------------------------------------------------
#
# train -> fit: setup, then train_one_epoch and end_epoch for each epoch, then finish. What must
# survive an interruption lives in a TrainState (saved and restored whole); what is built once
# per process from the config lives in a Loop.

# (logits, targets) -> mean loss. The targets are class indices (N,), or with mixup or cutmix
# on, class probabilities (N, classes) with label smoothing already folded in.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def default_loss(optim: OptimConfig, mixing: bool = False) -> LossFn:
    """The training loss: cross-entropy with the configured label smoothing; with mixup or
    cutmix, cross-entropy against the soft targets, which already hold the smoothing."""
    if mixing:
        return soft_target_cross_entropy
    return functools.partial(F.cross_entropy, label_smoothing=optim.label_smoothing)


@dataclass
class Loop:
    """What `setup` builds once per process from the config; rebuilt on resume, never saved."""

    cfg: TrainConfig
    run_dir: Path
    dinfo: distributed.DistInfo
    device: torch.device
    decision: PrecisionDecision
    data: Data
    forward: nn.Module  # the model as the step calls it: wrapped for DDP, compiled if asked
    schedule: Schedule
    scaler: torch.amp.GradScaler
    loss_fn: LossFn
    callbacks: CallbackList  # empty on ranks other than 0
    total_steps: int
    meta: dict[str, Any]  # what last/best.safetensors carry besides the weights
    source: RunSource = field(default_factory=RunSource)  # what is trained on what

    @property
    def precision(self) -> str:
        return self.decision.precision

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def check_every(self) -> int:
        # On CPU a per-step finiteness check costs nothing; on CUDA it would sync every step, so
        # it runs with the logging instead.
        return 1 if self.device.type == "cpu" else self.cfg.run.log_every_steps

    @property
    def info(self) -> RunInfo:
        return RunInfo(
            run_dir=self.run_dir,
            epochs=self.cfg.optim.epochs,
            steps_per_epoch=optimizer_steps(len(self.data.train), self.cfg.optim.accum_steps),
            total_steps=self.total_steps,
            precision=self.precision,
            precision_reason=self.decision.reason,
        )


class EpochClock(NamedTuple):
    """When an epoch's training began, and how many images the running sums held then."""

    started: float
    seen: float


def train(
    cfg: TrainConfig,
    overwrite: bool = False,
    resume: str | Path | None = None,
    progress: Progress | None = None,
    resume_changes: dict[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    loss_fn: LossFn | None = None,
    source: RunSource | None = None,
) -> TrainResult:
    """Train `cfg` in a new run folder, or continue the run in `resume` (with the flags in
    `resume_changes` applied where that is safe; see `resume_config`).

    `progress` shows the run; `callbacks` take part in it (`training.callbacks`), after it.
    `loss_fn(logits, targets)` replaces the training loss (default: `default_loss`). With mixup
    or cutmix on, its targets are class probabilities (N, classes) with label smoothing already
    folded in, which `F.cross_entropy(logits, targets)` accepts as they are; a loss that needs
    class indices can take `targets.argmax(1)`, the dominant label. `source` says what is
    trained on what (default: the config's model and dataset; `resnetkit.fit` passes a user's
    module and DataLoaders)."""
    source = source or RunSource()
    is_main = distributed.from_environment().is_main
    resuming = resume is not None
    lock = None
    if resuming:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise RunError(f"cannot resume {run_dir}: no config.yaml there (not a run folder)")
        if is_main:  # locked before config.yaml may be rewritten
            lock = RunLock(run_dir).acquire()
    else:
        run_dir = Path(cfg.run.out_dir) / (cfg.run.name or default_run_name(cfg))
        # Fail before loading data, so a mistake costs nothing; the folder is created only
        # once data and model are ready, so a bad dataset or model leaves nothing behind.
        check_run_dir(run_dir, overwrite)
        lock = RunLock(run_dir) if is_main else None  # taken once the folder exists
    try:
        if resuming:
            cfg = resume_config(run_dir, resume_changes, source)
        return fit(cfg, run_dir, resuming, overwrite, progress, lock, callbacks, loss_fn, source)
    finally:
        if lock is not None:
            lock.release()


def fit(
    cfg: TrainConfig,
    run_dir: Path,
    resuming: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    lock: RunLock | None = None,
    callbacks: Sequence[Callback] = (),
    loss_fn: LossFn | None = None,
    source: RunSource | None = None,
) -> TrainResult:
    """Set up, train epoch by epoch until the budget is spent, then write the reports."""
    hooks = [progress, *callbacks] if progress is not None else list(callbacks)
    source = source or RunSource()
    loop, state = setup(cfg, run_dir, resuming, overwrite, lock, hooks, loss_fn, source)
    final: EvalResult | None = None  # the last evaluation, which the reports show
    try:
        # Said once the run is under way, so a failed start prints only its one error line.
        loop.callbacks.on_train_start(state, loop.info)
        state.start_clock()
        state.model.train()
        while state.epoch < cfg.optim.epochs and state.step < loop.total_steps:
            clock = train_one_epoch(loop, state)
            shown = end_epoch(loop, state, clock)
            final = shown if shown is not None else final
    finally:
        loop.callbacks.on_train_end(state)
    return finish(loop, state, final)


# -- stage 1: set-up ----------------------------------------------------------------------------


def setup(
    cfg: TrainConfig,
    run_dir: Path,
    resuming: bool,
    overwrite: bool,
    lock: RunLock | None,
    callbacks: Sequence[Callback],
    loss_fn: LossFn | None,
    source: RunSource,
) -> tuple[Loop, TrainState]:
    """Everything before the first step: the process, precision, data, model and optimizer,
    the run folder, and (resuming) the saved state."""
    dinfo, device = start_process(cfg.runtime)
    # After the thread count is set: the probe measures the machine as training will use it.
    decision = decide_precision(cfg.runtime, device, run_dir, resuming, dinfo)
    torch.manual_seed(cfg.run.seed)
    data = source.load_data(cfg, device, dinfo.rank, dinfo.world_size)
    model = source.build_model(cfg, data, device, not resuming)  # resume restores the weights
    steps_per_epoch = optimizer_steps(len(data.train), cfg.optim.accum_steps)
    total_steps = cfg.optim.epochs * steps_per_epoch
    if cfg.optim.max_steps is not None:
        total_steps = min(total_steps, cfg.optim.max_steps)
    state, forward = build_state(cfg, model, data, device, dinfo, steps_per_epoch, total_steps)
    config_text = source.config_yaml(cfg)
    open_run_dir(cfg, run_dir, resuming, overwrite, lock, decision, device, dinfo, config_text)
    if resuming:
        restore(state, run_dir, dinfo)
    if dinfo.is_main:  # only rank 0 writes metrics, shows progress and runs callbacks
        fields = metric_fields(data.val is not None)
        callbacks = [MetricsLog(run_dir, cfg.run.tensorboard, fields=fields), *callbacks]
    else:
        callbacks = []
    loop = Loop(
        cfg,
        run_dir,
        dinfo,
        device,
        decision,
        data,
        forward,
        schedule=build_schedule(cfg.optim, steps_per_epoch, total_steps),
        scaler=torch.amp.GradScaler("cuda", enabled=decision.precision == "fp16"),
        loss_fn=loss_fn or default_loss(cfg.optim, cfg.augment.mixing),
        callbacks=CallbackList(callbacks),
        total_steps=total_steps,
        meta=source.checkpoint_meta(cfg, data, decision.precision, state, run_dir),
        source=source,
    )
    return loop, state


def start_process(runtime: RuntimeConfig) -> tuple[distributed.DistInfo, torch.device]:
    """This process's place in a torchrun launch and its device (checked against the runtime
    settings), with the process group joined and the thread count set."""
    dinfo = distributed.from_environment()
    device = distributed.device_for(dinfo, resolve_device(runtime.device))
    if runtime.precision == "fp16" and device.type != "cuda":
        raise ConfigError("invalid config field 'precision': fp16 needs CUDA; use bf16 on CPU")
    if runtime.sync_bn and device.type != "cuda":
        raise ConfigError("invalid config field 'sync_bn': PyTorch's SyncBatchNorm needs CUDA")
    dinfo = distributed.init(dinfo, device)
    configure_threads(runtime.threads or distributed.threads_per_process(dinfo, available_cores()))
    return dinfo, device


def build_state(
    cfg: TrainConfig,
    model: nn.Module,
    data: Data,
    device: torch.device,
    dinfo: distributed.DistInfo,
    steps_per_epoch: int | None = None,
    total_steps: int | None = None,
) -> tuple[TrainState, nn.Module]:
    """A fresh TrainState (model, optimizer, weight average, the training batches' position),
    and the model as the step calls it (DDP-wrapped under torchrun, compiled if asked)."""
    optimizer = build_optimizer(model, cfg.optim, steps_per_epoch, total_steps)
    wrapped = wrap_distributed(model, cfg.runtime, dinfo, device)
    # The weights that are evaluated and shipped: an average of the trained ones, or them.
    optim = cfg.optim
    ema = WeightEma(model, optim.ema_decay, optim.ema_every) if optim.ema_decay > 0 else None
    forward = torch.compile(wrapped) if cfg.runtime.compile else wrapped
    state = TrainState(model, optimizer, ema, loader=data.train, running=new_running(device))
    return state, forward


def open_run_dir(
    cfg: TrainConfig,
    run_dir: Path,
    resuming: bool,
    overwrite: bool,
    lock: RunLock | None,
    decision: PrecisionDecision,
    device: torch.device,
    dinfo: distributed.DistInfo,
    config_text: str | None = None,
) -> None:
    """Create a new run's folder with its config (`config_text`, by default all of `cfg`) and
    runtime record, take the lock and clear crashed writes; every rank waits until rank 0 is
    done."""
    if not resuming and dinfo.is_main:
        prepare_run_dir(run_dir, cfg, overwrite, config_text)
        write_runtime_record(run_dir, decision, device)
    if lock is not None and not lock.held:
        lock.acquire()
    if dinfo.is_main:
        rundir.clean_stale_temp_files(run_dir / "checkpoints")
    distributed.barrier(dinfo)


def restore(state: TrainState, run_dir: Path, dinfo: distributed.DistInfo) -> None:
    """Load the run's newest intact training state into `state`; RunError if there is none."""
    checkpoints = run_dir / "checkpoints"
    found = ckpt.newest_good_state(checkpoints)
    if found is None:
        raise RunError(f"cannot resume {run_dir}: no intact training state in {checkpoints}")
    path, saved = found
    state.load_state_dict(saved, carry_running=dinfo.is_main)
    log.info("resuming %s from %s (epoch %d, step %d)", run_dir, path.name, state.epoch, state.step)


def checkpoint_meta(
    cfg: TrainConfig, data: Data, precision: str, state: TrainState, run_dir: Path
) -> dict[str, Any]:
    """The metadata of last/best.safetensors: what eval, predict and export need besides the
    weights."""
    return common_meta(cfg, data, precision, state) | {
        "mean": list(data.info.mean),
        "std": list(data.info.std),
        # How the validation split was drawn.
        "val_fraction": cfg.dataset.val_fraction,
        "split_seed": cfg.run.seed,
        # What predict/eval/create_transform need to feed these weights, in timm's keys.
        "pretrained_cfg": trained_cfg(
            data.info,
            state.model.spec.name,
            tag=run_dir.name,
            source=f"resnetkit train ({cfg.data})",
        ),
    }


def common_meta(cfg: TrainConfig, data: Data, precision: str, state: TrainState) -> dict[str, Any]:
    """The checkpoint metadata every run writes, whatever it trains on."""
    return {
        "image_size": list(data.info.image_size),
        "dataset": cfg.data,
        "tta_flip": cfg.eval.tta_flip,  # so `resnetkit eval` measures the way training did
        "tta_translate": cfg.eval.tta_translate,
        "precision": precision,
        "weights": f"ema (decay {cfg.optim.ema_decay})" if state.ema is not None else "trained",
        "selected_on": data.selected_on,  # which split chose best.safetensors
    }


# -- stage 2: an epoch of steps -----------------------------------------------------------------


def train_one_epoch(loop: Loop, state: TrainState) -> EpochClock:
    """Train `state.epoch` from `state.batch` to its end, or until the step budget is spent.

    Each optimizer step trains on a window of `accum_steps` batches (the epoch's last window may
    be shorter: no gradient crosses an epoch); `state.step` counts optimizer steps."""
    loop.callbacks.on_epoch_start(state)
    started = time.perf_counter()
    if state.batch == 0:
        state.running.zero_()
    clock = EpochClock(started, global_running(loop, state)[2].item())
    batches, accum = len(loop.data.train), loop.cfg.optim.accum_steps
    check_window_start(loop, state, batches)
    with contextlib.closing(loop.data.train.iter_from(state.epoch, state.batch)) as stream:
        numbered = enumerate(stream, state.batch)
        while state.batch < batches and state.step < loop.total_steps:
            size = window_size(state.batch, batches, accum)
            window = (
                prepare_batch(loop, state, images, labels, batch)
                for batch, (images, labels) in itertools.islice(numbered, size)
            )
            trained = train_step(loop, state, window, size)
            state.batch += size
            if trained is None:  # the NaN policy skipped it
                continue
            for loss, logits, targets in trained:
                state.count_batch(loss, logits, targets)
            log_step = state.step % loop.cfg.run.log_every_steps == 0
            metrics = step_metrics(loop, state, clock) if log_step else None
            loop.callbacks.on_step_end(state, metrics)
            every = loop.cfg.run.checkpoint_every_steps
            if every and state.step % every == 0:
                save_training_state(loop, state)
    return clock


def check_window_start(loop: Loop, state: TrainState, batches: int) -> None:
    """RunError where a resumed state stands inside an accumulation window: states are saved
    between optimizer steps only, so the gradients of the window's first batches are lost."""
    accum = loop.cfg.optim.accum_steps
    if state.batch % accum and state.batch < batches:
        raise RunError(
            f"cannot resume {loop.run_dir} at batch {state.batch} of epoch {state.epoch + 1}: "
            f"it is inside an accumulation window of {accum} batches (the gradients of its "
            f"first batches were not saved); resume from a state saved between steps"
        )


# Mixing draws from its own stream, apart from the loader's augmentation of the same batch.
MIX_STREAM = 0x6D6978


def prepare_batch(
    loop: Loop, state: TrainState, images: torch.Tensor, labels: torch.Tensor, batch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch as the step trains on it: the one place for per-batch transforms after the
    loader's augmentation (lower-resolution epochs, then mixup or cutmix).

    With mixup or cutmix on, the targets are soft, (N, classes) with label smoothing folded in;
    their draws come from a generator seeded by (seed, epoch, `batch`, rank), like the loader's,
    so a resumed run mixes exactly as an uninterrupted one."""
    augment = loop.cfg.augment
    if state.epoch < augment.low_res_epochs:  # only then: a user's loader may vary its sizes
        images = resize_batch(images, epoch_side(loop.cfg, loop.data, state.epoch))
    if not augment.mixing:
        return images, labels
    key = (loop.cfg.run.seed, state.epoch, batch, loop.dinfo.rank, MIX_STREAM)
    generator = torch.Generator().manual_seed(derive_seed(*key))  # on the CPU: no device sync
    classes = len(loop.data.info.class_names)
    smoothing = loop.cfg.optim.label_smoothing
    return mix_batch(images, labels, classes, augment, generator, smoothing)


def epoch_side(cfg: TrainConfig, data: Data, epoch: int) -> int:
    """The image side epoch `epoch` trains at (smaller in the lower-resolution epochs)."""
    full = min(data.info.image_size)
    return train_resolution(epoch, full, cfg.augment.low_res_size, cfg.augment.low_res_epochs)


Trained = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # a batch's loss, logits, targets


def train_step(
    loop: Loop,
    state: TrainState,
    window: Iterable[tuple[torch.Tensor, torch.Tensor]],
    size: int = 1,
) -> list[Trained] | None:
    """One optimizer step on a window of `size` batches (gradient accumulation when above 1):
    each batch's loss, logits and targets, or None if the NaN policy skipped the step."""
    lr = loop.schedule(state.step)
    for group in state.optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    state.optimizer.zero_grad(set_to_none=True)
    trained: list[Trained] = []
    skipped = False
    for index, (images, targets) in enumerate(window):
        if skipped:
            continue  # the rest of a skipped window is read, so the next one starts in place
        # Under DDP only the window's last backward all-reduces the (accumulated) gradients.
        with gradient_sync(loop.forward, index == size - 1):
            result = forward_backward(loop, state, images, targets, size)
        skipped = result is None
        trained.append(result)
    if skipped:
        state.step += 1  # a skipped step still moves the schedule on
        return None
    apply_update(loop, state)
    return trained


def gradient_sync(forward: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """DDP's `no_sync()` for a batch whose gradients only accumulate; otherwise nothing."""
    ddp = getattr(forward, "_orig_mod", forward)  # under torch.compile, the module it wraps
    if sync or not isinstance(ddp, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return ddp.no_sync()


def forward_backward(
    loop: Loop,
    state: TrainState,
    images: torch.Tensor,
    targets: torch.Tensor,
    window: int = 1,
) -> Trained | None:
    """Forward, loss and backward; None, with no backward, where the NaN policy skips the batch.

    The loss is divided by the `window` of batches that share the optimizer step, so their
    summed gradients are the mean over the window: those of one batch `window` times larger
    (exactly so for equal batches and a network without BatchNorm)."""
    with autocast(loop.device, loop.precision):
        logits = loop.forward(images)
        loss = loop.loss_fn(logits, targets)
    if not loss_is_usable(loop, state, loss):
        return None
    loop.scaler.scale(loss / window if window > 1 else loss).backward()
    return loss, logits, targets


def loss_is_usable(loop: Loop, state: TrainState, loss: torch.Tensor) -> bool:
    """The NaN policy: a loss that is not finite on some rank skips its step, up to
    `max_bad_steps` times; one more stops the run (checked every `loop.check_every` steps)."""
    if (state.step + 1) % loop.check_every or finite_everywhere(loss, loop.dinfo):
        return True
    state.bad_steps += 1
    if state.bad_steps > loop.cfg.optim.max_bad_steps:
        kept = (
            f"The last good checkpoint is kept in {loop.checkpoints}. "
            if ckpt.list_states(loop.checkpoints)
            else "No checkpoint was written before it. "
        )
        raise NonFiniteLossError(
            f"loss is {loss.item()} at epoch {state.epoch + 1}, step {state.step}; stopped. "
            f"{kept}Lower --lr, or allow skips with max_bad_steps"
        )
    log.warning("non-finite loss at step %d skipped (%d so far)", state.step, state.bad_steps)
    return False


def apply_update(loop: Loop, state: TrainState) -> None:
    """Gradient clipping (with `clip_grad_norm`), the optimizer step on the gradients backward
    left, then the weight average."""
    max_norm = loop.cfg.optim.clip_grad_norm
    if max_norm is not None:
        # Under fp16 the gradients still carry the loss scale: unscale them first, so the norm
        # measured and clipped is the true one (scaler.step then does not unscale again, and
        # still skips the step if the norm is not finite).
        loop.scaler.unscale_(state.optimizer)
        state.grad_norm = clip_gradients(state.model.parameters(), max_norm)
    loop.scaler.step(state.optimizer)
    loop.scaler.update()
    state.step += 1
    if state.ema is not None:
        state.ema.update(state.model, state.step)


def global_running(loop: Loop, state: TrainState) -> torch.Tensor:
    """Loss sum, correct and seen over every rank (collective: all ranks call it)."""
    return distributed.all_reduce_sum(state.running.clone(), loop.dinfo)


def step_metrics(loop: Loop, state: TrainState, clock: EpochClock) -> StepMetrics:
    """The epoch's running means over every rank: a collective and a host sync, so only on
    logging steps."""
    loss_sum, correct, seen = global_running(loop, state).tolist()
    images_per_s = (seen - clock.seen) / max(time.perf_counter() - clock.started, 1e-9)
    batches = len(loop.data.train)
    accuracy = correct / seen
    grad_norm = float(state.grad_norm) if state.grad_norm is not None else None
    return StepMetrics(
        state.step,
        state.epoch,
        state.batch,
        batches,
        loss_sum / seen,
        accuracy,
        images_per_s,
        grad_norm,
    )


def save_training_state(loop: Loop, state: TrainState) -> None:
    """state-<step>.pt, written by rank 0 once the weights are known to be finite."""
    check_finite_weights(state.model, f"at epoch {state.epoch + 1}, step {state.step}")
    totals = global_running(loop, state)  # collective: every rank takes part before rank 0 writes
    if loop.dinfo.is_main:
        keep = loop.cfg.run.keep_checkpoints
        ckpt.save_state(loop.checkpoints, state.step, state.state_dict(totals), keep)


# -- stage 3: the end of an epoch ---------------------------------------------------------------


def end_epoch(loop: Loop, state: TrainState, clock: EpochClock) -> EvalResult | None:
    """Evaluate, record the epoch's row, write the model checkpoints and the training state,
    then tell the callbacks. Returns the evaluation the reports show (None if not evaluated)."""
    epoch_time = time.perf_counter() - clock.started
    totals = global_running(loop, state).tolist()
    results = evaluate_epoch(loop, state)
    row = epoch_row(loop, state, totals, epoch_time, clock, results)
    state.history.append(row)
    check_finite_weights(state.model, f"after epoch {state.epoch + 1}")
    if loop.dinfo.is_main:
        save_model_checkpoints(loop, state, row, results)
    state.epoch, state.batch = state.epoch + 1, 0
    save_training_state(loop, state)
    loop.callbacks.on_epoch_end(state, row)
    return results.get("test", results.get("val"))  # test, or val where there is no test


def evaluate_epoch(loop: Loop, state: TrainState) -> dict[str, EvalResult]:
    """Rank 0 evaluates the held-out splits every `eval_every` epochs and after the last one;
    the other ranks wait at the next collective."""
    cfg = loop.cfg
    last = state.epoch + 1 == cfg.optim.epochs or state.step >= loop.total_steps
    if not loop.dinfo.is_main or ((state.epoch + 1) % cfg.eval.eval_every and not last):
        return {}
    return evaluate_held_out(state.eval_model, loop.data, cfg.eval, loop.precision, last)


def epoch_row(
    loop: Loop,
    state: TrainState,
    totals: list[float],
    epoch_time: float,
    clock: EpochClock,
    results: dict[str, EvalResult],
) -> dict[str, Any]:
    """The epoch's line of metrics.csv."""
    loss_sum, correct, seen = totals
    with_val = loop.data.val is not None
    return {
        "epoch": state.epoch + 1,
        "step": state.step,
        "lr": loop.schedule(max(state.step - 1, 0)),
        "train_loss": loss_sum / max(seen, 1),
        "train_acc": correct / max(seen, 1),
        **(split_columns("val", results.get("val")) if with_val else {}),
        **split_columns("test", results.get("test")),
        "images_per_s": (seen - clock.seen) / max(epoch_time, 1e-9),
        "epoch_time": epoch_time,
        "elapsed": state.seconds_trained(),
    }


def save_model_checkpoints(
    loop: Loop, state: TrainState, row: dict[str, Any], results: dict[str, EvalResult]
) -> None:
    """last.safetensors every epoch; a copy as best.safetensors when the split that chooses
    (validation, or test without one) reached a new best."""
    data, checkpoints = loop.data, loop.checkpoints
    extra = dict(loop.meta, epoch=row["epoch"], test_acc=row["test_acc"])
    if data.val is not None:
        extra["val_acc"] = row["val_acc"]
    last = checkpoints / "last.safetensors"
    ckpt.save_model_checkpoint(state.eval_model, last, data.info.class_names, extra)
    if state.ema is not None:  # the trained weights too, beside their average
        raw = {k: v for k, v in extra.items() if k not in ("test_acc", "val_acc")}
        raw_path = checkpoints / RAW_CHECKPOINT
        ckpt.save_model_checkpoint(state.model, raw_path, data.info.class_names, raw | RAW_META)
    chosen = results.get(data.selected_on)
    if chosen is not None and chosen.top1 > state.best:
        state.best = chosen.top1
        ckpt.copy_checkpoint(last, checkpoints / "best.safetensors")


# -- stage 4: the end of training ---------------------------------------------------------------


def finish(loop: Loop, state: TrainState, final: EvalResult | None) -> TrainResult:
    """Write the reports (rank 0), leave the process group, and say how the run went."""
    wall = state.seconds_trained()
    cfg, data, history = loop.cfg, loop.data, state.history
    raw = evaluate_raw(loop, state, final)
    if history and loop.dinfo.is_main:
        note = selection_note(data, cfg, best_row(history, data.selected_on))
        _write_final_report(
            loop.run_dir, history, (final, raw), data, cfg, wall, loop.decision, note
        )
        _write_html_report(
            loop.run_dir,
            history,
            final,
            data,
            state.eval_model,
            cfg,
            wall,
            loop.decision,
            note,
            settings=loop.source.config_dict(cfg),
        )
    distributed.barrier(loop.dinfo)
    distributed.shutdown(loop.dinfo)
    return TrainResult(
        loop.run_dir,
        history,
        state.best,
        final,
        wall,
        data.info.class_names,
        loop.dinfo.is_main,
        data.selected_on,
        raw,
    )


def evaluate_raw(loop: Loop, state: TrainState, final: EvalResult | None) -> EvalResult | None:
    """With a weight average: the trained weights on the split `final` is of (rank 0, after
    the last epoch's evaluation), so the report can compare the two."""
    if state.ema is None or final is None or not loop.dinfo.is_main:
        return None
    data, cfg = loop.data, loop.cfg.eval
    loader = data.test if data.test is not None else data.val
    classes = len(data.info.class_names)
    return evaluate(state.model, loader, classes, cfg.tta_flip, loop.precision, cfg.tta_translate)


def evaluate_held_out(
    model: nn.Module, data: Data, cfg: EvalConfig, precision: str, last_epoch: bool
) -> dict[str, EvalResult]:
    """The validation and test splits that exist, evaluated alike; the split the report shows
    (test, else val) collects the most confident mistakes in the last epoch's own pass (not
    for a user's DataLoaders, whose images the report cannot show)."""
    shown = "test" if data.test is not None else "val"
    keep = 0 if data.from_user else REPORT_MISTAKES
    results = {}
    for split, loader in (("val", data.val), ("test", data.test)):
        if loader is not None:
            results[split] = evaluate(
                model,
                loader,
                len(data.info.class_names),
                cfg.tta_flip,
                precision,
                cfg.tta_translate,
                keep_mistakes=keep if last_epoch and split == shown else 0,
            )
    return results


def split_columns(split: str, result: EvalResult | None) -> dict[str, float | None]:
    """The metrics columns of one evaluated split (None in epochs without evaluation)."""
    return {
        f"{split}_loss": result.loss if result is not None else None,
        f"{split}_acc": result.top1 if result is not None else None,
        f"{split}_top5": result.top5 if result is not None else None,
    }


def selection_note(data: Data, cfg: TrainConfig, best: dict[str, Any] | None) -> str:
    """How best.safetensors was chosen, in one sentence for the reports."""
    epoch = f"epoch {int(best['epoch'])}" if best else "no evaluated epoch"
    if data.val is None and data.test is None:
        return (
            "not selected: there was no validation or test data, so nothing was evaluated and "
            "there is no best.safetensors; last.safetensors holds the final weights"
        )
    if data.val is None:
        why = "no val_loader was given" if data.from_user else "val_fraction 0"
        return (
            f"selected on test: best.safetensors ({epoch}) was chosen on the test split "
            f"({why}), so its test accuracy is optimistic"
        )
    held_out = (
        f"{data.val_count:,} validation images held out from training (val_fraction "
        f"{cfg.dataset.val_fraction:g}, stratified by class, seed {cfg.run.seed})"
    )
    if data.from_user:
        held_out = "the val_loader" + (f" ({data.val_count:,} images)" if data.val_count else "")
    if data.test is None:
        missing = "no test_loader was given" if data.from_user else "the data has no test split"
        return (
            f"selected on val: best.safetensors ({epoch}) was chosen on {held_out}; {missing}, "
            f"so every accuracy reported is on that validation split"
        )
    return (
        f"selected on val: best.safetensors ({epoch}) was chosen on {held_out}; the test "
        f"split is only reported"
    )


def _write_final_report(
    run_dir: Path,
    history: list[dict[str, float]],
    results: tuple[EvalResult | None, EvalResult | None],
    data: Data,
    cfg: TrainConfig,
    wall: float,
    decision: PrecisionDecision,
    selection: str,
) -> None:
    """report.md; `results`: the last evaluation, and the raw weights' beside an average."""
    final, raw = results
    try:
        write_run_report(
            run_dir,
            history,
            final,
            data.info.class_names,
            cfg,
            wall,
            decision.as_dict(),
            selected_on=data.selected_on,
            selection=selection,
            raw_accuracy=raw.top1 if raw is not None else None,
        )
    except Exception as exc:  # a plotting problem must not lose a finished run
        log.warning("could not write the report: %s", exc)


def _write_html_report(
    run_dir: Path,
    history: list[dict[str, float]],
    final: EvalResult | None,
    data: Data,
    model: nn.Module,
    cfg: TrainConfig,
    wall: float,
    decision: PrecisionDecision,
    selection: str,
    settings: dict[str, Any] | None = None,
) -> None:
    """report.html: the run on one self-contained page, with its most confident mistakes and
    its `settings` (default: the whole config)."""

    last = history[-1]
    summary = [
        ("model", cfg.model),
        ("data", cfg.data),
        ("epochs, steps", f"{int(last['epoch'])}, {int(last['step'])}"),
        ("wall time", format_duration(wall)),
        ("throughput", f"{last['images_per_s']:,.0f} images/s (last epoch)"),
        ("precision", f"{decision.precision} ({decision.reason})"),
        ("weights evaluated", "EMA" if cfg.optim.ema_decay > 0 else "as trained"),
        ("model selection", selection),
    ]
    if final is not None:
        shown = "test" if data.test is not None else "val"
        summary.insert(2, (f"{shown} accuracy", f"{final.top1:.2%} (top-5 {final.top5:.2%})"))
    try:
        mistakes = (
            explain_mistakes(model, final.mistakes, data.info.mean, data.info.std) if final else []
        )
        page = ReportPage(
            title=f"{cfg.model} on {cfg.data}",
            summary=summary,
            class_names=data.info.class_names,
            confusion=final.confusion if final else None,
            per_class_accuracy=tuple(final.per_class_accuracy) if final else (),
            mistakes=tuple(mistakes),
            history=tuple(history),
            config=cfg.to_dict() if settings is None else settings,
        )
        write_page(run_dir / "report.html", page)
    except Exception as exc:  # a plotting problem must not lose a finished run
        log.warning("could not write report.html: %s", exc)


__all__ = [
    "DataError",
    "NonFiniteLossError",
    "RunError",
    "TrainConfig",
    "TrainResult",
    "build_optimizer",
    "build_schedule",
    "param_groups",
    "train",
]
