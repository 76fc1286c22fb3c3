"""Multi-process training with PyTorch's own DistributedDataParallel, launched by torchrun.

`torchrun --nproc_per_node=N -m resnetkit train ...` sets RANK, WORLD_SIZE, LOCAL_RANK and
the rendezvous address in the environment; everything here reads them from there. One
process (world size 1) needs no process group and takes none of these code paths.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = ""
    owns_group: bool = False  # the process group was started here (not by the caller)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> DistInfo:
    """The process's place in a torchrun launch (rank 0 of 1 when not launched by torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )


def init(info: DistInfo, device: torch.device) -> DistInfo:
    """Join the process group: NCCL between GPUs, gloo on the CPU (unless the caller started
    one already, as a script around `resnetkit.fit` may)."""
    if not info.enabled:
        return info
    backend = "nccl" if device.type == "cuda" else "gloo"
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    else:
        backend = dist.get_backend()
    return DistInfo(
        info.rank, info.world_size, info.local_rank, info.local_world_size, backend, owns
    )


def device_for(info: DistInfo, requested: torch.device) -> torch.device:
    """One GPU per process (cuda:LOCAL_RANK); CPU processes share the machine."""
    if requested.type == "cuda" and info.enabled:
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return requested


def threads_per_process(info: DistInfo, total: int) -> int:
    # Processes on one machine split its cores: oversubscribed OpenMP threads spin and stall.
    return max(1, total // max(info.local_world_size, 1))


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over all ranks in place (a no-op for one process)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Leave the process group, if it was started here: a caller's own stays theirs."""
    if info.enabled and info.owns_group and dist.is_initialized():
        dist.destroy_process_group()
