"""`TrainState`: everything a run must carry over an interruption, and its one on-disk schema.

`state_dict()` is what `state-<step>.pt` holds (written by `weights.checkpoint.save_state`)
and `load_state_dict()` reads exactly those keys back, so saving and resuming cannot drift
apart. The keys are the ones resnetkit has always written, so run folders made before this
class existed still resume.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..weights.checkpoint import CheckpointError
from .ema import WeightEma

# Every state has these keys; `rng_cuda` (runs on a GPU), `ema` (runs with a weight average)
# and `loader` (training batches with a state of their own: a user's DataLoader) only where
# they apply. `weights.checkpoint.save_state` adds `format`.
STATE_KEYS = (
    "model",
    "optimizer",
    "rng_cpu",
    "step",
    "epoch",
    "batch",
    "best",
    "bad_steps",
    "running",
    "history",
    "elapsed",
)
OPTIONAL_STATE_KEYS = ("rng_cuda", "ema", "loader")


def new_running(device: torch.device | str = "cpu") -> torch.Tensor:
    """Zeroed running sums of an epoch: loss sum, correct, seen (float64, so they stay exact)."""
    return torch.zeros(3, dtype=torch.float64, device=device)


@dataclass
class TrainState:
    """The model, optimizer, weight average and the loop's position and tallies.

    The random number generators are process-wide: `state_dict()` captures them and
    `load_state_dict()` restores them, so a resumed run draws the same augmentations and
    dropout masks as an uninterrupted one.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    ema: WeightEma | None = None
    # The training batches, saved and restored where they have a `state_dict` of their own
    # (`data.user_loader.UserLoader`: the random generators a user's DataLoader draws from).
    loader: Any = field(default=None, compare=False)
    step: int = 0  # optimizer steps taken, skipped non-finite ones included
    epoch: int = 0  # the epoch under way, or the next one to start
    batch: int = 0  # the next batch of `epoch` to train on
    best: float = -1.0  # best top-1 on the split that chooses best.safetensors
    bad_steps: int = 0  # non-finite steps skipped so far
    running: torch.Tensor | None = None  # this epoch's loss sum, correct, seen on this rank
    history: list[dict[str, Any]] = field(default_factory=list)  # one metrics row per epoch
    elapsed: float = 0.0  # seconds trained before `clock_start` (by earlier processes)
    clock_start: float = field(default_factory=time.perf_counter, compare=False)
    # The last optimizer step's gradient norm before clipping (with clip_grad_norm; else None),
    # a device tensor for callbacks to read. Not saved: the next step measures it again.
    grad_norm: torch.Tensor | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.running is None:
            self.running = new_running(self.device)

    @property
    def device(self) -> torch.device:
        tensor = next(itertools.chain(self.model.parameters(), self.model.buffers()), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and shipped: the average, or the trained ones."""
        return self.ema.module if self.ema is not None else self.model

    def start_clock(self) -> None:
        """Count training time from now (set-up time is not training time)."""
        self.clock_start = time.perf_counter()

    def seconds_trained(self) -> float:
        return self.elapsed + time.perf_counter() - self.clock_start

    def count_batch(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a trained batch to the running sums (on the device: no host sync). Soft targets
        (N, classes), as mixup and cutmix make, count against their dominant class."""
        with torch.no_grad():
            if labels.dim() == 2:
                labels = labels.argmax(1)
            self.running[0] += loss.detach().double() * labels.numel()
            self.running[1] += (logits.argmax(1) == labels).sum()
            self.running[2] += labels.numel()

    def state_dict(self, running: torch.Tensor | None = None) -> dict[str, Any]:
        """The state as saved; `running`: the sums over all ranks (default: this rank's)."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "step": self.step,
            "epoch": self.epoch,
            "batch": self.batch,
            "best": self.best,
            "bad_steps": self.bad_steps,
            "running": (self.running if running is None else running).cpu(),
            "history": list(self.history),
            "elapsed": self.seconds_trained(),
        }
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state()
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if hasattr(self.loader, "state_dict"):
            state["loader"] = self.loader.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], carry_running: bool = True) -> None:
        """Restore a saved state. The saved running sums are over all ranks: one rank carries
        them (`carry_running`), the others restart theirs at zero."""
        missing = [key for key in STATE_KEYS if key not in state]
        if missing:
            raise CheckpointError(f"training state has no {', '.join(missing)}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            if "ema" in state:
                self.ema.load_state_dict(state["ema"])
            else:  # a run saved before the average existed: start it from the loaded weights
                self.ema = WeightEma(self.model, self.ema.decay, self.ema.every)
        if "loader" in state and hasattr(self.loader, "load_state_dict"):
            self.loader.load_state_dict(state["loader"])
        torch.set_rng_state(state["rng_cpu"])
        if self.device.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"])
        self.step, self.epoch, self.batch = state["step"], state["epoch"], state["batch"]
        self.best, self.bad_steps = state["best"], state["bad_steps"]
        device = self.device
        self.running = state["running"].to(device) if carry_running else new_running(device)
        self.history = list(state["history"])
        self.elapsed = state["elapsed"]
