"""Evaluation: top-1/top-5, loss, per-class accuracy and the confusion matrix, in one pass."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataError, StreamedImages, load_dataset, make_loader
from ..explain.mistakes import Mistake, keep_confident_mistakes
from ..models.pretrained_cfg import apply_normalisation
from ..weights.checkpoint import LoadedModel, as_loaded
from .runtime import autocast


@dataclass(frozen=True)
class EvalResult:
    loss: float
    top1: float
    top5: float
    count: int
    confusion: torch.Tensor  # (true class, predicted class) counts, int64 on the CPU
    # With keep_mistakes: the most confident wrong predictions, most confident first, as
    # (confidence, normalised input on the CPU, true class, predicted class, p(true class)).
    mistakes: tuple[tuple[float, torch.Tensor, int, int, float], ...] = field(
        default=(), compare=False, repr=False
    )

    @property
    def per_class_accuracy(self) -> list[float]:
        totals = self.confusion.sum(dim=1).clamp(min=1)
        return (self.confusion.diag().double() / totals).tolist()

    def as_dict(self) -> dict[str, float]:
        return {"loss": self.loss, "top1": self.top1, "top5": self.top5, "count": self.count}


# One owner of the precision -> autocast rule (runtime.autocast); the old name stays for callers.
autocast_for = autocast


def tta_views(images: torch.Tensor, flip: bool, translate: int) -> list[tuple[torch.Tensor, float]]:
    """The test-time views of a batch and their weights (summing to 1).

    `flip` adds the mirror image of each view. `translate` > 0 adds the image shifted by that
    many pixels down-right and up-left (reflect padding, so no artificial border appears); as
    in airbench, the unshifted view keeps half the weight and each shift gets a quarter.
    """
    shifted = [(images, 1.0)]
    if translate > 0:
        t = translate
        padded = F.pad(images, (t, t, t, t), mode="reflect")
        height, width = images.shape[-2:]
        shifted = [
            (images, 0.5),
            (padded[..., :height, :width], 0.25),
            (padded[..., 2 * t : 2 * t + height, 2 * t : 2 * t + width], 0.25),
        ]
    if not flip:
        return shifted
    return [pair for view, w in shifted for pair in ((view, w / 2), (view.flip(3), w / 2))]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    tta_flip: bool = False,
    precision: str = "fp32",
    tta_translate: int = 0,
    keep_mistakes: int = 0,
) -> EvalResult:
    """Evaluate on un-augmented batches. With test-time augmentation (`tta_flip`: the mirror
    image; `tta_translate`: shifted copies) the softmax outputs of the views are averaged and
    the loss is the negative log of that average. `keep_mistakes` > 0 also keeps that many of
    the most confident wrong predictions (for reports), in the same pass."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top1 = torch.zeros((), dtype=torch.int64, device=device)
    top5 = torch.zeros((), dtype=torch.int64, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    count = 0
    k = min(5, num_classes)
    mistakes: list[Mistake] = []
    try:
        for images, labels in batches:
            views = tta_views(images, tta_flip, tta_translate)
            with autocast(device, precision):
                outputs = [(model(view).float(), weight) for view, weight in views]
            if len(outputs) > 1:
                probs = sum(logits.softmax(1) * weight for logits, weight in outputs)
                loss_sum += F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="sum")
            else:
                probs = outputs[0][0]
                loss_sum += F.cross_entropy(probs, labels, reduction="sum")
            topk = probs.topk(k, dim=1).indices
            top1 += (topk[:, 0] == labels).sum()
            top5 += (topk == labels[:, None]).any(dim=1).sum()
            confusion += torch.bincount(
                labels * num_classes + topk[:, 0], minlength=num_classes * num_classes
            )
            count += labels.numel()
            if keep_mistakes:
                scores = probs if len(outputs) > 1 else probs.softmax(1)
                mistakes = keep_confident_mistakes(mistakes, scores, images, labels, keep_mistakes)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluation data is empty")
    return EvalResult(
        loss=loss_sum.item() / count,
        top1=top1.item() / count,
        top5=top5.item() / count,
        count=count,
        confusion=confusion.view(num_classes, num_classes).cpu(),
        mistakes=tuple(mistakes),
    )


