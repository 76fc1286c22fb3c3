"""What a recipe costs on this machine: train a recipe for a few steps with the real trainer and
data, and project the full run from the measured images/s.

    python benchmarks/recipe_cost.py --data folder:../shared/data/cifar10-jpeg.tar.gz \\
        configs/cifar10_resnet20_paper.yaml configs/cifar10_resnet18_tutorial.yaml

Prints one Markdown row per recipe and precision (the recipe's own, and fp32 when it differs).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from resnetkit.config import TrainConfig
from resnetkit.progress import Progress, format_duration
from resnetkit.train import train


def measure(config: Path, data: str, steps: int, precision: str | None, epoch_images: int) -> dict:
    """Images/s over the first `steps` optimizer steps (warm-up included: slightly low)."""
    cfg = TrainConfig.from_yaml(config)
    with tempfile.TemporaryDirectory() as tmp:
        changes = dict(data=data, max_steps=steps, out_dir=tmp, name="cost", tensorboard=False)
        if precision:
            changes["precision"] = precision
        run = cfg.replace(**changes)
        result = train(run, progress=Progress(enabled=False))
        runtime = json.loads((result.run_dir / "runtime.json").read_text())
    rate = result.history[-1]["images_per_s"]
    images = (cfg.max_steps or 10**12) * cfg.batch_size
    per_epoch = epoch_images / rate
    total = min(images / rate, per_epoch * cfg.epochs)
    return {
        "recipe": config.name,
        "model": cfg.model,
        "precision": runtime["precision"],
        "images_per_s": rate,
        "epoch_s": per_epoch,
        "total_s": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--data", required=True, help="e.g. folder:PATH to CIFAR-10")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps to time")
    parser.add_argument("--also-fp32", action="store_true", help="measure fp32 as well")
    parser.add_argument(
        "--epoch-images", type=int, default=50_000, help="training images per epoch (CIFAR-10)"
    )
    args = parser.parse_args()
    print("| recipe | model | precision | images/s | one epoch | full recipe |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for config in args.configs:
        precisions = [None, "fp32"] if args.also_fp32 else [None]
        seen = set()
        for precision in precisions:
            row = measure(config, args.data, args.steps, precision, args.epoch_images)
            if row["precision"] in seen:
                continue
            seen.add(row["precision"])
            print(
                f"| `{row['recipe']}` | {row['model']} | {row['precision']} | "
                f"{row['images_per_s']:,.0f} | {format_duration(row['epoch_s'])} | "
                f"{format_duration(row['total_s'])} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
