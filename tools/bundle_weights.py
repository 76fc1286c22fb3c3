"""Copy a finished run's best checkpoint into the package as bundled weights.

    python tools/bundle_weights.py RUN_DIR src/resnetkit/assets/resnet20_fashion_mnist.safetensors

The metadata keeps everything the checkpoint had (spec, class names, mean/std, input size, test
accuracy) and adds the recipe (the run's config.yaml) and the run's wall time.
"""

import json
import sys
from pathlib import Path

from resnetkit.checkpoint import load_model_checkpoint
from resnetkit.config import TrainConfig
from resnetkit.weights import save_weights


def main(run_dir: str, out: str) -> None:
    run = Path(run_dir)
    loaded = load_model_checkpoint(run / "checkpoints" / "best.safetensors")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    meta = {k: v for k, v in loaded.metadata.items() if k != "spec"}
    meta["recipe"] = (run / "config.yaml").read_text()
    meta.setdefault("tta_flip", json.dumps(TrainConfig.from_yaml(run / "config.yaml").tta_flip))
    meta["wall_time_s"] = f"{rows[-1]['elapsed']:.0f}"
    save_weights(loaded.model, out, meta)
    print(f"wrote {out}: test accuracy {float(meta['test_acc']):.2%}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
