"""An exponential moving average of a model's weights, evaluated and shipped instead of them.

Averaging the last few hundred steps' weights smooths out the noise of the final SGD steps;
in short schedules it is worth a few tenths of a point of accuracy at no training cost
(Polyak & Juditsky 1992; used by airbench and timm's recipes). BatchNorm's running statistics
are averaged with the same rate, as timm's ModelEmaV3 does, so the averaged weights come with
statistics that match them.

Why not `torch.optim.swa_utils.AveragedModel` with `get_ema_multi_avg_fn`: it would change
what this average does and what resumes. Its first update copies the weights (ours blends with
the warm-up decay below), `get_ema_multi_avg_fn` has one fixed decay (no warm-up, no `every`),
and it keeps its own `n_averaged` buffer under a `module.` prefix, so the `ema` entry of every
saved training state would change names and runs saved before could not resume exactly.
(It also reads that count back to the host at every update, a device sync per step.)
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightEma:
    """`ema = decay * ema + (1 - decay) * weights`, every `every` optimizer steps.

    Early in training the effective decay is `min(decay, (1 + n) / (10 + n))` for the n-th
    update, so the average is not dominated by the random initial weights in short runs.
    """

    def __init__(self, model: nn.Module, decay: float, every: int = 1) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be between 0 and 1 (exclusive), got {decay}")
        self.decay = decay
        self.every = max(1, every)
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    def effective_decay(self) -> float:
        # Per update; `every` steps between updates compound the per-step decay.
        per_update = self.decay**self.every
        return min(per_update, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold the model's current weights in, if `step` (1-based) is an update step."""
        if step % self.every:
            return
        weight = 1.0 - self.effective_decay()
        averaged, current = _float_tensors(self.module), _float_tensors(model)
        torch._foreach_lerp_(averaged, current, weight)
        for ema_buf, buf in zip(self.module.buffers(), model.buffers(), strict=True):
            if not ema_buf.is_floating_point():
                ema_buf.copy_(buf)  # BatchNorm's num_batches_tracked
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


def _float_tensors(model: nn.Module) -> list[torch.Tensor]:
    tensors = [p.data for p in model.parameters()]
    tensors += [b for b in model.buffers() if b.is_floating_point()]
    return tensors
