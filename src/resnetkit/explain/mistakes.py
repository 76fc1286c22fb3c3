"""The most confident wrong predictions of a model, kept batch by batch: what evaluation
collects and what a run's report explains with Grad-CAM."""

from __future__ import annotations

import torch

# (confidence, image on the CPU, true class, predicted class, p(true class))
Mistake = tuple[float, torch.Tensor, int, int, float]


def keep_confident_mistakes(
    kept: list[Mistake], probs: torch.Tensor, images: torch.Tensor, labels: torch.Tensor, count: int
) -> list[Mistake]:
    """Merge one batch's wrong predictions into the `count` most confident seen so far."""
    confidence, predicted = probs.max(1)
    for i in torch.nonzero(predicted != labels).flatten().tolist():
        true = int(labels[i])
        p_true = float(probs[i, true])
        kept.append((float(confidence[i]), images[i].cpu(), true, int(predicted[i]), p_true))
    return sorted(kept, key=lambda item: -item[0])[:count]
