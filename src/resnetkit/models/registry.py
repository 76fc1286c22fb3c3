"""Names for the classic ResNets: each one is a `ResNetSpec`, never a class of its own.

The table of names only; `resnetkit.weights.factory.create_model` builds a model from a name
and loads its weights."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .spec import ResNetSpec, StageSpec


class UnknownModelError(ValueError):
    """A model name that is not registered; the message suggests the closest names."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    spec: ResNetSpec
    description: str
    paper: str


_REGISTRY: dict[str, ModelEntry] = {}

HE2015 = "He et al. 2015, Deep Residual Learning for Image Recognition"
HE2016 = "He et al. 2016, Identity Mappings in Deep Residual Networks"
XIE2017 = "Xie et al. 2017, Aggregated Residual Transformations (ResNeXt)"
ZAGORUYKO2016 = "Zagoruyko & Komodakis 2016, Wide Residual Networks"
PAGE2018 = "Page 2018, How to Train Your ResNet (Myrtle.ai; the DAWNBench CIFAR-10 ResNet-9)"
JORDAN2024 = "Jordan 2024, 94% on CIFAR-10 in 3.29 Seconds on a Single GPU (airbench)"

IMAGENET_WIDTHS = (64, 128, 256, 512)
IMAGENET_STRIDES = (1, 2, 2, 2)
CIFAR_WIDTHS = (16, 32, 64)
CIFAR_STRIDES = (1, 2, 2)


def _stages(blocks: tuple[int, ...], widths: tuple[int, ...], strides: tuple[int, ...]):
    return tuple(StageSpec(b, w, s) for b, w, s in zip(blocks, widths, strides, strict=True))


def register(name: str, spec: ResNetSpec, description: str, paper: str) -> None:
    """Add a named spec to the registry (names are unique)."""
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} is already registered")
    _REGISTRY[name] = ModelEntry(name, spec.replace(name=name), description, paper)


def _imagenet(blocks, block, **kw) -> ResNetSpec:
    return ResNetSpec(stages=_stages(blocks, IMAGENET_WIDTHS, IMAGENET_STRIDES), block=block, **kw)


def _cifar(blocks_per_stage: int, block: str = "basic", widths=CIFAR_WIDTHS, **kw) -> ResNetSpec:
    kw.setdefault("shortcut", "A")
    return ResNetSpec(
        stages=_stages((blocks_per_stage,) * 3, widths, CIFAR_STRIDES),
        block=block,
        stem="cifar",
        stem_width=16,
        num_classes=10,
        **kw,
    )


# ImageNet depth -> (unit, blocks per stage), He et al. 2015, Table 1.
IMAGENET_DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


def _register_builtin() -> None:
    """The built-in names, in the order `list_models` gives them."""
    _register_imagenet()
    _register_cifar()
    _register_cifar_tutorials()
    _register_cifar_fast()


def _register_imagenet() -> None:
    for depth, (block, blocks) in IMAGENET_DEPTHS.items():
        register(f"resnet{depth}", _imagenet(blocks, block), f"ResNet-{depth}, ImageNet", HE2015)
    for depth, (block, blocks) in IMAGENET_DEPTHS.items():
        register(
            f"preact_resnet{depth}",
            _imagenet(blocks, block, preact=True),
            f"pre-activation ResNet-{depth}, ImageNet",
            HE2016,
        )
    for depth in (50, 101):
        blocks = IMAGENET_DEPTHS[depth][1]
        register(
            f"wide_resnet{depth}_2",
            _imagenet(blocks, "bottleneck", width_per_group=128),
            f"Wide ResNet-{depth}-2 (3x3 convs twice as wide), ImageNet",
            ZAGORUYKO2016,
        )
    for depth, groups, per_group in ((50, 32, 4), (101, 32, 8), (101, 64, 4)):
        register(
            f"resnext{depth}_{groups}x{per_group}d",
            _imagenet(
                IMAGENET_DEPTHS[depth][1], "bottleneck", groups=groups, width_per_group=per_group
            ),
            f"ResNeXt-{depth} ({groups}x{per_group}d), ImageNet",
            XIE2017,
        )


def _register_cifar() -> None:
    # CIFAR nets of He et al. 2015, section 4.2: 6n+2 layers, 16/32/64 filters, option A.
    for depth in (8, 14, 20, 32, 44, 56, 110, 1202):
        n = (depth - 2) // 6
        register(f"resnet{depth}", _cifar(n), f"ResNet-{depth}, CIFAR (6n+2, n={n})", HE2015)
    for depth in (20, 32, 44, 56, 110):
        n = (depth - 2) // 6
        register(
            f"plain{depth}",
            _cifar(n, shortcut="none"),
            f"plain {depth}-layer net (ResNet-{depth} without shortcuts), CIFAR",
            HE2015,
        )
    # Pre-activation CIFAR nets of He et al. 2016 use 1x1 projections where the shape changes,
    # as in the authors' released code.
    register(
        "preact_resnet110",
        _cifar(18, preact=True, shortcut="B"),
        "pre-activation ResNet-110 (basic), CIFAR",
        HE2016,
    )
    for depth in (164, 1001):
        n = (depth - 2) // 9
        register(
            f"preact_resnet{depth}",
            _cifar(n, "bottleneck", preact=True, shortcut="B"),
            f"pre-activation ResNet-{depth} (bottleneck, 9n+2, n={n}), CIFAR",
            HE2016,
        )
    # Wide ResNets for CIFAR: WRN-d-k, pre-activation basic units, widths 16k/32k/64k.
    for depth, k in ((16, 2), (16, 8), (28, 10), (40, 4)):
        n = (depth - 4) // 6
        register(
            f"wrn{depth}_{k}",
            _cifar(n, widths=(16 * k, 32 * k, 64 * k), preact=True, shortcut="B"),
            f"Wide ResNet WRN-{depth}-{k}, CIFAR",
            ZAGORUYKO2016,
        )


