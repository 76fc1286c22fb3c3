"""Lookahead (Zhang, Lucas, Hinton & Ba 2019) around any optimizer.

The wrapped optimizer moves the "fast" weights as usual; every `k` steps a copy of "slow"
weights moves a share `alpha` of the way toward them, and the fast weights restart from there.
The fast CIFAR-10 trainers use it (airbench) because it damps the noise of large learning
rates. The wrapper looks like an optimizer to the loop: the same `param_groups` (so the
schedule sets learning rates as before), `zero_grad`, `step`, and a `state_dict` that holds the
inner optimizer's state, the slow weights and the step count, so resume is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["Lookahead"]


class Lookahead:
    def __init__(self, optimizer: torch.optim.Optimizer, k: int = 5, alpha: float = 0.5):
        if k < 1:
            raise ValueError(f"Lookahead needs k >= 1 steps, got {k}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"Lookahead needs 0 < alpha <= 1, got {alpha}")
        self.optimizer, self.k, self.alpha = optimizer, k, alpha
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

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = self.optimizer.step(closure)
        self.steps += 1
        if self.steps % self.k == 0:
            self._sync()
        return loss

    @torch.no_grad()
    def _sync(self) -> None:
        """slow += alpha * (fast - slow); fast = slow."""
        for slow, fast in zip(self.slow, self._params(), strict=True):
            slow.lerp_(fast, self.alpha)
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
