"""`resnetkit.fit`: train any `nn.Module` on your own DataLoaders, with `resnetkit train`'s run
folder, resume and report.

    import resnetkit as rk

    result = rk.fit(model, train_loader, val_loader=val_loader, epochs=10, lr=0.05)
    rk.fit(model, train_loader, val_loader=val_loader, epochs=10, lr=0.05, resume=result.run_dir)

The model maps float batches (N, C, H, W) to logits (N, classes); the loaders yield (images,
labels) pairs, already transformed and normalised as the model wants them. The loop is
`training.train`'s, stage for stage (precision, EMA, schedule, NaN policy, callbacks, DDP); only
what is trained on what comes from here, as a `LoaderSource`. The options are the fields of
the config's optim, runtime, eval and run sections, as keywords or a `config`; the DataLoaders
own the rest (data, augmentation, batch sizes). What a resume reproduces of a loader's order is
in `data/user_loader.py`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

from ..data.base import DataError, DatasetInfo
from ..data.user_loader import (
    UserLoader,
    check_loader,
    check_sharding,
    describe,
    describe_loader,
)
from ..weights.pretrained import freeze_backbone
from .callbacks import Callback
from .config import SECTIONS, AugmentConfig, ConfigError, TrainConfig, config_options
from .progress import Progress
from .rundir import RunError
from .state import TrainState
from .train import Data, LossFn, RunSource, TrainResult, common_meta, train

__all__ = ["FIT_OPTIONS", "LoaderSource", "fit"]

MADE_BY = "resnetkit.fit"
USER_DATA = "user DataLoader"
RESUME_WITH = "rk.fit(model, train_loader, ..., resume=RUN_FOLDER), with a model of the same class"
FIT_SECTIONS = ("optim", "runtime", "eval", "run")
# Fields of those sections that the DataLoaders own.
NOT_FOR_FIT = {
    "batch_size": "the train_loader's batch size is used; set it there",
    "eval_batch_size": "the val and test loaders' batch size is used; set it there",
}
# Batch mixing acts in the loop on whatever batches arrive, so it applies to a user's loaders.
MIX_OPTIONS = ("mixup_alpha", "cutmix_alpha", "mix_prob", "mix_switch_prob")
FIT_OPTIONS = (
    *(
        spec.name
        for section, spec in config_options()
        if section in FIT_SECTIONS and spec.name not in NOT_FOR_FIT
    ),
    *MIX_OPTIONS,
)
LENGTH_KEYS = ("samples", "batch_size", "batches")  # a resumed train_loader must match these
NO_AUGMENT = AugmentConfig(crop_padding=0, flip=False)  # the DataLoader's transforms augment
HEADER = (
    "# Made by resnetkit.fit: a user's nn.Module on the user's DataLoaders (recorded in extra).\n"
    "# Resume: rk.fit(model, train_loader, ..., resume=<this folder>). Weights: build the model,\n"
    "# then rk.load_weights(model, '<this folder>/checkpoints/best.safetensors').\n"
)


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    *,
    val_loader: DataLoader | None = None,
    test_loader: DataLoader | None = None,
    config: TrainConfig | Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    callbacks: Sequence[Callback] = (),
    loss_fn: LossFn | None = None,
    progress: Progress | bool | None = None,
    resume: str | Path | None = None,
    overwrite: bool = False,
    **options: Any,
) -> TrainResult:
    """Train `model` on `train_loader` in a run folder; return how it went (`TrainResult`).

    `val_loader` chooses `checkpoints/best.safetensors` (else `test_loader` does, and the
    report says so); `test_loader` is evaluated for the report. `options` (or `config`, a
    `TrainConfig` or a mapping) are the fields of the optim, runtime, eval and run sections:
    `epochs=10, lr=0.05, precision="bf16", ema_decay=0.999, out_dir="runs", name="mine"`.
    `class_names` default to the train dataset's `classes`, else "0", "1", ...

    The module is trained in place and moved to the device. `resume=RUN_FOLDER` continues
    that run from its newest state into a fresh model of the same class (the options given
    again may change only what resuming allows, such as more epochs of a step schedule).
    `callbacks`, `loss_fn` and `progress` (`True` for the default display) are `train`'s.
    """
    source = LoaderSource(model, train_loader, val_loader, test_loader, class_names)
    shown = Progress() if progress is True else progress or None
    hooks = dict(progress=shown, callbacks=callbacks, loss_fn=loss_fn, source=source)
    if resume is not None:
        changes = given_options(config, options)
        return train(None, resume=resume, resume_changes=changes, **hooks)
    return train(fit_config(config, options, source.describe()), overwrite, **hooks)


# -- the configuration --------------------------------------------------------------------------


def as_train_config(config: TrainConfig | Mapping[str, Any] | None) -> TrainConfig:
    if config is None:
        return TrainConfig()
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, Mapping):
        return TrainConfig.from_dict(config)
    raise TypeError(f"config must be a TrainConfig or a mapping, got {type(config).__name__}")


def check_options(options: Mapping[str, Any]) -> None:
    """TypeError for a keyword fit does not know; ConfigError for a config field that the
    DataLoaders own."""
    known = {spec.name for _, spec in config_options()}
    for name in options:
        if name in NOT_FOR_FIT:
            raise ConfigError(f"invalid fit option '{name}': {NOT_FOR_FIT[name]}")
        if name in known and name not in FIT_OPTIONS:
            raise ConfigError(
                f"invalid fit option '{name}': it configures resnetkit's own data and models; "
                f"fit trains the model and DataLoaders it is given"
            )
        if name not in FIT_OPTIONS:
            close = difflib.get_close_matches(name, FIT_OPTIONS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise TypeError(f"fit() got an unexpected keyword argument '{name}'{hint}")


def fit_config(
    config: TrainConfig | Mapping[str, Any] | None,
    options: Mapping[str, Any],
    extra: Mapping[str, Any],
) -> TrainConfig:
    """The run's TrainConfig: the fit options of `config` with `options` on top, the model and
    data as `extra` describes them, and no augmentation of resnetkit's own."""
    check_options(options)
    given = as_train_config(config)
    defaults, values = TrainConfig().to_dict(), given.to_dict()
    foreign = [
        k for k, v in values.items() if k not in (*FIT_OPTIONS, "extra") and v != defaults[k]
    ]
    if foreign:
        raise ConfigError(
            f"invalid config for fit: {', '.join(foreign)} do not apply; fit trains the model "
            f"and DataLoaders it is given (their transforms and batch sizes are used)"
        )
    sections = {name: getattr(given, name) for name in FIT_SECTIONS}
    return TrainConfig(
        model=extra["model"],
        data=USER_DATA,
        augment=fit_augment(given.augment),
        extra=extra,
        **sections,
        **options,
    )