def _register_cifar_tutorials() -> None:
    # The tutorials' CIFAR ResNet-18/34/50: ImageNet stages with a 3x3/1 stem and no max-pool.
    for depth in (18, 34, 50):
        block, blocks = IMAGENET_DEPTHS[depth]
        register(
            f"resnet{depth}_cifar",
            _imagenet(blocks, block, stem="cifar", num_classes=10),
            f"ResNet-{depth} with a 3x3 stem and no max-pool, CIFAR (32x32)",
            HE2015,
        )
    register(
        "preact_resnet18_cifar",
        _imagenet(IMAGENET_DEPTHS[18][1], "basic", stem="cifar", preact=True, num_classes=10),
        "pre-activation ResNet-18 with a 3x3 stem, CIFAR (32x32)",
        HE2016,
    )


def _conv_pool(stem_width: int, blocks: tuple[int, ...], widths: tuple[int, ...]) -> ResNetSpec:
    return ResNetSpec(
        stages=_stages(blocks, widths, (2,) * len(widths)),
        stem="cifar",
        stem_width=stem_width,
        stage_entry="conv_pool",
        num_classes=10,
    )


def _register_cifar_fast() -> None:
    # Page's ResNet-9: each stage opens with conv-pool; residual units in stages 1 and 3 only.
    register(
        "resnet9",
        _conv_pool(64, (1, 0, 1), (128, 256, 512)),
        "ResNet-9 (conv-pool stages 128/256/512, units in the first and last), CIFAR",
        PAGE2018,
    )
    # The same table at half the width: a quarter of the MACs (95M), resnetkit's CPU recipe
    # for CIFAR-10 (configs/cifar10_resnet9_fast.yaml).
    register(
        "resnet9_half",
        _conv_pool(32, (1, 0, 1), (64, 128, 256)),
        "ResNet-9 at half width (conv-pool stages 64/128/256), CIFAR",
        PAGE2018,
    )
    # Page's table in the shape of Jordan's airbench94 network: its 2x2 patch stem of 24
    # channels (the whitening layer's shape), stage widths 64/256/256, GELU, BatchNorm with
    # fixed scales, Dirac-initialised convs, a global max-pool and logits scaled by 1/9. Unlike
    # airbench (a plain network) stages 1 and 3 end in a residual unit, as ResNet-9's do.
    register(
        "resnet9_airbench",
        ResNetSpec(
            stages=_stages((1, 0, 1), (64, 256, 256), (2, 2, 2)),
            stem="patch",
            stem_width=24,
            stage_entry="conv_pool",
            num_classes=10,
            act="gelu",
            norm_scale=False,
            logit_scale=1 / 9,
            global_pool="max",
            conv_init="dirac",
        ),
        "ResNet-9 in airbench's shape (2x2 patch stem, conv-pool stages 64/256/256, GELU), CIFAR",
        JORDAN2024,
    )
    # A quarter of the width (0.41M parameters): on 2 CPU cores it trains 1.5x as many 28x28
    # grayscale images/s as resnet14, so the 10-minute Fashion-MNIST recipe gets more epochs.
    register(
        "resnet9_quarter",
        _conv_pool(16, (1, 0, 1), (32, 64, 128)),
        "ResNet-9 at quarter width (conv-pool stages 32/64/128), CIFAR and 28x28 data",
        PAGE2018,
    )


_register_builtin()


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style pattern, e.g. 'resnet*' or '*cifar*' (the names
    of their weights: `resnetkit.list_models(pattern, pretrained=True)`)."""
    return [name for name in _REGISTRY if fnmatch.fnmatchcase(name, pattern)]


def is_registered(name: str) -> bool:
    return name in _REGISTRY


def get_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}{hint} (run `resnetkit models` for the full list)"
        )
    return _REGISTRY[name]


def get_spec(name: str) -> ResNetSpec:
    """The spec registered under `name`."""
    return get_entry(name).spec


def resolve_spec(name_or_spec: str | Path | ResNetSpec, **overrides: Any) -> ResNetSpec:
    """A spec from a registered name, a spec, or a .yaml/.json spec file, with overrides."""
    if isinstance(name_or_spec, ResNetSpec):
        spec = name_or_spec
    elif isinstance(name_or_spec, Path) or str(name_or_spec).endswith((".yaml", ".yml", ".json")):
        spec = ResNetSpec.from_file(name_or_spec)
    elif isinstance(name_or_spec, str):
        spec = get_spec(name_or_spec)
    else:
        raise TypeError(
            f"expected a model name, a ResNetSpec or a spec file, got {type(name_or_spec).__name__}"
        )
    return spec.replace(**overrides) if overrides else spec
