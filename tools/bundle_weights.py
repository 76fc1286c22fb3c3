"""Copy a finished run's best checkpoint into the package as bundled weights.

    python tools/bundle_weights.py RUN_DIR src/resnetkit/assets/resnet20_fashion_mnist.safetensors
    python tools/bundle_weights.py RUN_DIR src/resnetkit/assets/resnet20_cifar10.safetensors \\
        --dataset cifar10 --measured-on "CIFAR-10 (JPEG q75), test split, 10,000 images"

The metadata keeps everything the checkpoint had (spec, class names, mean/std, input size, test
accuracy) and adds the recipe (the run's config.yaml) and the run's wall time. `--dataset`
replaces the recorded data source (a run on a local folder records its path, which means
nothing on another machine) by a dataset name; `--measured-on` says what test_acc was
measured on.
"""

import argparse
import json
from pathlib import Path

from resnetkit.checkpoint import load_model_checkpoint
from resnetkit.config import TrainConfig
from resnetkit.weights import save_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--dataset", help="dataset name to record instead of the run's source")
    parser.add_argument("--measured-on", help="what the recorded test accuracy was measured on")
    args = parser.parse_args()
    run = args.run_dir
    loaded = load_model_checkpoint(run / "checkpoints" / "best.safetensors")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    meta = {k: v for k, v in loaded.metadata.items() if k != "spec"}
    meta["recipe"] = (run / "config.yaml").read_text()
    meta.setdefault("tta_flip", json.dumps(TrainConfig.from_yaml(run / "config.yaml").tta_flip))
    meta["wall_time_s"] = f"{rows[-1]['elapsed']:.0f}"
    if args.dataset:
        meta["dataset"] = args.dataset
    if args.measured_on:
        meta["test_acc_measured_on"] = args.measured_on
    save_weights(loaded.model, args.out, meta)
    print(f"wrote {args.out}: test accuracy {float(meta['test_acc']):.2%}")


if __name__ == "__main__":
    main()
