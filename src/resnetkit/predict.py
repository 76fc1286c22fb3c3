"""Classify image files with a trained checkpoint: top-k class names with probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import LoadedModel
from .data import load_image
from .data.augment import Normalize


@dataclass(frozen=True)
class Prediction:
    path: str
    top: tuple[tuple[str, float], ...]  # (class name, probability), most likely first


def input_side(loaded: LoadedModel) -> tuple[int, int]:
    if loaded.image_size is not None:
        return tuple(loaded.image_size)
    side = loaded.model.spec.default_input_size
    return (side, side)


@torch.no_grad()
def predict_images(
    loaded: LoadedModel, paths: Sequence[str | Path], top_k: int = 5, batch_size: int = 64
) -> list[Prediction]:
    """Decode, resize and normalise each image as in training, then rank the classes."""
    model = loaded.model.eval()
    device = next(model.parameters()).device
    size = input_side(loaded)
    in_chans = model.spec.in_chans
    normalize = Normalize(loaded.mean, loaded.std)
    k = min(top_k, len(loaded.class_names))
    results = []
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start : start + batch_size])
        images = torch.stack([load_image(p, size, in_chans) for p in chunk]).to(device)
        probs = model(normalize(images)).float().softmax(dim=1)
        values, indices = probs.topk(k, dim=1)
        for path, vals, idx in zip(chunk, values.tolist(), indices.tolist(), strict=True):
            top = tuple((loaded.class_names[i], v) for i, v in zip(idx, vals, strict=True))
            results.append(Prediction(str(path), top))
    return results
