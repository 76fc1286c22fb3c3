"""Learning-rate schedules as pure functions of the step: no state to save or restore.

Every schedule may start with a linear warm-up from `warmup_start * lr` to `lr`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

SCHEDULES = ("step", "cosine", "onecycle", "linear", "constant")


@dataclass(frozen=True)
class Schedule:
    """A learning-rate curve over `total_steps` optimizer steps.

    kind: 'step' (multiply by `gamma` at each milestone, as in He et al. 2015), 'cosine'
        (to `final_lr_ratio * lr`), 'onecycle' (cosine up to the peak over `pct_start` of the
        run, then cosine down to `lr / (div_factor * final_div_factor)`), 'linear' (warm-up
        then straight down to `final_lr_ratio * lr`), 'constant'.
    milestones: step numbers where 'step' decays.
    """

    kind: str
    lr: float
    total_steps: int
    warmup_steps: int = 0
    warmup_start: float = 0.1
    milestones: tuple[int, ...] = field(default_factory=tuple)
    gamma: float = 0.1
    final_lr_ratio: float = 0.0
    pct_start: float = 0.25
    div_factor: float = 25.0
    final_div_factor: float = 1e4

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(
                f"unknown schedule {self.kind!r}; allowed values: {', '.join(SCHEDULES)}"
            )
        if self.total_steps < 1:
            raise ValueError(f"a schedule needs at least one step, got {self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(
                f"warm-up of {self.warmup_steps} steps does not fit in {self.total_steps} steps"
            )
        object.__setattr__(self, "milestones", tuple(sorted(int(m) for m in self.milestones)))

    def __call__(self, step: int) -> float:
        return lr_at(self, step)


def lr_at(schedule: Schedule, step: int) -> float:
    """Learning rate for optimizer step `step` (0-based)."""
    s = schedule
    step = min(max(step, 0), s.total_steps - 1)
    if s.kind == "onecycle":
        return _onecycle(s, step)
    if step < s.warmup_steps:
        start = s.warmup_start * s.lr
        return start + (s.lr - start) * step / s.warmup_steps
    if s.kind == "constant":
        return s.lr
    if s.kind == "step":
        return s.lr * s.gamma ** sum(step >= m for m in s.milestones)
    progress = (step - s.warmup_steps) / max(1, s.total_steps - s.warmup_steps)
    floor = s.final_lr_ratio * s.lr
    if s.kind == "linear":
        return s.lr + (floor - s.lr) * progress
    return floor + (s.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _onecycle(s: Schedule, step: int) -> float:
    # Smith & Topin 2018, with cosine annealing in both phases (as torch's OneCycleLR).
    start = s.lr / s.div_factor
    end = start / s.final_div_factor
    peak_step = max(1, round(s.pct_start * s.total_steps))
    if step < peak_step:
        return _cos_between(start, s.lr, step / peak_step)
    return _cos_between(s.lr, end, (step - peak_step) / max(1, s.total_steps - 1 - peak_step))


def _cos_between(begin: float, end: float, fraction: float) -> float:
    return end + (begin - end) * 0.5 * (1.0 + math.cos(math.pi * min(fraction, 1.0)))


def epochs_to_steps(epochs: Sequence[float], steps_per_epoch: int) -> tuple[int, ...]:
    return tuple(round(e * steps_per_epoch) for e in epochs)
