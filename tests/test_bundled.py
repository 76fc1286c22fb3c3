"""The ResNet-20 trained on Fashion-MNIST that ships inside the package, usable offline."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import resnetkit as rk
from resnetkit.cli import main
from resnetkit.data import DataError, load_dataset
from resnetkit.evaluate import evaluate_checkpoint
from resnetkit.pretrained import find_bundled

SHIPPED = find_bundled("resnet20_fashion_mnist")


def fashion_mnist_test():
    try:
        return load_dataset("fashion-mnist", "test")
    except DataError:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")


def test_bundled_file_carries_recipe_accuracy_and_class_names():
    meta = SHIPPED.metadata()
    assert SHIPPED.path.stat().st_size < 2_000_000
    assert json.loads(meta["class_names"])[7] == "Sneaker"
    assert float(meta["test_acc"]) >= 0.94
    assert "onecycle" in meta["recipe"]


def test_create_model_with_bundled_weights_takes_their_channels_and_classes():
    model = rk.create_model("resnet20", pretrained="fashion_mnist")
    assert model.spec.in_chans == 1 and model.num_classes == 10
    loaded = rk.load_weights(rk.create_model("resnet20", in_chans=1, num_classes=10), SHIPPED.path)
    for key, value in loaded.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_bundled_weights_reach_their_recorded_accuracy_on_the_real_test_set():
    fashion_mnist_test()  # skips when the dataset is absent
    report = evaluate_checkpoint(SHIPPED.path, tta_flip=True, num_workers=0)
    assert report.dataset == "fashion-mnist" and report.result.count == 10_000
    # The recorded figure was measured with bf16 autocast; fp32 may differ by a few images.
    assert report.result.top1 >= float(SHIPPED.metadata()["test_acc"]) - 0.003
    assert report.result.top1 >= 0.94


def write_pngs(folder: Path, label: int, count: int) -> list[str]:
    test = fashion_mnist_test()
    index = torch.nonzero(test.labels == label).flatten()[:count]
    paths = []
    for i in index.tolist():
        path = folder / f"{label}_{i}.png"
        Image.fromarray(np.asarray(test.images[i, 0])).save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize(("label", "name"), [(7, "Sneaker"), (9, "Ankle boot")])
def test_predict_pretrained_names_the_shoe(tmp_path, capsys, label, name):
    paths = write_pngs(tmp_path, label, 20)
    assert main(["predict", "--pretrained", "resnet20_fashion_mnist", *paths, "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    top = [line.split("%", 1)[1].strip() for line in lines if "%" in line]
    assert len(top) == 20
    assert sum(t == name for t in top) >= 17


def test_exported_bundled_model_gives_the_same_answer_in_onnxruntime(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    paths = write_pngs(tmp_path, 9, 5)
    onnx_path = tmp_path / "r20.onnx"
    assert (
        main(
            [
                "export",
                "--pretrained",
                "resnet20_fashion_mnist",
                "--format",
                "onnx",
                "--dynamic-batch",
                "-o",
                str(onnx_path),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["predict", "--pretrained", "resnet20_fashion_mnist", *paths]) == 0
    torch_out = capsys.readouterr().out
    assert main(["predict", str(onnx_path), *paths]) == 0
    onnx_out = capsys.readouterr().out
    names = [line.split("%", 1)[1] for line in torch_out.splitlines() if "%" in line]
    onnx_names = [line.split("%", 1)[1] for line in onnx_out.splitlines() if "%" in line]
    assert names == onnx_names
