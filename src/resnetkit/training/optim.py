"""Optimizer-step helpers the loop calls: gradient clipping and gradient accumulation.

Accumulation is arithmetic on batch indices, kept pure so that the step count, the schedule and
a resume mid-epoch agree: with `accum_steps` N, batches 0..N-1 of an epoch make optimizer step
0, N..2N-1 step 1, and a last, shorter window closes the epoch (no gradient crosses an epoch).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

__all__ = [
    "clip_gradients",
    "closes_window",
    "optimizer_steps",
    "window_size",
    "window_start",
]


def clip_gradients(
    parameters: Iterable[torch.nn.Parameter], max_norm: float | None
) -> torch.Tensor | None:
    """Scale the gradients so their global L2 norm is at most `max_norm` (None: leave them);
    returns the norm before clipping as a tensor (reading it is a host sync; log it rarely).

    With fp16 and a GradScaler, call `scaler.unscale_(optimizer)` first, so the norm is of
    the true gradients; a non-finite norm is left for the scaler to skip the step.
    """
    if max_norm is None:
        return None
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    return torch.nn.utils.clip_grad_norm_(parameters, max_norm)


def _check(batch: int, batches: int, accum_steps: int) -> None:
    if accum_steps < 1 or batches < 1 or not 0 <= batch < batches:
        raise ValueError(
            f"need accum_steps >= 1 and 0 <= batch < batches, got batch={batch}, "
            f"batches={batches}, accum_steps={accum_steps}"
        )


def optimizer_steps(batches: int, accum_steps: int) -> int:
    """Optimizer steps in an epoch of `batches` batches: one per window, the last may be short."""
    if accum_steps < 1 or batches < 0:
        raise ValueError(f"need accum_steps >= 1 and batches >= 0, got {accum_steps}, {batches}")
    return math.ceil(batches / accum_steps)


def closes_window(batch: int, batches: int, accum_steps: int) -> bool:
    """Whether the optimizer steps after batch `batch` (0-based in its epoch). Under DDP the
    other batches can skip the gradient all-reduce (`model.no_sync()`)."""
    _check(batch, batches, accum_steps)
    return (batch + 1) % accum_steps == 0 or batch == batches - 1


def window_size(batch: int, batches: int, accum_steps: int) -> int:
    """How many batches share batch `batch`'s optimizer step: divide each batch's loss by it,
    so the accumulated gradient is the mean over the window, as one large batch would give."""
    _check(batch, batches, accum_steps)
    start = batch - batch % accum_steps
    return min(accum_steps, batches - start)


def window_start(step: int, accum_steps: int) -> int:
    """The first batch of the epoch's optimizer step `step` (0-based): where a run resumed
    after that many steps of the epoch continues."""
    if accum_steps < 1 or step < 0:
        raise ValueError(f"need accum_steps >= 1 and step >= 0, got {accum_steps}, {step}")
    return step * accum_steps
