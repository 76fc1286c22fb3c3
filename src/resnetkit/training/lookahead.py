"""Lookahead (Zhang, Lucas, Hinton & Ba 2019) around any optimizer.

The wrapped optimizer moves the "fast" weights as usual; every `k` steps a copy of "slow"
weights moves a share `alpha` of the way toward them, and the fast weights restart from there.
The fast CIFAR-10 trainers use it (airbench) because it damps the noise of large learning
rates; airbench also starts it late and lets the share fall as training ends (`start_step`,
`power`), so it averages harder once the rate is low. The wrapper looks like an optimizer to
the loop: the same `param_groups` (so the schedule sets learning rates as before),
`zero_grad`, `step`, and a `state_dict` that holds the inner optimizer's state, the slow
weights and the step count, so resume is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["Lookahead"]


class Lookahead:
    """Args:
    k: sync every k optimizer steps.
    alpha: the share of the way the slow weights move at each sync; with `power` > 0, the
        share reached at the last step.
    start_step: no averaging before this step; the first sync at or after it starts the slow
        weights as a copy of the trained ones.
    total_steps, power: with power p > 0 the share at step t is
        1 - (1 - alpha) * (t / total_steps) ** p: near 1 (no averaging) early, alpha at the end.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        k: int = 5,
        alpha: float = 0.5,
        start_step: int = 0,
        total_steps: int = 1,
        power: float = 0.0,
    ):
        if k < 1:
            raise ValueError(f"Lookahead needs k >= 1 steps, got {k}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"Lookahead needs 0 < alpha <= 1, got {alpha}")
        if start_step < 0 or total_steps < 1 or power < 0:
            raise ValueError(
                f"Lookahead needs start_step >= 0, total_steps >= 1 and power >= 0, got "
                f"{start_step}, {total_steps}, {power}"
            )
        self.optimizer, self.k, self.alpha = optimizer, k, alpha
        self.start_step, self.total_steps, self.power = start_step, total_steps, power
        self.steps = 0
        self.slow = [p.detach().clone() for p in self._params()]

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    @property
    def state(self) -> Any:
        return self.optimizer.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def share(self, step: int) -> float:
        """The share of the way the slow weights move at a sync after optimizer step `step`."""
        if self.power == 0:
            return self.alpha
        progress = min(step / self.total_steps, 1.0)
        return 1.0 - (1.0 - self.alpha) * progress**self.power

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = self.optimizer.step(closure)
        self.steps += 1
        if self.steps % self.k == 0 and self.steps >= self.start_step:
            if self.start_step and self.steps == self._first_sync():
                self._restart_slow()
            else:
                self._sync(self.share(self.steps))
        return loss

    def _first_sync(self) -> int:
        """The first sync step at or after `start_step`: a delayed start begins there."""
        return -(-self.start_step // self.k) * self.k

    @property
    def started(self) -> bool:
        """Whether the slow weights are averaging yet (derived from the step count, so a
        resumed state needs nothing more)."""
        return self.start_step == 0 or self.steps >= self._first_sync()

    @torch.no_grad()
    def _restart_slow(self) -> None:
        for slow, fast in zip(self.slow, self._params(), strict=True):
            slow.copy_(fast)

    @torch.no_grad()
    def _sync(self, share: float) -> None:
        """slow += share * (fast - slow); fast = slow."""
        for slow, fast in zip(self.slow, self._params(), strict=True):
            slow.lerp_(fast, share)
            fast.copy_(slow)

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "lookahead": {"slow": [s.clone() for s in self.slow], "steps": self.steps},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "lookahead" not in state:
            raise ValueError(
                "this optimizer state was saved without Lookahead; resume with the same "
                "lookahead settings the run started with"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        saved = state["lookahead"]
        if len(saved["slow"]) != len(self.slow):
            raise ValueError("the saved Lookahead state belongs to another model")
        with torch.no_grad():
            for slow, value in zip(self.slow, saved["slow"], strict=True):
                slow.copy_(value)
        self.steps = int(saved["steps"])

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}, {self.optimizer!r})"
