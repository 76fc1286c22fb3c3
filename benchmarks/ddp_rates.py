"""Training images/s of one process using every core against torchrun's N single-thread
processes (gloo DDP), for one registered model on random data: whether data-parallel training
pays on a CPU before launching a long run that way.

    python benchmarks/ddp_rates.py resnet9_half --side 32 --batch 256
    torchrun --nproc_per_node 2 benchmarks/ddp_rates.py resnet9_half --side 32 --batch 256

Run both commands and compare the two printed rates (the same global batch, split across the
processes under torchrun). Each times SGD steps in channels_last fp32 for `--seconds` after
three warm-up steps; under torchrun the ranks' rates are summed.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from model_rates import training_rate

import resnetkit as rk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="registered name, e.g. resnet9_half")
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--in-chans", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256, help="global batch")
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args()
    distributed = "RANK" in os.environ
    batch = args.batch
    if distributed:
        dist.init_process_group("gloo")
        torch.set_num_threads(1)
        batch //= dist.get_world_size()
    torch.manual_seed(0)
    model = rk.create_model(args.model, num_classes=10, in_chans=args.in_chans)
    model = model.to(memory_format=torch.channels_last)
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
    rate = training_rate(model, args.side, batch, False, args.seconds, args.in_chans)
    if distributed:
        total = torch.tensor([rate])
        dist.all_reduce(total)
        if dist.get_rank() == 0:
            print(
                f"{args.model} {args.side}²: {dist.get_world_size()} processes x 1 thread, "
                f"{total.item():.0f} images/s"
            )
        dist.destroy_process_group()
    else:
        print(
            f"{args.model} {args.side}²: 1 process x {torch.get_num_threads()} threads, "
            f"{rate:.0f} images/s"
        )


if __name__ == "__main__":
    main()