def fit_augment(augment: AugmentConfig) -> AugmentConfig:
    """No augmentation of resnetkit's own (the DataLoaders' transforms augment), but the batch
    mixing `augment` asks for."""
    return dataclasses.replace(NO_AUGMENT, **{k: getattr(augment, k) for k in MIX_OPTIONS})


def given_options(
    config: TrainConfig | Mapping[str, Any] | None, options: Mapping[str, Any]
) -> dict[str, Any]:
    """The fit options `config` and `options` name, as config.yaml writes them: what a resumed
    run is asked to change (it refuses what resuming cannot change)."""
    check_options(options)
    if isinstance(config, TrainConfig):
        named = set(FIT_OPTIONS)
    elif isinstance(config, Mapping):
        nested = (config[s] or {} for s in SECTIONS if isinstance(config.get(s), Mapping))
        named = {k for k in config if k not in SECTIONS} | {k for part in nested for k in part}
    else:
        named = set()
    values = as_train_config(config).replace(**options).to_dict()
    return {k: values[k] for k in sorted(named & set(FIT_OPTIONS) | set(options))}


def fit_settings(cfg: TrainConfig) -> dict[str, dict[str, Any]]:
    """The settings of a fit run by section: model and data, the options that apply, extra."""
    nested = cfg.to_dict(sections=True)
    settings = {"": {"model": cfg.model, "data": cfg.data}}
    for section in FIT_SECTIONS:
        settings[section] = {k: v for k, v in nested[section].items() if k in FIT_OPTIONS}
    settings["augment"] = {k: nested["augment"][k] for k in MIX_OPTIONS}
    settings["the model and DataLoaders as fit saw them"] = {"extra": dict(cfg.extra)}
    return settings


