"""State-dict adapters: fit a checkpoint to a model with another number of input channels
or classes (timm's `_manipulate.adapt_input_conv`)."""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

log = logging.getLogger(__name__)


def adapt_state_dict(
    model: nn.Module, state: dict[str, torch.Tensor], source: str = "weights"
) -> tuple[dict[str, torch.Tensor], bool]:
    """Fit a checkpoint to `model`: adapt the first conv to its input channels, and say
    whether the classifier must be skipped (another number of classes, or none)."""
    expected = model.state_dict()
    state = dict(state)
    conv = first_conv_key(model)
    if conv is not None and conv in state and state[conv].dim() == 4:
        have, want = state[conv].shape[1], expected[conv].shape[1]
        if have != want and state[conv].shape[2:] == expected[conv].shape[2:]:
            state[conv] = adapt_input_conv(state[conv], want)
            how = "summing its RGB filters" if want == 1 else "repeating its filters cyclically"
            log.info(
                "%s: first conv adapted from %d to %d input channels by %s", source, have, want, how
            )
    skip = False
    if "fc.weight" in expected:
        theirs = state.get("fc.weight")
        if theirs is None or theirs.shape != expected["fc.weight"].shape:
            skip = True
            classes = "no classifier" if theirs is None else f"{theirs.shape[0]} classes"
            log.info(
                "%s has %s, the model %d classes: the classifier is re-initialised",
                source,
                classes,
                expected["fc.weight"].shape[0],
            )
    elif any(k.startswith("fc.") for k in state):
        skip = True
        log.info("%s: the model has no classifier; the checkpoint's is ignored", source)
    return state, skip


def first_conv_key(model: nn.Module) -> str | None:
    """State-dict key of the first convolution's weight (`conv1.weight`, `conv1.0.weight`)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return f"{name}.weight"
    return None


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """First-conv weights for `in_chans` inputs, as timm's adapt_input_conv: one channel gets
    the sum of the filters (a grey image equal in every channel gives the same response);
    other counts repeat the filters cyclically, scaled by old/new channels."""
    old = weight.shape[1]
    dtype = weight.dtype
    w = weight.float()
    if in_chans == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        repeats = math.ceil(in_chans / old)
        w = w.repeat(1, repeats, 1, 1)[:, :in_chans] * (old / in_chans)
    return w.to(dtype)
