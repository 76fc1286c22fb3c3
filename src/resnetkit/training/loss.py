"""Losses for soft targets (mixup, cutmix, label smoothing folded into the targets)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["soft_target_cross_entropy"]


def soft_target_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy against target distributions: -sum(targets * log_softmax(logits)) per
    sample, then `reduction` ("mean", "sum" or "none"). With one-hot targets it equals
    F.cross_entropy; computed in float32 whatever the logits' precision, as autocast does."""
    if logits.shape != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape"
        )
    per_sample = -(targets.float() * F.log_softmax(logits.float(), dim=-1)).sum(-1)
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")