def fit_config_yaml(cfg: TrainConfig) -> str:
    """config.yaml of a fit run: flat keys under section comments, as `TrainConfig.to_yaml`
    writes them, without the settings that the DataLoaders own."""
    parts = [HEADER]
    for title, values in fit_settings(cfg).items():
        parts.append((f"# {title}\n" if title else "") + yaml.safe_dump(values, sort_keys=False))
    return "".join(parts)


# -- the model and loaders ----------------------------------------------------------------------


def describe_model(model: nn.Module) -> dict[str, Any]:
    """The model as config.yaml records it: its class and parameter counts."""
    params = [p for p in model.parameters() if not nn.parameter.is_lazy(p)]
    return {
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "parameters": sum(p.numel() for p in params),
        "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
    }


def forward_first(model: nn.Module, images: torch.Tensor, name: str) -> torch.Tensor:
    """The model's output for a loader's first batch, in eval mode and without gradients;
    DataError naming the batch where the model cannot take it."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(images)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"model(images) fails on {name}'s first batch ({describe(images)}): {reason}"
        ) from exc
    finally:
        model.train(was_training)


def check_outputs(model: nn.Module, firsts: Mapping[str, tuple[torch.Tensor, ...]]) -> int:
    """The number of classes the model's logits have, checked on each loader's first batch:
    logits (N, classes), and every label a class index below that."""
    num_classes = 0
    for split, (images, labels) in firsts.items():
        name = f"{split}_loader"
        logits = forward_first(model, images, name)
        if not (
            isinstance(logits, torch.Tensor) and logits.ndim == 2 and len(logits) == len(images)
        ):
            raise DataError(
                f"model(images) must return logits (N, classes); for {name}'s first batch "
                f"({describe(images)}) it returned {describe(logits)}"
            )
        num_classes = num_classes or logits.shape[1]
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if len(bad):
            raise DataError(
                f"{name} batch 0: label {int(bad[0])} is not a class of the model's "
                f"{num_classes} logits (labels are class indices 0..{num_classes - 1})"
            )
    return num_classes


def class_names_for(
    given: tuple[str, ...] | None, num_classes: int, dataset: Any
) -> tuple[str, ...]:
    """`given`, else the dataset's `classes` (as torchvision datasets have), else numbers."""
    if given is not None:
        if len(given) != num_classes:
            raise DataError(
                f"class_names has {len(given)} names but the model gives {num_classes} logits"
            )
        return given
    found = getattr(dataset, "classes", None)
    named = isinstance(found, Sequence) and all(isinstance(name, str) for name in found)
    if named and len(found) == num_classes:
        return tuple(found)
    return tuple(str(i) for i in range(num_classes))


