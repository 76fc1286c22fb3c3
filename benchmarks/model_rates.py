"""Training images/s of registered models at several input sides and both CPU precisions,
side by side in one process: what an epoch costs before choosing a model for a time budget.

    python benchmarks/model_rates.py resnet20 wrn16_2 --sides 32 24 --batch 256
    python benchmarks/model_rates.py resnet14 resnet20 --sides 28 20 --in-chans 1 --batch 128
    python benchmarks/model_rates.py resnet9_half --sides 32 --batch 128 256 512 --fp32-only

Each cell is one SGD training step (forward, loss, backward, update) repeated for `--seconds`
on random data in channels_last, after three warm-up steps; models and sides are timed in
turn, so slow drift of the machine touches every cell alike. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import resnetkit as rk


def training_rate(
    model: torch.nn.Module,
    side: int,
    batch: int,
    bf16: bool,
    seconds: float,
    in_chans: int | None = None,
):
    """Images/s of full training steps on a random batch of `side` x `side` images
    (`in_chans` for a wrapped model, e.g. DistributedDataParallel, that does not say it)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    chans = model.in_chans if in_chans is None else in_chans
    x = torch.randn(batch, chans, side, side).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="registered names, e.g. resnet20 wrn16_2")
    parser.add_argument("--sides", type=int, nargs="+", default=[32, 24])
    parser.add_argument("--batch", type=int, nargs="+", default=[256], help="one or more")
    parser.add_argument("--seconds", type=float, default=6.0, help="timing per cell")
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--in-chans", type=int, default=3, help="1 for grayscale data")
    parser.add_argument("--fp32-only", action="store_true", help="skip the bf16 columns")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = (False,) if args.fp32_only else (False, True)
    columns = [
        (batch, side, bf16) for bf16 in precisions for batch in args.batch for side in args.sides
    ]
    names = [
        f"{side}² {'bf16' if bf16 else 'fp32'}" + (f" b{batch}" if len(args.batch) > 1 else "")
        for batch, side, bf16 in columns
    ]
    batches = "batch " + "/".join(str(b) for b in args.batch)
    print(f"{batches}, {torch.get_num_threads()} threads, images/s")
    print("| model | params | " + " | ".join(names) + " |")
    print("| --- | ---: |" + " ---: |" * len(names))
    for name in args.models:
        model = rk.create_model(name, num_classes=10, in_chans=args.in_chans).to(
            memory_format=torch.channels_last
        )
        params = sum(p.numel() for p in model.parameters())
        rates = [training_rate(model.train(), s, b, bf, args.seconds) for b, s, bf in columns]
        print(f"| {name} | {params / 1e6:.2f}M | " + " | ".join(f"{r:.0f}" for r in rates) + " |")


if __name__ == "__main__":
    main()
