"""Evaluation: top-1/top-5, loss, per-class accuracy and the confusion matrix, in one pass."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class EvalResult:
    loss: float
    top1: float
    top5: float
    count: int
    confusion: torch.Tensor  # (true class, predicted class) counts, int64 on the CPU

    @property
    def per_class_accuracy(self) -> list[float]:
        totals = self.confusion.sum(dim=1).clamp(min=1)
        return (self.confusion.diag().double() / totals).tolist()

    def as_dict(self) -> dict[str, float]:
        return {"loss": self.loss, "top1": self.top1, "top5": self.top5, "count": self.count}


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast for the device, or a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    tta_flip: bool = False,
    precision: str = "fp32",
) -> EvalResult:
    """Evaluate on un-augmented batches; `tta_flip` averages the softmax of the image and its
    horizontal mirror."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    top1 = torch.zeros((), dtype=torch.int64, device=device)
    top5 = torch.zeros((), dtype=torch.int64, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    count = 0
    k = min(5, num_classes)
    try:
        for images, labels in batches:
            with autocast_for(device, precision):
                logits = model(images).float()
                if tta_flip:
                    flipped = model(images.flip(3)).float()
            if tta_flip:
                probs = (logits.softmax(1) + flipped.softmax(1)) / 2
                loss_sum += F.nll_loss(probs.clamp_min(1e-12).log(), labels, reduction="sum")
            else:
                probs = logits
                loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            topk = probs.topk(k, dim=1).indices
            top1 += (topk[:, 0] == labels).sum()
            top5 += (topk == labels[:, None]).any(dim=1).sum()
            confusion += torch.bincount(
                labels * num_classes + topk[:, 0], minlength=num_classes * num_classes
            )
            count += labels.numel()
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
    )
