"""Classify image files: top-k class names with probabilities.

Two backends share everything but the forward pass: PyTorch runs a checkpoint (a run folder or
a `.safetensors` file), ONNX Runtime runs an `.onnx` file made by `resnetkit export`, whose
metadata carries the class names, normalisation and image size. Each image goes through the
evaluation transform of the model's weights (`create_transform(pretrained_cfg)`: resize,
centre crop, normalise, as the weights were evaluated) and is ranked by the same top-k code.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.spec import ResNetSpec
from ..weights.catalogue import bundled_weights, default_tag, split_weights_name
from ..weights.checkpoint import (
    CheckpointError,
    LoadedModel,
    load_model_checkpoint,
    preprocessing_from_metadata,
    pretrained_cfg_from_metadata,
)
from ..weights.factory import create_model
from ..weights.transforms import create_transform

BACKENDS = ("torch", "onnxruntime")
OUTPUT_FORMATS = ("json", "csv")


class PredictError(ValueError):
    """A prediction request that cannot be served (e.g. top-k below 1)."""


@dataclass(frozen=True)
class Prediction:
    path: str
    top: tuple[tuple[str, float], ...]  # (class name, probability), most likely first
    indices: tuple[int, ...] = ()  # the class index of each entry of `top`

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready record: path, labels, probabilities and class indices, best first."""
        return {
            "path": self.path,
            "labels": [name for name, _ in self.top],
            "probabilities": [prob for _, prob in self.top],
            "indices": list(self.indices),
        }