class LoaderSource(RunSource):
    """A user's module and DataLoaders as what a run trains on what (see `RunSource`)."""

    made_by = MADE_BY

    def __init__(
        self,
        model: nn.Module,
        train_loader: DataLoader,
        val_loader: DataLoader | None,
        test_loader: DataLoader | None,
        class_names: Sequence[str] | None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_loader(train_loader, "train_loader")
        for name, loader in (("val_loader", val_loader), ("test_loader", test_loader)):
            if loader is not None:
                check_loader(loader, name, need_length=False)
        self.model = model
        self.loaders = {"train": train_loader, "val": val_loader, "test": test_loader}
        self.class_names = None if class_names is None else tuple(map(str, class_names))

    def describe(self) -> dict[str, Any]:
        """config.yaml's `extra`: who made the run, the model and the loaders."""
        return {
            "made_by": MADE_BY,
            "resume_with": RESUME_WITH,
            "model": type(self.model).__name__,
            **describe_model(self.model),
            "loaders": {k: describe_loader(v) for k, v in self.loaders.items() if v is not None},
        }

    def load_data(self, cfg: TrainConfig, device: torch.device, rank: int, world: int) -> Data:
        """The loaders wrapped for the loop, each checked on its first batch (the model too,
        on the device: logits for every label), before the run folder exists."""
        batches = {
            split: UserLoader(loader, f"{split}_loader", device, cfg.runtime.channels_last)
            for split, loader in self.loaders.items()
            if loader is not None
        }
        for split, loader in batches.items():
            check_sharding(loader.loader, loader.name, world, train=split == "train")
        firsts = {split: loader.first_batch() for split, loader in batches.items()}
        train_batches, images = batches["train"], firsts["train"][0]
        train_batches.image_size = (images.shape[-2], images.shape[-1])
        num_classes = check_outputs(self.model.to(device), firsts)
        dataset = self.loaders["train"].dataset
        names = class_names_for(self.class_names, num_classes, dataset)
        channels = images.shape[1]
        info = DatasetInfo(
            USER_DATA,
            names,
            channels,
            train_batches.image_size,
            (0.0,) * channels,
            (1.0,) * channels,
        )
        val = self.loaders["val"]
        val_count = len(val.dataset) if val is not None and hasattr(val.dataset, "__len__") else 0
        test = batches.get("test")
        return Data(train_batches, test, info, batches.get("val"), val_count, from_user=True)

    def build_model(
        self, cfg: TrainConfig, data: Data, device: torch.device, load_pretrained: bool
    ) -> nn.Module:
        """The user's module on the device (frozen but for its classifier, if asked)."""
        model = self.model.to(device)
        optim = cfg.optim
        needs_head = optim.freeze_backbone or optim.backbone_lr_scale != 1.0
        if needs_head and not callable(getattr(model, "get_classifier", None)):
            field = "freeze_backbone" if optim.freeze_backbone else "backbone_lr_scale"
            raise ConfigError(
                f"invalid config field '{field}': it needs a model with get_classifier() "
                f"(resnetkit's and timm's have one); {type(model).__name__} has none"
            )
        if optim.freeze_backbone:
            freeze_backbone(model)
        if cfg.runtime.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def config_yaml(self, cfg: TrainConfig) -> str:
        return fit_config_yaml(cfg)

    def config_dict(self, cfg: TrainConfig) -> dict[str, Any]:
        return {k: v for values in fit_settings(cfg).values() for k, v in values.items()}

    def saved_config(self, cfg: TrainConfig, run_dir: Path) -> TrainConfig:
        """The saved config, once the run is known to be a fit run of a model like this one,
        on a train_loader of the same length."""
        cfg = super().saved_config(cfg, run_dir)
        saved = (cfg.extra.get("model"), cfg.extra.get("parameters"))
        given = (type(self.model).__name__, describe_model(self.model)["parameters"])
        if saved != given:
            raise RunError(
                f"cannot resume {run_dir}: it trained a {saved[0]} of {saved[1]:,} parameters, "
                f"but the model given is a {given[0]} of {given[1]:,}"
            )
        trained = cfg.extra.get("loaders", {}).get("train", {})
        now = describe_loader(self.loaders["train"])
        if any(trained.get(key) != now[key] for key in LENGTH_KEYS):
            was, has = (", ".join(f"{k} {d.get(k)}" for k in LENGTH_KEYS) for d in (trained, now))
            raise RunError(
                f"cannot resume {run_dir}: its train_loader had {was}; the one given has {has}"
            )
        return cfg.replace(augment=fit_augment(cfg.augment))

    def checkpoint_meta(
        self, cfg: TrainConfig, data: Data, precision: str, state: TrainState, run_dir: Path
    ) -> dict[str, Any]:
        """No normalisation or spec of ours: the weights load into the user's own module."""
        return common_meta(cfg, data, precision, state) | {
            "model_class": cfg.extra.get("model_class"),
            "parameters": cfg.extra.get("parameters"),
            "load_with": "rk.load_weights(model, path), model built as for training",
        }
