"""Residual units and shortcuts as plain `nn.Module`s.

v1 (He et al. 2015): conv-BN-ReLU inside the branch, ReLU *after* the addition.
v2 (He et al. 2016, "Identity Mappings"): BN-ReLU-conv inside the branch, nothing after the
addition, so the shortcut path is a clean identity from the input to the output of the stage.

Attribute names follow torchvision (`conv1`, `bn1`, ..., `downsample`) because checkpoints
depend on them. Convolutions that feed a BatchNorm carry no bias: BN's shift makes it redundant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# How a v2 unit applies its first BN-ReLU (see `PreActBasicBlock`):
#   "branch": inside the residual branch only; the shortcut sees the raw input (identity units).
#   "shared": before the split, so the projection shortcut sees the activated input too
#             (units that change shape, and the first unit after a bare conv stem).
#   "none":   not at all, because the input was just activated by the stem's BN-ReLU-maxpool.
PREACT_MODES = ("branch", "shared", "none")

# The spec's activation names. Whatever the spec picks, the module keeps torchvision's
# attribute name (`relu`), so module paths (hooks, feature extraction by name) stay the same.
ACTIVATIONS = ("relu", "gelu", "silu")


def make_activation(name: str = "relu", inplace: bool = True) -> nn.Module:
    """The activation module for a spec's `act`. Only ReLU runs in place: its backward needs
    the output alone, while GELU's and SiLU's need the input an in-place op would overwrite."""
    if name == "relu":
        return nn.ReLU(inplace=inplace)
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU()
    raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016): in training, zero the whole residual branch of
    each sample with probability `rate` and scale the survivors by 1/(1 - rate), so the expected
    output is unchanged; at evaluation (or rate 0) the branch passes through untouched."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    # One draw per sample, broadcast over (C, H, W); drawn from torch's global generator, as
    # nn.Dropout's are.
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1))
    return x * mask.bernoulli_(keep).div_(keep)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class ShortcutA(nn.Module):
    """Option A of He et al. 2015: subsample by striding, zero-pad the new channels. No params."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        if out_ch < in_ch:
            raise ValueError(f"shortcut A cannot reduce channels ({in_ch} -> {out_ch})")
        self.stride = stride
        self.extra_channels = out_ch - in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels > 0:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


def make_shortcut(
    kind: str, in_ch: int, out_ch: int, stride: int, preact: bool
) -> nn.Module | None:
    """The shortcut of one unit: None for a plain net, nn.Identity, ShortcutA or a projection.

    The v1 projection is conv1x1 + BN (torchvision's `downsample.0` / `.1`). The v2 projection
    is a bare conv1x1: its output is added to the branch and normalised by the next unit's BN.
    """
    if kind == "none":
        return None
    if not needs_projection(kind, in_ch, out_ch, stride):
        shape_changes = stride != 1 or in_ch != out_ch
        return ShortcutA(in_ch, out_ch, stride) if shape_changes else nn.Identity()
    if preact:
        return nn.Sequential(conv1x1(in_ch, out_ch, stride))
    return nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))


def needs_projection(kind: str, in_ch: int, out_ch: int, stride: int) -> bool:
    """Whether a unit's shortcut is a 1x1 projection: always for C, on a shape change for B."""
    shape_changes = stride != 1 or in_ch != out_ch
    return kind == "C" or (kind == "B" and shape_changes)


FoldPairs = tuple[tuple[str, str], ...]


def _projection_pairs(downsample: nn.Module | None) -> FoldPairs:
    """The v1 projection shortcut, Sequential(conv1x1, BN), folds; identities and shortcut A
    have nothing to fold."""
    projection = isinstance(downsample, nn.Sequential) and len(downsample) == 2
    return (("downsample.0", "downsample.1"),) if projection else ()