@dataclass(frozen=True)
class OnnxModel:
    """An exported `.onnx` classifier in an ONNX Runtime session, with its preprocessing."""

    session: Any  # onnxruntime.InferenceSession
    class_names: tuple[str, ...]
    image_size: tuple[int, int]
    in_chans: int
    batch_size: int | None  # the graph's fixed batch size; None if the batch axis is dynamic
    metadata: dict[str, str]
    pretrained_cfg: dict[str, Any]  # the evaluation transform of the exported weights

    @property
    def mean(self) -> tuple[float, ...]:
        """The input mean, as the exported weights' pretrained_cfg says."""
        return tuple(self.pretrained_cfg["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.pretrained_cfg["std"])

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits for a float (N, C, H, W) batch of any N; a fixed-batch graph gets the batch
        in chunks, the last one zero-padded."""
        x = batch.detach().cpu().float().numpy()
        name = self.session.get_inputs()[0].name
        step = self.batch_size or len(x)
        outputs = []
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            padded = np.zeros((step, *x.shape[1:]), dtype=x.dtype)
            padded[: len(chunk)] = chunk
            outputs.append(self.session.run(None, {name: padded})[0][: len(chunk)])
        return torch.from_numpy(np.concatenate(outputs))


def input_side(loaded: LoadedModel) -> tuple[int, int]:
    if loaded.image_size is not None:
        return tuple(loaded.image_size)
    side = loaded.model.spec.default_input_size
    return (side, side)


def load_onnx_model(path: str | Path) -> OnnxModel:
    """Open an `.onnx` file written by `resnetkit export` in ONNX Runtime (CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ONNX file not found: {path}")
    try:
        import onnxruntime as ort
    except ImportError:
        raise CheckpointError(
            "predicting from an .onnx file needs onnxruntime: pip install 'resnetkit[export]'"
        ) from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise CheckpointError(f"cannot load {path} in ONNX Runtime: {exc}") from None
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    if "spec" not in metadata:
        raise CheckpointError(
            f"{path} has no resnetkit metadata (spec, class names, normalisation); "
            f"export it with `resnetkit export`"
        )
    spec = ResNetSpec.parse_json(metadata["spec"])
    try:
        names, _, _, size = preprocessing_from_metadata(metadata, spec)
        cfg = pretrained_cfg_from_metadata(metadata, spec)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    shape = session.get_inputs()[0].shape
    if len(shape) != 4 or shape[1] != spec.in_chans:
        raise CheckpointError(
            f"{path}: its input {shape} does not fit the {spec.in_chans} channels of its metadata"
        )
    outputs = session.get_outputs()[0].shape
    if len(outputs) != 2 or outputs[1] != len(names):
        raise CheckpointError(
            f"{path}: its output {outputs} does not fit the {len(names)} classes of its metadata"
        )
    batch = session.get_inputs()[0].shape[0]
    return OnnxModel(
        session=session,
        class_names=names,
        image_size=size or (spec.default_input_size, spec.default_input_size),
        in_chans=spec.in_chans,
        batch_size=batch if isinstance(batch, int) else None,
        metadata=metadata,
        pretrained_cfg=cfg,
    )


def load_pretrained_model(name: str) -> LoadedModel:
    """Weights by name, ready for predict, eval, export and explain: `model.tag` as `resnetkit
    models --pretrained` lists them (`resnet50.imagenet_v2`, `resnet20.fashion_mnist`), the
    older spelling `resnet20_fashion_mnist`, or a model name alone for its default weights.
    Catalogue weights are downloaded once into the verified cache (offline: PretrainedError
    naming the URL and where to put the file); bundled weights come from the package."""
    model_name, tag = split_weights_name(name)
    tag = tag or default_tag(model_name)
    shipped = bundled_weights(model_name, tag)
    if shipped is not None:  # a full checkpoint: its dataset and test-time augmentation too
        return load_model_checkpoint(shipped.path)
    model = create_model(model_name, pretrained=tag)
    return LoadedModel.from_model(model, {"pretrained": f"{model_name}.{tag}"})


def load_predictor(
    path: str | Path | LoadedModel, backend: str | None = None
) -> LoadedModel | OnnxModel:
    """A model for `predict_images`: an `.onnx` file runs in ONNX Runtime, a run folder,
    `.safetensors` checkpoint or loaded model in PyTorch; `backend` None picks by the type."""
    if isinstance(path, LoadedModel):
        if backend not in (None, "torch"):
            raise CheckpointError(
                f"named weights run in PyTorch; for {backend}, export them first (resnetkit "
                f"export --pretrained NAME --format onnx -o model.onnx)"
            )
        return path
    is_onnx = Path(path).suffix.lower() == ".onnx"
    backend = backend or ("onnxruntime" if is_onnx else "torch")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if backend == "onnxruntime" and not is_onnx:
        raise CheckpointError(
            f"the onnxruntime backend runs an exported .onnx file, not {path}; make one with "
            f"`resnetkit export {path} --format onnx -o model.onnx`"
        )
    if backend == "torch" and is_onnx:
        raise CheckpointError(
            f"{path} is an ONNX file: use --backend onnxruntime, or pass the checkpoint it was "
            f"exported from"
        )
    return load_onnx_model(path) if is_onnx else load_model_checkpoint(path)


@torch.no_grad()
def predict_images(
    loaded: LoadedModel | OnnxModel,
    paths: Sequence[str | Path],
    top_k: int = 5,
    batch_size: int = 64,
) -> list[Prediction]:
    """Preprocess each image with the weights' evaluation transform, then rank the classes."""
    for name, value in (("top_k", top_k), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PredictError(f"invalid {name} {value!r}: expected an integer >= 1")
    forward: Callable[[torch.Tensor], torch.Tensor]
    if isinstance(loaded, OnnxModel):
        forward, device = loaded.logits, torch.device("cpu")
    else:
        forward = loaded.model.eval()
        device = next(forward.parameters()).device
    transform = create_transform(loaded.pretrained_cfg)
    k = min(top_k, len(loaded.class_names))
    results = []
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start : start + batch_size])
        images = torch.stack([transform.read(p) for p in chunk]).to(device)
        probs = forward(images).float().softmax(dim=1)
        values, indices = probs.topk(k, dim=1)
        for path, vals, idx in zip(chunk, values.tolist(), indices.tolist(), strict=True):
            top = tuple((loaded.class_names[i], v) for i, v in zip(idx, vals, strict=True))
            results.append(Prediction(str(path), top, tuple(idx)))
    return results


def format_predictions(predictions: Sequence[Prediction], output_format: str) -> str:
    """The predictions as JSON (a list with one object per image) or CSV (one row per image:
    path, then label, probability and class index for each rank, best first)."""
    if output_format == "json":
        return json.dumps([p.as_dict() for p in predictions], indent=1) + "\n"
    if output_format == "csv":
        return _predictions_csv(predictions)
    raise ValueError(
        f"unknown output format {output_format!r}; allowed: {', '.join(OUTPUT_FORMATS)}"
    )


def _predictions_csv(predictions: Sequence[Prediction]) -> str:
    ranks = max((len(p.top) for p in predictions), default=0)
    header = ["path"]
    for rank in range(1, ranks + 1):
        header += [f"label_{rank}", f"probability_{rank}", f"index_{rank}"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for prediction in predictions:
        row: list[object] = [prediction.path]
        for (label, probability), index in zip(prediction.top, prediction.indices, strict=True):
            row += [label, probability, index]
        writer.writerow(row)
    return buffer.getvalue()
