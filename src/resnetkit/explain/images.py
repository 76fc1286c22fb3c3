"""Explain a model's predictions on image files: one overlay picture each, and an index page."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..core.fileio import slug
from ..data import load_image
from ..data.augment import Normalize
from ..weights.checkpoint import LoadedModel
from .features import features_figure, strongest_channels
from .gradcam import grad_cam
from .render import Explained, overlay_figure, save_figure, write_index


class ExplainError(ValueError):
    """An explanation request that cannot be served (unknown class, existing output, ...)."""


def resolve_target(target: str | int | None, class_names: Sequence[str]) -> int | None:
    """A class given by name or index, as an index; None stays None (the predicted class)."""
    if target is None:
        return None
    if isinstance(target, str) and target in class_names:
        return list(class_names).index(target)
    try:
        index = int(target)
    except (TypeError, ValueError):
        raise ExplainError(
            f"unknown class {target!r}; give an index 0..{len(class_names) - 1} or one of: "
            + ", ".join(class_names[:20])
            + (" ..." if len(class_names) > 20 else "")
        ) from None
    if not 0 <= index < len(class_names):
        raise ExplainError(f"class index {index} out of range 0..{len(class_names) - 1}")
    return index


def check_output_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a folder that already has an index page, unless `overwrite`."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExplainError(f"{out_dir} exists and is not a folder; choose another -o")
    if (out_dir / "index.html").exists() and not overwrite:
        raise ExplainError(
            f"{out_dir} already holds an explanation (index.html); pass --overwrite to replace "
            "its files, or choose another -o"
        )


def picture_name(position: int, source: str | Path) -> str:
    stem = slug(Path(source).stem)[:60] or "image"
    return f"{position:03d}-{stem}-gradcam.png"


def explain_images(
    loaded: LoadedModel,
    paths: Sequence[str | Path],
    out_dir: str | Path,
    target: str | int | None = None,
    top_k: int = 3,
    overwrite: bool = False,
) -> list[Explained]:
    """Grad-CAM overlays for image files, preprocessed exactly as for prediction."""
    out_dir = Path(out_dir)
    check_output_dir(out_dir, overwrite)
    index = resolve_target(target, loaded.class_names)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ExplainError(f"invalid top-k {top_k!r}: expected an integer >= 1")
    model = loaded.model.eval()
    device = next(model.parameters()).device
    size = loaded.image_size or (model.spec.default_input_size,) * 2
    images = torch.stack([load_image(p, tuple(size), model.spec.in_chans) for p in paths])
    batch = Normalize(loaded.mean, loaded.std)(images.to(device))
    with torch.no_grad():
        probs = model(batch).float().softmax(1).cpu()
    targets = probs.argmax(1) if index is None else torch.full((len(paths),), index)
    maps = grad_cam(model, batch, targets).cpu()
    out_dir.mkdir(parents=True, exist_ok=True)
    k = min(top_k, len(loaded.class_names))
    explained = []
    for i, source in enumerate(paths):
        values, indices = probs[i].topk(k)
        pairs = zip(indices.tolist(), values.tolist(), strict=True)
        top = tuple((loaded.class_names[j], v) for j, v in pairs)
        explained_class = loaded.class_names[int(targets[i])]
        item = Explained(str(source), top, explained_class, out_dir / picture_name(i, source))
        save_figure(overlay_figure(images[i], maps[i], item), item.picture)
        explained.append(item)
    write_index(out_dir, explained, f"Grad-CAM: {loaded.metadata.get('dataset', 'model')}")
    return explained


def explain_features(
    loaded: LoadedModel,
    path: str | Path,
    output: str | Path,
    count: int = 8,
    overwrite: bool = False,
) -> Path:
    """A PNG with each stage's `count` strongest channels for one image file."""
    output = Path(output)
    if output.suffix.lower() != ".png":
        raise ExplainError(f"{output}: the output must be a .png file")
    if output.exists() and not overwrite:
        raise ExplainError(f"{output} already exists; pass --overwrite to replace it")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 64:
        raise ExplainError(f"invalid channel count {count!r}: expected 1 to 64")
    model = loaded.model.eval()
    size = loaded.image_size or (model.spec.default_input_size,) * 2
    image = load_image(path, tuple(size), model.spec.in_chans)
    device = next(model.parameters()).device
    batch = Normalize(loaded.mean, loaded.std)(image[None].to(device))
    stages = strongest_channels(model, batch[0], count)
    title = f"{Path(path).name}: strongest channels of each stage"
    return save_figure(features_figure(image, stages, title), output)