class BasicBlock(nn.Module):
    """v1 basic unit: conv3x3-BN-ReLU, conv3x3-BN, add the shortcut, then ReLU."""

    # Output channels are width * expansion (He et al. 2015, Table 1); the spec reads it here.
    expansion = 1

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int,
        shortcut: str,
        groups: int = 1,
        inner: int = 0,
        drop_path_rate: float = 0.0,
        act: str = "relu",
    ) -> None:
        super().__init__()
        # A plain float, not a submodule: state-dict names and the module tree stay as before.
        self.drop_path_rate = drop_path_rate
        inner = inner or width
        out_ch = width * self.expansion
        self.conv1 = conv3x3(in_ch, inner, stride, groups)
        self.bn1 = nn.BatchNorm2d(inner)
        self.relu = make_activation(act)
        self.conv2 = conv3x3(inner, out_ch, 1, groups)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = make_shortcut(shortcut, in_ch, out_ch, stride, preact=False)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = drop_path(self.bn2(self.conv2(out)), self.drop_path_rate, self.training)
        if self.downsample is not None:
            out = out + self.downsample(x)
        return self.relu(out)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)

    def fold_pairs(self) -> FoldPairs:
        """(conv, BN) attribute pairs in which the BN directly follows the conv, with nothing
        in between, so `resnetkit.models.fold.fold_bn` can fold the BN into the conv exactly."""
        return (("conv1", "bn1"), ("conv2", "bn2"), *_projection_pairs(self.downsample))


class Bottleneck(nn.Module):
    """v1 bottleneck: 1x1 reduce, 3x3 (stride and groups here, as torchvision's "v1.5"), 1x1
    expand by 4, each followed by BN; ReLU after the first two and after the addition."""

    expansion = 4  # the last 1x1 conv widens by 4 (He et al. 2015, Fig. 5)

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int,
        shortcut: str,
        groups: int = 1,
        inner: int = 0,
        drop_path_rate: float = 0.0,
        act: str = "relu",
    ) -> None:
        super().__init__()
        self.drop_path_rate = drop_path_rate
        inner = inner or width
        out_ch = width * self.expansion
        self.conv1 = conv1x1(in_ch, inner)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = conv3x3(inner, inner, stride, groups)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = conv1x1(inner, out_ch)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = make_activation(act)
        self.downsample = make_shortcut(shortcut, in_ch, out_ch, stride, preact=False)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = drop_path(self.bn3(self.conv3(out)), self.drop_path_rate, self.training)
        if self.downsample is not None:
            out = out + self.downsample(x)
        return self.relu(out)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def fold_pairs(self) -> FoldPairs:
        """Every conv of the branch is followed by its BN (see `BasicBlock.fold_pairs`)."""
        pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))
        return (*pairs, *_projection_pairs(self.downsample))


class _PreActUnit(nn.Module):
    """Shared forward of the v2 units: pre-activation, branch, identity addition."""

    bn1: nn.Module | None
    downsample: nn.Module | None

    def _setup_preact(self, in_ch: int, mode: str, drop_path_rate: float, act: str) -> None:
        if mode not in PREACT_MODES:
            raise ValueError(f"preact mode must be one of {PREACT_MODES}, got {mode!r}")
        self.drop_path_rate = drop_path_rate
        self.preact_mode = mode
        self.shared_preact = mode == "shared"
        self.bn1 = nn.BatchNorm2d(in_ch) if mode != "none" else None
        self.relu = make_activation(act, inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn1 is not None:
            activated = self.relu(self.bn1(x))
            if self.shared_preact:
                x = activated
        else:
            activated = x
        out = drop_path(self.branch(activated), self.drop_path_rate, self.training)
        if self.downsample is not None:
            out = out + self.downsample(x)
        return out


class PreActBasicBlock(_PreActUnit):
    """v2 basic unit: BN-ReLU-conv3x3, BN-ReLU-conv3x3, identity addition, no final ReLU."""

    expansion = BasicBlock.expansion  # v2 reorders the unit; its shape is v1's

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int,
        shortcut: str,
        groups: int = 1,
        inner: int = 0,
        preact_mode: str = "branch",
        drop_path_rate: float = 0.0,
        act: str = "relu",
    ) -> None:
        super().__init__()
        inner = inner or width
        out_ch = width * self.expansion
        self._setup_preact(in_ch, preact_mode, drop_path_rate, act)
        self.conv1 = conv3x3(in_ch, inner, stride, groups)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv2 = conv3x3(inner, out_ch, 1, groups)
        self.downsample = make_shortcut(shortcut, in_ch, out_ch, stride, preact=True)
        self.stride = stride

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        return self.conv2(self.relu(self.bn2(out)))

    def zero_init_last(self) -> None:
        # No BN ends a v2 branch, so the last conv is zeroed to make the unit an identity.
        nn.init.zeros_(self.conv2.weight)

    def fold_pairs(self) -> FoldPairs:
        """Only bn2 folds: bn1 comes before conv1 with a ReLU between (and may feed the
        shortcut), conv2 feeds the addition, and the v2 projection is a bare conv."""
        return (("conv1", "bn2"),)


