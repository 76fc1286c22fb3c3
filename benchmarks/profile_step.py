"""Where a training step's time goes: torch.profiler's top operators for one model.

python benchmarks/profile_step.py resnet50 --side 224 --batch 32   # the README's table
"""

import argparse

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import resnetkit as rk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rows", type=int, default=12)
    parser.add_argument("--nchw", action="store_true", help="profile NCHW instead of channels_last")
    args = parser.parse_args()

    torch.manual_seed(0)
    layout = torch.contiguous_format if args.nchw else torch.channels_last
    model = rk.create_model(args.model, num_classes=10).to(memory_format=layout)
    x = torch.randn(args.batch, 3, args.side, args.side).to(memory_format=layout)
    y = torch.randint(0, 10, (args.batch,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: oneDNN primitive creation
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
