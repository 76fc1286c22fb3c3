"""Checkpoints are checked before use: weights must be finite and the metadata must agree with
the tensors, or eval, predict and export refuse them in one line."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import resnetkit as rk
from resnetkit.checkpoint import CheckpointError, load_model_checkpoint
from resnetkit.cli import main
from resnetkit.weights import read_metadata

SPEC = rk.ResNetSpec(stages=[(1, 8, 1), (1, 16, 2)], stem="cifar", stem_width=8, num_classes=3)
META = {"class_names": ["a", "b", "c"], "mean": [0.5] * 3, "std": [0.25] * 3}


def write_checkpoint(path, **meta_changes):
    meta = {**META, "image_size": [16, 16], "dataset": "synthetic"} | meta_changes
    return rk.save_weights(rk.create_model(SPEC), path, meta)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(path)
    return path


def poison(path, key="layer1.0.bn1.running_var"):
    tensors, meta = load_file(str(path)), read_metadata(path)
    tensors[key] = torch.full_like(tensors[key], float("inf"))
    save_file(tensors, str(path), metadata=meta)
    return path


def test_a_checkpoint_with_infinite_batchnorm_statistics_is_refused(tmp_path):
    path = poison(write_checkpoint(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match=r"NaN or inf in layer1\.0\.bn1\.running_var"):
        load_model_checkpoint(path)


@pytest.mark.parametrize("command", ["predict", "export", "eval"])
def test_eval_predict_and_export_refuse_non_finite_weights_in_one_line(
    tmp_path, capsys, image, command
):
    path = poison(write_checkpoint(tmp_path / "w.safetensors"))
    args = {
        "predict": ["predict", str(path), str(image)],
        "export": ["export", str(path), "--format", "torchscript", "-o", str(tmp_path / "m.pt")],
        "eval": ["eval", str(path), "--num-workers", "0"],
    }[command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NaN or inf" in err
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"class_names": ["a", "b"]}, "2 classes but the classifier has 3"),
        ({"mean": [0.5]}, "does not fit 3 input channels"),
        ({"std": [0.2, 0.2, 0.0]}, "must be positive"),
        ({"image_size": [100000, 100000]}, "image_size"),
        ({"image_size": "big"}, "image_size"),
        ({"class_names": "not json ["}, "class_names"),
    ],
)
def test_metadata_that_disagrees_with_the_tensors_is_refused(tmp_path, changes, message):
    path = write_checkpoint(tmp_path / "w.safetensors", **changes)
    with pytest.raises(CheckpointError, match=message):
        load_model_checkpoint(path)


def test_a_spec_that_disagrees_with_the_tensors_is_a_checkpoint_error(tmp_path, capsys, image):
    path = write_checkpoint(tmp_path / "w.safetensors")
    tensors, meta = load_file(str(path)), read_metadata(path)
    meta["spec"] = json.dumps(SPEC.replace(num_classes=5).to_dict())
    meta["class_names"] = json.dumps(list("abcde"))
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match=r"do not fit the model: shape mismatch for fc\.bias"):
        load_model_checkpoint(path)
    assert main(["predict", str(path), str(image)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_an_onnx_file_whose_metadata_disagrees_with_its_graph_is_refused(tmp_path, capsys, image):
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "m.onnx"
    assert main(["export", str(write_checkpoint(tmp_path / "w.safetensors")), "--format",
                 "onnx", "-o", str(out)]) == 0  # fmt: skip
    proto = onnx.load(str(out))
    for entry in proto.metadata_props:
        if entry.key == "class_names":
            entry.value = json.dumps(list("abcdefg"))
        if entry.key == "spec":
            entry.value = json.dumps(SPEC.replace(num_classes=7).to_dict())
    onnx.save(proto, str(out))
    capsys.readouterr()
    assert main(["predict", str(out), str(image)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "7 classes" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "{ckpt}", "--batch-size", "0"], "batch size 0"),
        (["eval", "{ckpt}", "--batch-size", "-3"], "batch size -3"),
        (["eval", "{ckpt}", "--num-workers", "-1"], "workers -1"),
        (["predict", "{ckpt}", "{image}", "--top-k", "0"], "top_k 0"),
        (["predict", "{ckpt}", "{image}", "--top-k", "-2"], "top_k -2"),
    ],
)
def test_zero_or_negative_sizes_in_eval_and_predict_are_one_line(
    tmp_path, capsys, image, args, message
):
    path = write_checkpoint(tmp_path / "w.safetensors")
    filled = [a.format(ckpt=path, image=image) for a in args]
    assert main(filled) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
