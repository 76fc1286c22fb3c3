"""The declarative table that describes a ResNet: frozen dataclasses, validation, YAML/JSON.

A network is data. Everything `resnetkit.models.resnet.ResNet` builds comes from a `ResNetSpec`; two
models built from equal specs have the same structure and the same state-dict keys.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..core.yaml_text import load_yaml
from .blocks import ACTIVATIONS, BLOCK_TYPES

STEMS = ("imagenet", "cifar", "deep", "patch")
# Stems for 32x32 images: stride 1, no max-pool (the others downsample by 4, for 224x224).
SMALL_IMAGE_STEMS = ("cifar", "patch")
# How the last feature map becomes one vector per image (timm's `global_pool` names).
GLOBAL_POOLS = ("avg", "max")
# How the 3x3 convolutions start. "kaiming": He et al. 2015's normal init (torchvision's).
# "dirac": the same, then each conv's first min(in, out) filters set to pass their input
# channel through unchanged, so every conv starts as a partial identity (Jordan's airbench).
CONV_INITS = ("kaiming", "dirac")
BLOCKS = tuple(BLOCK_TYPES)  # "basic", "bottleneck": each names a unit class in blocks.py
SHORTCUTS = ("A", "B", "C", "none")
STRIDES = (1, 2)
# How a stage begins. "unit": its first residual unit takes the stride (He et al. 2015).
# "conv_pool": a 3x3 conv to the stage's width, a 2x2 max-pool where the stride is 2, BN and
# ReLU, then the stage's units at constant width (Page 2018's ResNet-9 for fast CIFAR training).
STAGE_ENTRIES = ("unit", "conv_pool")


class SpecError(ValueError):
    """An invalid spec: the message names the field, the bad value and what is allowed."""


def _fail(field_name: str, value: Any, allowed: str) -> SpecError:
    return SpecError(f"invalid spec field '{field_name}': got {value!r}; {allowed}")


def _check_probability(field_name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise _fail(field_name, value, "expected a number in [0, 1)")


def _check_int(field_name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(field_name, value, f"expected an integer >= {minimum}")
    if value < minimum:
        raise _fail(field_name, value, f"expected an integer >= {minimum}")


@dataclass(frozen=True)
class StageSpec:
    """One stage: `blocks` residual units of base width `width`; the first one uses `stride`
    (or, in a spec whose `stage_entry` is 'conv_pool', the stage's opening conv-pool does, and
    `blocks` may be 0)."""

    blocks: int
    width: int
    stride: int = 1

    def __post_init__(self) -> None:
        _check_int("blocks", self.blocks, 0)
        _check_int("width", self.width, 1)
        if isinstance(self.stride, bool) or self.stride not in STRIDES:
            raise _fail("stride", self.stride, "allowed values: 1, 2")


@dataclass(frozen=True)
class ResNetSpec:
    """Everything needed to build a ResNet.

    Attributes:
        stages: the stage table (blocks, width, first stride), at least one stage.
        block: 'basic' (two 3x3 convs) or 'bottleneck' (1x1, 3x3, 1x1 with expansion 4).
        stem: 'imagenet' (7x7/2 conv + 3x3/2 max-pool), 'cifar' (3x3/1 conv, no pool),
            'deep' (three 3x3 convs, the first with stride 2, then the max-pool) or 'patch'
            (a 2x2 conv with bias and no padding, then the activation, no BN: the shape of
            airbench's whitening layer, which `whiten_stem` in training initialises; the
            image loses one pixel per side, 32x32 -> 31x31).
        stem_width: output channels of the stem.
        preact: False = v1 (conv-BN-ReLU, ReLU after the addition); True = v2 pre-activation
            (BN-ReLU-conv, identity addition, a final BN-ReLU after the last stage).
        shortcut: 'A' parameter-free (subsample + zero-pad channels), 'B' projection only
            where the shape changes, 'C' projection in every block, 'none' plain network.
        groups: groups of the 3x3 convolution (ResNeXt cardinality).
        width_per_group: base width per group; the 3x3 conv has
            `int(width * width_per_group / 64) * groups` channels (64 = plain ResNet; 128 = the
            "wide" ResNet-50-2; ResNeXt-50 32x4d uses groups=32, width_per_group=4).
        zero_init_residual: start each residual branch at zero so every unit is the identity.
        in_chans: input image channels.
        num_classes: classifier outputs; 0 builds a feature extractor with no classifier.
        drop_rate: dropout probability before the classifier.
        drop_path_rate: stochastic depth (Huang et al. 2016): the probability, in training, of
            skipping the last unit's residual branch; earlier units skip with linearly smaller
            probabilities, the first never. 0 = off.
        stage_entry: 'unit' (each stage's first unit takes the stride, He et al. 2015) or
            'conv_pool' (each stage opens with conv3x3 - 2x2 max-pool - BN - ReLU to the stage's
            width, then `blocks` identity units: Page 2018's ResNet-9; v1 basic units only).
        act: the activation after each BN and addition: 'relu' (the papers'), 'gelu' or
            'silu' (smooth, as the fast-CIFAR trainers use).
        norm_scale: False keeps every BatchNorm's scale where it starts (1 when built; a
            pretrained model's own when weights are loaded): only the shifts are learned, as in
            Page's and Jordan's fast CIFAR trainers. The weights stay in the state dict.
        logit_scale: the classifier's outputs are multiplied by this (Page 2018 used 0.125),
            which tempers the logits' growth early in training; 1 = a plain linear head.
        global_pool: 'avg' (the papers') or 'max': how the last feature map is pooled to one
            vector per image before the classifier.
        conv_init: 'kaiming' (He et al. 2015, torchvision's) or 'dirac' (each 3x3 conv also
            starts passing its first min(in, out) input channels through: a partial identity).
    """

    stages: tuple[StageSpec, ...]
    block: str = "basic"
    stem: str = "imagenet"
    stem_width: int = 64
    preact: bool = False
    shortcut: str = "B"
    groups: int = 1
    width_per_group: int = 64
    zero_init_residual: bool = False
    in_chans: int = 3
    num_classes: int = 1000
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    stage_entry: str = "unit"
    act: str = "relu"
    norm_scale: bool = True
    logit_scale: float = 1.0
    global_pool: str = "avg"
    conv_init: str = "kaiming"
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        stages = self.stages
        if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence):
            raise _fail("stages", stages, "expected a list of stages (blocks, width, stride)")
        if len(stages) == 0:
            raise _fail("stages", list(stages), "a ResNet needs at least one stage")
        # Accept mappings and tuples so a table written by hand or read from YAML just works.
        object.__setattr__(self, "stages", tuple(_as_stage(s, i) for i, s in enumerate(stages)))
        if self.block not in BLOCKS:
            raise _fail("block", self.block, "allowed values: " + ", ".join(BLOCKS))
        if self.stem not in STEMS:
            raise _fail("stem", self.stem, "allowed values: " + ", ".join(STEMS))
        if self.shortcut not in SHORTCUTS:
            raise _fail("shortcut", self.shortcut, "allowed values: " + ", ".join(SHORTCUTS))
        if not isinstance(self.preact, bool):
            raise _fail("preact", self.preact, "expected true or false")
        if not isinstance(self.zero_init_residual, bool):
            raise _fail("zero_init_residual", self.zero_init_residual, "expected true or false")
        self._check_head_and_norm()
        _check_int("stem_width", self.stem_width, 1)
        _check_int("groups", self.groups, 1)
        _check_int("width_per_group", self.width_per_group, 1)
        _check_int("in_chans", self.in_chans, 1)
        _check_int("num_classes", self.num_classes, 0)
        _check_probability("drop_rate", self.drop_rate)
        _check_probability("drop_path_rate", self.drop_path_rate)
        if self.stem == "patch" and self.preact:
            raise _fail("stem", "patch", "the patch stem is built for v1 networks (preact false)")
        if self.stem == "deep" and self.stem_width % 2:
            raise _fail("stem_width", self.stem_width, "the deep stem needs an even width")
        self._check_groups()
        self._check_stage_entry()
        if self.zero_init_residual and self.shortcut == "none":
            raise _fail(
                "zero_init_residual",
                True,
                "a plain network (shortcut 'none') has no residual "
                "branch to start at zero; set it to false",
            )
        if self.drop_path_rate > 0 and self.shortcut == "none":
            raise _fail(
                "drop_path_rate",
                self.drop_path_rate,
                "a plain network (shortcut 'none') has no residual branch to skip; set it to 0",
            )
        if self.shortcut == "A" and self.stage_entry == "unit":
            # (With 'conv_pool' the opening conv changes the width; units keep it.)
            outs = [self.out_channels(s.width) for s in self.stages]
            for index, (cin, cout) in enumerate(zip(self.stage_in_channels(), outs, strict=True)):
                if cout < cin:
                    raise SpecError(
                        f"invalid spec field 'shortcut': 'A' zero-pads channels but stage "
                        f"{index} goes from {cin} to {cout}; use shortcut 'B' or 'C'"
                    )

    def _check_head_and_norm(self) -> None:
        if self.act not in ACTIVATIONS:
            raise _fail("act", self.act, "allowed values: " + ", ".join(ACTIVATIONS))
        if self.global_pool not in GLOBAL_POOLS:
            raise _fail(
                "global_pool", self.global_pool, "allowed values: " + ", ".join(GLOBAL_POOLS)
            )
        if self.conv_init not in CONV_INITS:
            raise _fail("conv_init", self.conv_init, "allowed values: " + ", ".join(CONV_INITS))
        if not isinstance(self.norm_scale, bool):
            raise _fail("norm_scale", self.norm_scale, "expected true or false")
        scale = self.logit_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise _fail("logit_scale", scale, "expected a finite number > 0")
        if not (math.isfinite(scale) and scale > 0):
            raise _fail("logit_scale", scale, "expected a finite number > 0")
        if not self.norm_scale and self.zero_init_residual:
            raise _fail(
                "zero_init_residual",
                True,
                "it zeroes the last BatchNorm scale of each unit, which norm_scale false "
                "keeps fixed at 1; set one of them to false",
            )

    def _check_stage_entry(self) -> None:
        if self.stage_entry not in STAGE_ENTRIES:
            raise _fail("stage_entry", self.stage_entry, "allowed values: unit, conv_pool")
        if self.stage_entry == "unit":
            for index, stage in enumerate(self.stages):
                if stage.blocks < 1:
                    raise SpecError(
                        f"invalid spec field 'stages[{index}].blocks': got 0; expected an integer "
                        f">= 1 (a stage without units needs stage_entry 'conv_pool')"
                    )
            return
        unsupported = {
            "block": (self.block, "basic"),
            "preact": (self.preact, False),
            "groups": (self.groups, 1),
            "width_per_group": (self.width_per_group, 64),
        }
        for name, (value, required) in unsupported.items():
            if value != required:
                raise _fail(
                    name, value, f"stage_entry 'conv_pool' is built with {name} {required!r}"
                )

    def _check_groups(self) -> None:
        for index, stage in enumerate(self.stages):
            inner = self.inner_width(stage.width)
            if inner < self.groups or inner % self.groups:
                raise SpecError(
                    f"invalid spec field 'groups': stage {index} has a 3x3 conv of {inner} "
                    f"channels, which is not divisible by groups={self.groups}; choose "
                    f"width/width_per_group so the width is a multiple of the groups"
                )
        if self.block == "basic" and self.groups > 1:
            # The basic block's first 3x3 conv reads the previous stage's channels, so those
            # must split into the groups too.
            for index, channels in enumerate(self.stage_in_channels()):
                if channels % self.groups:
                    raise SpecError(
                        f"invalid spec field 'groups': stage {index} receives {channels} "
                        f"channels, not divisible by groups={self.groups}"
                    )

    # -- derived quantities -------------------------------------------------------------------

    @property
    def expansion(self) -> int:
        """Output channels per unit of base width, as the unit class declares it."""
        return BLOCK_TYPES[self.block][0].expansion

    @property
    def depth(self) -> int:
        """Weighted layers counted as in the papers: stem conv + convs in branches (+ each
        stage's opening conv with 'conv_pool') + classifier."""
        convs_per_block = 2 if self.block == "basic" else 3
        entry_convs = len(self.stages) if self.stage_entry == "conv_pool" else 0
        return 1 + entry_convs + convs_per_block * sum(s.blocks for s in self.stages) + 1

    def inner_width(self, width: int) -> int:
        """Channels of the block's 3x3 convolution(s) for a stage of base width `width`."""
        if self.block == "basic" and self.groups == 1 and self.width_per_group == 64:
            return width
        return int(width * (self.width_per_group / 64.0)) * self.groups

    def out_channels(self, width: int) -> int:
        return width * self.expansion

    def stage_in_channels(self) -> list[int]:
        channels = [self.stem_width]
        for stage in self.stages[:-1]:
            channels.append(self.out_channels(stage.width))
        return channels

    @property
    def num_features(self) -> int:
        """Channels of the last feature map (the classifier's input)."""
        return self.out_channels(self.stages[-1].width)

    @property
    def stem_stride(self) -> int:
        return 1 if self.stem in SMALL_IMAGE_STEMS else 4

    def stage_reductions(self) -> list[int]:
        """Total stride from the input to each stage's output."""
        reduction, out = self.stem_stride, []
        for stage in self.stages:
            reduction *= stage.stride
            out.append(reduction)
        return out

    @property
    def default_input_size(self) -> int:
        """The image side the architecture was designed for: 224 (ImageNet) or 32 (CIFAR)."""
        return 32 if self.stem in SMALL_IMAGE_STEMS else 224

    @property
    def total_stride(self) -> int:
        return self.stage_reductions()[-1]

    @property
    def min_input_size(self) -> int:
        """Smallest input side the network accepts: every stride-2 layer must read at least 2
        real pixels per side (below that the last downsampling sees one pixel and padding); a
        2x2 max-pool has no padding, so 'conv_pool' stages need the whole total stride."""
        # The patch stem's 2x2 conv without padding loses a pixel before any stage.
        border = 1 if self.stem == "patch" else 0
        if self.stage_entry == "conv_pool":
            return self.total_stride + border
        return border + (1 if self.total_stride == 1 else self.total_stride // 2 + 1)

    # -- serialisation ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stages"] = [dataclasses.asdict(s) for s in self.stages]
        if not data["name"]:
            del data["name"]
        # Written only when not the default, so specs (and checkpoints) without them read as
        # before, also in versions that predate the fields.
        if not data["drop_path_rate"]:
            del data["drop_path_rate"]
        if data["stage_entry"] == "unit":
            del data["stage_entry"]
        defaults = {
            "act": "relu",
            "norm_scale": True,
            "logit_scale": 1.0,
            "global_pool": "avg",
            "conv_init": "kaiming",
        }
        for key, default in defaults.items():
            if data[key] == default:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResNetSpec:
        if not isinstance(data, Mapping):
            raise SpecError(
                f"invalid spec: expected a mapping of fields, got {type(data).__name__}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(
                f"invalid spec field '{unknown[0]}': unknown field; allowed fields: "
                + ", ".join(sorted(known))
            )
        if "stages" not in data:
            raise SpecError("invalid spec field 'stages': missing; a ResNet needs a stage table")
        return cls(**dict(data))

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> ResNetSpec:
        """A spec from a JSON file (a Path, or a short string naming one) or JSON text."""
        return cls.parse_json(_read_text(path_or_text))

    @classmethod
    def from_yaml(cls, path_or_text: str | Path) -> ResNetSpec:
        """A spec from a YAML file (a Path, or a short string naming one) or YAML text."""
        return cls.parse_yaml(_read_text(path_or_text))

    @classmethod
    def parse_json(cls, text: str) -> ResNetSpec:
        """A spec from JSON text only, never a file: for metadata read from a checkpoint."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise SpecError(f"invalid spec: not valid JSON ({exc})") from None
        return cls.from_dict(data)

    @classmethod
    def parse_yaml(cls, text: str) -> ResNetSpec:
        """A spec from YAML text only, never a file."""
        try:
            data = load_yaml(text)
        except yaml.YAMLError as exc:
            reason = str(exc).replace("\n", " ")
            raise SpecError(f"invalid spec: not valid YAML ({reason})") from None
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | Path) -> ResNetSpec:
        """Load a spec from a .json, .yaml or .yml file."""
        suffix = Path(path).suffix.lower()
        if suffix == ".json":
            return cls.from_json(Path(path))
        if suffix in (".yaml", ".yml"):
            return cls.from_yaml(Path(path))
        raise SpecError(f"invalid spec file {path}: expected a .json, .yaml or .yml file")

    def replace(self, **changes: Any) -> ResNetSpec:
        """A copy with some fields changed (validated like a new spec)."""
        known = {f.name for f in dataclasses.fields(self)}
        for key in changes:
            if key not in known:
                raise SpecError(
                    f"invalid spec field '{key}': unknown field; allowed fields: "
                    + ", ".join(sorted(known))
                )
        return dataclasses.replace(self, **changes)


def _as_stage(value: Any, index: int) -> StageSpec:
    if isinstance(value, StageSpec):
        return value
    try:
        if isinstance(value, Mapping):
            return StageSpec(**value)
        if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
            return StageSpec(*value)
    except SpecError as exc:
        message = str(exc).replace("invalid spec field '", f"invalid spec field 'stages[{index}].")
        raise SpecError(message) from None
    except TypeError as exc:
        raise SpecError(
            f"invalid spec field 'stages[{index}]': {exc}; expected blocks, width, stride"
        ) from None
    raise _fail(f"stages[{index}]", value, "expected {blocks, width, stride}")


def _read_text(path_or_text: str | Path) -> str:
    if isinstance(path_or_text, Path):
        try:
            return path_or_text.read_text()
        except OSError as exc:
            raise SpecError(f"cannot read spec file {path_or_text}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise SpecError(f"cannot read spec file {path_or_text}: not UTF-8 text") from None
    text = str(path_or_text)
    # A short single line naming an existing file is a path; anything else is the text itself.
    if "\n" not in text and len(text) < 4096 and _is_file(text):
        try:
            return Path(text).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise SpecError(f"cannot read spec file {text}: {exc}") from None
    if "\n" not in text and text.endswith((".yaml", ".yml", ".json")):
        raise SpecError(f"spec file not found: {text}")
    return text


def _is_file(text: str) -> bool:
    # A name too long for the file system (or with a NUL byte) is text, not a path.
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False