class PreActBottleneck(_PreActUnit):
    """v2 bottleneck: BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1 (x4), identity add."""

    expansion = Bottleneck.expansion  # v2 reorders the unit; its shape is v1's

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int,
        shortcut: str,
        groups: int = 1,
        inner: int = 0,
        preact_mode: str = "branch",
        drop_path_rate: float = 0.0,
        act: str = "relu",
    ) -> None:
        super().__init__()
        inner = inner or width
        out_ch = width * self.expansion
        self._setup_preact(in_ch, preact_mode, drop_path_rate, act)
        self.conv1 = conv1x1(in_ch, inner)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv2 = conv3x3(inner, inner, stride, groups)
        self.bn3 = nn.BatchNorm2d(inner)
        self.conv3 = conv1x1(inner, out_ch)
        self.downsample = make_shortcut(shortcut, in_ch, out_ch, stride, preact=True)
        self.stride = stride

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.conv2(self.relu(self.bn2(out)))
        return self.conv3(self.relu(self.bn3(out)))

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv3.weight)

    def fold_pairs(self) -> FoldPairs:
        """The BNs right after conv1 and conv2 fold (see `PreActBasicBlock.fold_pairs`)."""
        return (("conv1", "bn2"), ("conv2", "bn3"))


def preact_mode_for(projection: bool, first_unit: bool, stem_activates: bool) -> str:
    """Where a v2 unit puts its first BN-ReLU, following He et al. 2016 (appendix) and the
    authors' code: the first unit after a bare conv stem, and every unit whose projection
    shortcut changes shape, activate before splitting; after a stem that already ends in
    BN-ReLU-maxpool the first unit does not activate again."""
    if first_unit and stem_activates:
        return "none"
    if first_unit or projection:
        return "shared"
    return "branch"


class ConvPoolEntry(nn.Module):
    """The opening of a 'conv_pool' stage (Page 2018's ResNet-9): conv3x3 to the stage's width,
    a 2x2 max-pool where the stage downsamples, then BN and ReLU. Pooling before BN-ReLU (as
    Jordan's airbench does) runs both on a quarter of the elements; the max commutes with BN's
    per-channel affine map only where its scale is positive, so this BN is not folded."""

    def __init__(self, in_ch: int, width: int, stride: int, act: str = "relu") -> None:
        super().__init__()
        self.conv = conv3x3(in_ch, width)
        self.pool = nn.MaxPool2d(2) if stride == 2 else nn.Identity()
        self.bn = nn.BatchNorm2d(width)
        self.relu = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.pool(self.conv(x))))

    def fold_pairs(self) -> FoldPairs:
        return ()


# The spec's block names -> (v1 class, v2 class). `ResNetSpec` reads each block's expansion here.
BLOCK_TYPES: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "basic": (BasicBlock, PreActBasicBlock),
    "bottleneck": (Bottleneck, PreActBottleneck),
}


def block_class(block: str, preact: bool) -> type[nn.Module]:
    """The unit class for a spec's `block` name and version (v2 when `preact`)."""
    return BLOCK_TYPES[block][int(preact)]


def make_block(
    block: str,
    preact: bool,
    in_ch: int,
    width: int,
    stride: int,
    shortcut: str,
    groups: int,
    inner: int,
    first_unit: bool = False,
    stem_activates: bool = True,
    drop_path_rate: float = 0.0,
    act: str = "relu",
) -> nn.Module:
    """Build one residual unit from the spec's vocabulary."""
    cls = block_class(block, preact)
    if not preact:
        return cls(
            in_ch, width, stride, shortcut, groups, inner, drop_path_rate=drop_path_rate, act=act
        )
    out_ch = width * cls.expansion
    projection = needs_projection(shortcut, in_ch, out_ch, stride)
    mode = preact_mode_for(projection, first_unit, stem_activates)
    return cls(
        in_ch,
        width,
        stride,
        shortcut,
        groups,
        inner,
        preact_mode=mode,
        drop_path_rate=drop_path_rate,
        act=act,
    )


def drop_path_rates(rate: float, num_blocks: int) -> list[float]:
    """Each unit's stochastic-depth rate, rising linearly from 0 at the first unit to `rate` at
    the last (Huang et al. 2016's linear decay of survival, indexed as timm does)."""
    return [rate * index / max(num_blocks - 1, 1) for index in range(num_blocks)]
