"""A tiny network and config so training tests take a second or two each."""

from pathlib import Path

from resnetkit.config import TrainConfig
from resnetkit.spec import ResNetSpec
from resnetkit.training.callbacks import Callback

TINY_SPEC = ResNetSpec(
    stages=[(1, 8, 1), (1, 16, 2)], stem="cifar", stem_width=8, shortcut="B", num_classes=10
)


def tiny_config(tmp_path: Path, **changes) -> TrainConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec_path = tmp_path / "tiny.yaml"
    if not spec_path.exists():
        TINY_SPEC.to_yaml(spec_path)
    base = dict(
        model=str(spec_path),
        data="synthetic",
        subset=256,
        image_size=16,
        epochs=2,
        batch_size=32,
        eval_batch_size=128,
        lr=0.05,
        out_dir=str(tmp_path / "runs"),
        name="run",
        threads=1,
        precision="fp32",  # no probe: tests compare weights bit for bit
        log_every_steps=1,
    )
    base.update(changes)
    return TrainConfig(**base)


class StopAfter(Callback):
    """Interrupts training once `steps` optimizer steps are done, like a user pressing Ctrl-C."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_step_end(self, state, metrics) -> None:
        if state.step >= self.steps:
            raise KeyboardInterrupt
