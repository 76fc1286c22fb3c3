"""BatchNorm folded into the convolution before it: each module declares its own (conv, BN)
pairs (`fold_pairs()`), so the wiring stays the block's to know. Used by `deploy.export` and
`deploy.inference`."""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def fold_pairs(module: nn.Module) -> tuple[tuple[str, str], ...]:
    """The (conv, bn) attribute pairs of `module` itself (not its children) that can be folded:
    what its `fold_pairs()` method declares (every resnetkit unit and the ResNet stem have one;
    a module without it has none)."""
    declared = getattr(module, "fold_pairs", None)
    return tuple(declared()) if callable(declared) else ()


def fold_bn(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with every BatchNorm2d that directly follows a Conv2d folded into
    that conv (scaled weight, added bias) and replaced by nn.Identity; `model` is unchanged.
    Each module says which of its BNs fold (`fold_pairs()`): the wiring is the block's to know."""
    model = copy.deepcopy(model).eval()
    found = [
        (f"{prefix}.{conv}" if prefix else conv, f"{prefix}.{bn}" if prefix else bn)
        for prefix, module in model.named_modules()
        for conv, bn in fold_pairs(module)
    ]
    folded = 0
    for conv_name, bn_name in found:
        conv, bn = _submodule(model, conv_name), _submodule(model, bn_name)
        if conv is None or bn is None:
            continue
        if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
            raise TypeError(
                f"cannot fold {bn_name} ({type(bn).__name__}) into {conv_name} "
                f"({type(conv).__name__}): expected a BatchNorm2d after a Conv2d"
            )
        _fold_into_conv(conv, bn, f"{bn_name} into {conv_name}")
        parent_name, _, attr = bn_name.rpartition(".")
        setattr(model.get_submodule(parent_name), attr, nn.Identity())
        folded += 1
    log.debug("folded %d BatchNorm layers", folded)
    return model


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:  # absent or None, e.g. no projection shortcut in this unit
        return None


@torch.no_grad()
def _fold_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d, what: str) -> None:
    """conv <- bn(conv(.)) in eval mode: w * s per output channel, bias (b - mean) * s + beta,
    with s = gamma / sqrt(var + eps). Computed in float64, rounded once to the conv's dtype."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"cannot fold {what}: the BatchNorm tracks no running statistics")
    if conv.out_channels != bn.num_features:
        raise ValueError(
            f"cannot fold {what}: {conv.out_channels} conv channels vs {bn.num_features} in BN"
        )
    dtype = conv.weight.dtype
    scale = 1.0 / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = -bn.running_mean.double() * scale
    if bn.weight is not None and bn.bias is not None:
        scale = scale * bn.weight.double()
        shift = shift * bn.weight.double() + bn.bias.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    conv.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(dtype))
    conv.bias = nn.Parameter((bias * scale + shift).to(dtype), conv.weight.requires_grad)