def _fed_as_the_weights_expect(dataset: Any, loaded: LoadedModel, data: str) -> Any:
    """`dataset` with the weights' class count checked, image files resized and cropped as
    their pretrained_cfg says, and the cfg's normalisation (whatever the data's own is)."""
    if len(dataset.info.class_names) != len(loaded.class_names):
        raise DataError(
            f"{data} has {len(dataset.info.class_names)} classes but the checkpoint was "
            f"trained on {len(loaded.class_names)}"
        )
    cfg = loaded.pretrained_cfg
    if isinstance(dataset, StreamedImages):
        dataset = dataset.with_resize(cfg["crop_pct"], cfg["interpolation"])
    dataset.info = apply_normalisation(dataset.info, cfg)
    return dataset


def _recorded_tta(
    metadata: dict[str, str], flip: bool | None, translate: int | None
) -> tuple[bool, int]:
    """The test-time augmentation asked for, else what the training run recorded."""
    if flip is None:
        flip = json.loads(metadata.get("tta_flip", "false")) is True
    if translate is None:
        recorded = json.loads(metadata.get("tta_translate", "0"))
        translate = recorded if isinstance(recorded, int) and recorded >= 0 else 0
    return flip, translate


def _recorded_split(metadata: dict[str, str], val_fraction: float | None) -> tuple[float, int]:
    """The validation share asked for, else the one the training run held out, and the seed
    that drew it, so `--split val` gives exactly the images the run never trained on."""
    recorded_seed = int(_json_number(metadata.get("split_seed"), 0))
    if val_fraction is not None:
        return val_fraction, recorded_seed
    return float(_json_number(metadata.get("val_fraction"), 0.0)), recorded_seed


def _json_number(text: str | None, default: float) -> float:
    try:
        value = json.loads(text) if text is not None else default
    except json.JSONDecodeError:
        return default
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return value if is_number else default


@dataclass(frozen=True)
class CheckpointEvaluation:
    result: EvalResult
    class_names: tuple[str, ...]
    dataset: str
    split: str
    tta_flip: bool
    tta_translate: int = 0
    # What was evaluated, for pages that show more than the numbers (e.g. report.html).
    model: Any = field(default=None, compare=False, repr=False)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()


def evaluate_checkpoint(
    checkpoint: str | Path | LoadedModel,
    data: str | None = None,
    split: str = "test",
    data_dir: str | None = None,
    download: bool = False,
    val_fraction: float | None = None,
    batch_size: int = 512,
    num_workers: int = 2,
    tta_flip: bool | None = None,
    tta_translate: int | None = None,
    keep_mistakes: int = 0,
) -> CheckpointEvaluation:
    """Evaluate a run folder or checkpoint (or a `LoadedModel`, e.g. named weights) on a
    dataset (by default the one it was trained on), with the weights' own input size and
    normalisation (image files are also resized and cropped as its pretrained_cfg says);
    `tta_flip` defaults to what the training run used, and so does `tta_translate`; the "val"
    split is the one the run held out (its recorded share and seed) unless `val_fraction` says
    otherwise."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"invalid batch size {batch_size!r}: expected an integer >= 1")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise DataError(f"invalid number of workers {num_workers!r}: expected an integer >= 0")
    loaded = as_loaded(checkpoint)
    tta_flip, tta_translate = _recorded_tta(loaded.metadata, tta_flip, tta_translate)
    val_fraction, split_seed = _recorded_split(loaded.metadata, val_fraction)
    data = data or loaded.metadata.get("dataset")
    if not data:
        raise DataError("the weights do not name the dataset they were trained on; pass --data")
    dataset = load_dataset(
        data,
        split,
        data_dir=data_dir,
        download=download,
        image_size=loaded.image_size,
        in_chans=loaded.model.spec.in_chans,
        val_fraction=val_fraction,
        seed=split_seed,
    )
    dataset = _fed_as_the_weights_expect(dataset, loaded, data)
    loader = make_loader(dataset, batch_size, shuffle=False, num_workers=num_workers)
    result = evaluate(
        loaded.model,
        loader,
        len(loaded.class_names),
        tta_flip=tta_flip,
        tta_translate=tta_translate,
        keep_mistakes=keep_mistakes,
    )
    return CheckpointEvaluation(
        result,
        loaded.class_names,
        data,
        split,
        tta_flip,
        tta_translate,
        loaded.model,
        dataset.info.mean,
        dataset.info.std,
    )
