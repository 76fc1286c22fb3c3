"""Plan and run: the recipe, the models, and resumable training runs every experiment shares.

An experiment goes plan -> run -> summarise -> render. Its plan is a list of `RunPlan`s (a
label and a spec each) and one recipe; `run_plans` trains them here; `summarise` reads the
numbers back as plain data; `render` writes the report. The folder holds one ordinary run
folder per model (`runs/<label>/`, made by `training.train`), the spec files of models
that are not registered (`specs/`), and the report. Re-running an experiment skips finished
runs, resumes unfinished ones and starts missing ones, so an interruption loses at most an
epoch.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.fileio import data_slug
from ..models.registry import get_spec, list_models, resolve_spec
from ..models.spec import ResNetSpec, SpecError, StageSpec
from ..training.callbacks import Callback, StepMetrics
from ..training.config import RUN_FOLDER_DEFAULTS, ConfigError, TrainConfig, check_run_name
from ..training.progress import Progress, format_duration
from ..training.state import TrainState
from ..training.train import train
from ..weights import checkpoint as ckpt

log = logging.getLogger(__name__)

# Full budget: the first 30,000 Fashion-MNIST training images for 10 epochs (2,350 steps of
# 128). At ~1,400 img/s (resnet20, 28x28, bf16, 2 CPU cores) a 20-layer run takes ~4 min and
# a 56-layer run ~12 min, test evaluation included.
DEFAULT_DATA = "fashion-mnist"
DEFAULT_SUBSET = 30_000
DEFAULT_EPOCHS = 10
# --quick: synthetic 16x16 images, 256 of them, 2 epochs; a few seconds per run.
QUICK_DATA = "synthetic"
QUICK_SUBSET = 256
QUICK_EPOCHS = 2

STEPS_FILE = "train_steps.jsonl"
FINISHED, RESUMED, TRAINED = "skipped (finished)", "resumed", "trained"


class ExperimentError(ConfigError):
    """An invalid experiment setting; the message names the setting and what is allowed."""


# -- the recipe --------------------------------------------------------------------------------


def recipe(
    data: str | None = None,
    subset: int | None = None,
    epochs: int | None = None,
    quick: bool = False,
    data_dir: str | None = None,
    **changes: Any,
) -> TrainConfig:
    """The one training recipe of every experiment run (He et al. 2015, section 4.2, shortened).

    SGD with momentum 0.9 (no Nesterov), lr 0.1, weight decay 1e-4, batch 128, lr / 10 at 50%
    and 75% of the epochs, no label smoothing, modest augmentation (2-pixel crop padding and
    flips), bf16 autocast and channels_last. `quick` swaps in tiny synthetic data.
    """
    data = data or (QUICK_DATA if quick else DEFAULT_DATA)
    epochs = epochs or (QUICK_EPOCHS if quick else DEFAULT_EPOCHS)
    subset = subset or (QUICK_SUBSET if quick else DEFAULT_SUBSET)
    base: dict[str, Any] = dict(
        data=data,
        data_dir=data_dir,
        subset=subset,
        epochs=epochs,
        batch_size=128,
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        nesterov=False,
        weight_decay=1e-4,
        schedule="step",
        milestones=(0.5 * epochs, 0.75 * epochs),
        milestone_unit="epoch",
        gamma=0.1,
        label_smoothing=0.0,
        crop_padding=2,
        flip=True,
        cutout=0,
        precision="auto",  # bf16 only where this machine runs it faster
        channels_last=True,
        tta_flip=False,
        # The experiments compare train and test error after a fixed budget and never use the
        # best checkpoint, so no validation share is held out: every run sees all its images.
        val_fraction=0.0,
        eval_every=1,
        log_every_steps=20,
        seed=0,
    )
    if quick:
        # Tiny and fast: 8 steps per epoch, logged every 2 steps.
        base.update(batch_size=32, eval_batch_size=256, log_every_steps=2, tensorboard=False)
        if data == QUICK_DATA:
            base["image_size"] = 16
    base.update(changes)
    return TrainConfig(**base)


# -- models ------------------------------------------------------------------------------------


def cifar_spec(depth: int, shortcut: str = "A", preact: bool = False) -> ResNetSpec:
    """The 6n+2-layer CIFAR net of `depth` (basic units, 16/32/64 filters) as a spec.

    v1 nets start from `resnet20`'s spec, v2 nets from `preact_resnet110`'s (1x1 projection
    shortcuts where the shape changes, as in He et al. 2016's code); only the units per stage
    and, where asked, the shortcut change.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ExperimentError(
            f"invalid experiment setting 'depth': got {depth!r}; CIFAR ResNets have 6n+2 "
            f"layers with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...)"
        )
    n = (depth - 2) // 6
    base = get_spec("preact_resnet110" if preact else "resnet20")
    stages = tuple(StageSpec(n, s.width, s.stride) for s in base.stages)
    changes: dict[str, Any] = {"stages": stages}
    if not preact:
        changes["shortcut"] = shortcut
    prefix = "preact_resnet" if preact else ("plain" if shortcut == "none" else "resnet")
    suffix = "" if shortcut in ("A", "none") or preact else f"_{shortcut}"
    return base.replace(**changes, name=f"{prefix}{depth}{suffix}")


def registered_name(spec: ResNetSpec) -> str | None:
    """The registered name whose spec equals `spec`, preferring `spec.name`."""
    names = list_models()
    if spec.name in names and get_spec(spec.name) == spec:
        return spec.name
    return next((name for name in names if get_spec(name) == spec), None)


def model_reference(spec: ResNetSpec, specs_dir: Path) -> str:
    """What goes into `TrainConfig.model`: the registered name, or a spec file written into
    `specs_dir` (absolute path; an identical existing file is left untouched)."""
    name = registered_name(spec)
    if name is not None:
        return name
    specs_dir.mkdir(parents=True, exist_ok=True)
    path = (specs_dir / f"{spec.name}.yaml").resolve()
    text = spec.to_yaml()
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return str(path)


# -- runs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunPlan:
    """One model of an experiment: its label (the run folder's name) and its spec."""

    label: str
    spec: ResNetSpec
    note: str = ""
    changes: tuple[tuple[str, Any], ...] = ()  # recipe fields this run changes, if any


class StepLog(Callback):
    """Records the training error of every logging window (the trainer logs every
    `log_every_steps` steps) to `train_steps.jsonl`.

    The trainer reports running means over the epoch; the difference of two consecutive
    reports gives the error of the mini-batches in between, like the curves of He et al.
    """

    def __init__(self, path: Path, batch_size: int) -> None:
        self.path = path
        self.batch_size = batch_size
        self._previous = (0, 0.0, 0.0)  # batches done, loss sum, correct

    def on_epoch_start(self, state: TrainState) -> None:
        """Start a new epoch: the trainer's running sums restart at zero."""
        self._previous = (0, 0.0, 0.0)

    def on_step_end(self, state: TrainState, metrics: StepMetrics | None) -> None:
        """Append the error of the batches since the last report."""
        if metrics is None or metrics.batch >= metrics.batches:
            return  # not a logging step; or the last batch, which may be partial
        seen = metrics.batch * self.batch_size
        loss_sum, correct = metrics.loss * seen, metrics.accuracy * seen
        done, loss_before, correct_before = self._previous
        images = seen - done * self.batch_size
        self._previous = (metrics.batch, loss_sum, correct)
        if images <= 0:
            return
        row = {
            "step": metrics.epoch * metrics.batches + metrics.batch,
            "epoch": round(metrics.epoch + metrics.batch / metrics.batches, 6),
            "train_error": round(1.0 - (correct - correct_before) / images, 6),
            "train_loss": round((loss_sum - loss_before) / images, 6),
            "images": images,
        }
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file ([] if it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch rows of a run's metrics.jsonl."""
    return read_jsonl(run_dir / "metrics.jsonl")


def read_steps(run_dir: Path) -> list[dict[str, Any]]:
    """The windowed training error of a run; after a resume the re-logged steps win."""
    by_step = {int(row["step"]): row for row in read_jsonl(run_dir / STEPS_FILE)}
    return [by_step[step] for step in sorted(by_step)]


def is_finished(rows: Sequence[dict[str, Any]], cfg: TrainConfig) -> bool:
    """Whether the metrics rows cover the whole budget of `cfg`."""
    if not rows:
        return False
    last = rows[-1]
    done_steps = cfg.max_steps is not None and last["step"] >= cfg.max_steps
    return last["epoch"] >= cfg.epochs or done_steps


def _comparable(cfg: TrainConfig) -> dict[str, Any]:
    data = cfg.to_dict()
    for key in ("out_dir", "name", "model"):
        data.pop(key)
    return data


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return resolve_spec(a) == resolve_spec(b)
    except (SpecError, ValueError, OSError):
        return False


def check_same_recipe(run_dir: Path, cfg: TrainConfig) -> None:
    """Refuse to resume or reuse a run that was made with a different recipe or model."""
    saved = TrainConfig.from_yaml(run_dir / "config.yaml", defaults=RUN_FOLDER_DEFAULTS)
    old, new = _comparable(saved), _comparable(cfg)
    changed = [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]
    if not _same_model(saved.model, cfg.model):
        changed.insert(0, f"model: {saved.model} -> {cfg.model}")
    if changed:
        details = ", ".join(changed[:4])
        raise ExperimentError(
            f"run {run_dir} was made with a different recipe ({details}); pass --overwrite to "
            f"retrain it, or --name to start a new experiment"
        )


def ensure_run(cfg: TrainConfig, overwrite: bool = False, progress: Progress | None = None) -> str:
    """Make sure the run `cfg.out_dir/cfg.name` is complete: skip it if finished, resume it if
    interrupted, start it if missing (or if `overwrite`). Returns what was done."""
    run_dir = Path(cfg.out_dir) / str(cfg.name)
    steps = [StepLog(run_dir / STEPS_FILE, cfg.batch_size)]
    started = (run_dir / "config.yaml").is_file()
    if started and not overwrite:
        check_same_recipe(run_dir, cfg)
        if is_finished(read_metrics(run_dir), cfg):
            return FINISHED
        if ckpt.list_states(run_dir / "checkpoints"):
            log.info("resuming %s", run_dir)
            train(cfg, resume=run_dir, progress=progress, callbacks=steps)
            return RESUMED
        log.info("%s stopped before its first checkpoint; starting it again", run_dir)
    train(cfg, overwrite=overwrite or started, progress=progress, callbacks=steps)
    return TRAINED


def run_plans(
    plans: Sequence[RunPlan],
    base: TrainConfig,
    folder: Path,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> list[str]:
    """Train (or skip, or resume) every planned run in `folder/runs`; what was done to each."""
    statuses = []
    for index, plan in enumerate(plans, 1):
        model = model_reference(plan.spec, folder / "specs")
        cfg = base.replace(
            **dict(plan.changes), model=model, out_dir=str(folder / "runs"), name=plan.label
        )
        log.info("[%d/%d] %s", index, len(plans), plan.label)
        started = time.perf_counter()
        statuses.append(ensure_run(cfg, overwrite, progress))
        took = format_duration(time.perf_counter() - started)
        log.info("[%d/%d] %s: %s (%s)", index, len(plans), plan.label, statuses[-1], took)
    return statuses


# -- the experiment folder ---------------------------------------------------------------------


def experiment_folder(out_dir: str | Path, name: str | None, kind: str, data: str) -> Path:
    """`out_dir/name`, by default `<kind>-<data>`: a fixed name, so a re-run resumes."""
    if name is None:
        name = f"{kind}-{data_slug(data)}"
    return Path(out_dir) / check_run_name(name, "invalid experiment name")


EXPERIMENT_MARKER = ".resnetkit-experiment"


def prepare_experiment_folder(folder: Path) -> Path:
    """Create `folder` and mark it as an experiment's; a non-empty folder that is not one
    (no marker, no runs/) is refused, so its report.md and plots are never written over."""
    if folder.exists() and not folder.is_dir():
        raise ExperimentError(f"{folder} exists and is not a folder; choose another --name")
    ours = (folder / EXPERIMENT_MARKER).is_file() or (folder / "runs").is_dir()
    if folder.is_dir() and any(folder.iterdir()) and not ours:
        raise ExperimentError(
            f"{folder} exists and is not a resnetkit experiment folder; choose another --name "
            f"or --out-dir"
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / EXPERIMENT_MARKER).touch()
    return folder
