"""Export: BatchNorm folding, ONNX and TorchScript round trips with metadata, the parity check,
the ONNX Runtime prediction backend and `resnetkit export`."""

import copy
import json

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from torch import nn

import resnetkit as rk
from resnetkit import export
from resnetkit.cli import main
from resnetkit.export import (
    ExportError,
    check_parity,
    export_checkpoint,
    export_onnx,
    export_torchscript,
    fold_bn,
    read_export_metadata,
)
from resnetkit.predict import OnnxModel, load_predictor, predict_images

BASIC_V1 = rk.ResNetSpec(
    stages=[(1, 8, 1), (1, 16, 2)], stem="cifar", stem_width=8, shortcut="A", num_classes=5
)
BOTTLENECK_V1 = rk.ResNetSpec(
    stages=[(1, 8, 1), (1, 16, 2)],
    block="bottleneck",
    stem="imagenet",
    stem_width=16,
    groups=2,
    width_per_group=32,
    num_classes=5,
)
BASIC_V2 = rk.ResNetSpec(
    stages=[(2, 8, 1), (2, 16, 2), (2, 32, 2)],
    stem="cifar",
    stem_width=8,
    preact=True,
    shortcut="B",
    num_classes=5,
)  # preact_resnet110's layout with 2 units per stage
BOTTLENECK_V2 = rk.ResNetSpec(
    stages=[(1, 8, 1), (1, 16, 2)],
    block="bottleneck",
    stem="imagenet",
    stem_width=16,
    preact=True,
    num_classes=5,
)
DEEP_STEM_V1 = rk.ResNetSpec(
    stages=[(1, 8, 1), (1, 16, 2)], stem="deep", stem_width=16, shortcut="C", num_classes=5
)
DEEP_STEM_V2 = DEEP_STEM_V1.replace(preact=True, shortcut="B")

CLASS_NAMES = ["ant", "bee", "cat", "dog", "eel"]
MEAN, STD = [0.3, 0.4, 0.5], [0.2, 0.25, 0.3]


def build(spec: rk.ResNetSpec, seed: int = 0) -> rk.ResNet:
    torch.manual_seed(seed)
    return randomize_bn(rk.ResNet(spec), seed)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random running statistics and affine parameters: a fresh BN is nearly the identity, which
    would let a wrong fold pass."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.5)
    return model.eval()


def count_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a.eval()(x) - b.eval()(x)).abs().max())


# -- BatchNorm folding ------------------------------------------------------------------------


# (model, input side, BatchNorm2d left after folding): none in v1; in v2 the pre-activation bn1
# of each unit that has one (it sits after a ReLU-free addition, before a ReLU) and final_bn.
FOLD_CASES = {
    "resnet20 (shortcut A)": (lambda: rk.create_model("resnet20"), 32, 0),
    "resnet18 (shortcut B)": (lambda: rk.create_model("resnet18", num_classes=10), 64, 0),
    "grouped bottleneck v1": (lambda: rk.ResNet(BOTTLENECK_V1), 32, 0),
    "deep stem, shortcut C": (lambda: rk.ResNet(DEEP_STEM_V1), 32, 0),
    "preact basic, cifar stem": (lambda: rk.ResNet(BASIC_V2), 32, 6 + 1),
    # The first unit after an ImageNet stem does not pre-activate; the second projects.
    "preact bottleneck": (lambda: rk.ResNet(BOTTLENECK_V2), 32, 1 + 1),
    "preact deep stem": (lambda: rk.ResNet(DEEP_STEM_V2), 32, 1 + 1),
}


@pytest.mark.parametrize("case", list(FOLD_CASES))
def test_folded_model_equals_the_original_with_random_bn_statistics(case):
    make, side, bn_left = FOLD_CASES[case]
    torch.manual_seed(0)
    model = randomize_bn(make())
    folded = fold_bn(model)
    x = torch.randn(2, 3, side, side)
    assert max_diff(model, folded, x) <= 1e-5
    assert count_bn(folded) == bn_left
    # ... and the original is untouched.
    assert count_bn(model) > bn_left
    assert max_diff(model, fold_bn(model), x) <= 1e-5


def test_random_statistics_make_bn_matter():
    """Otherwise the folding test is weak: a fresh BN in eval mode is nearly the identity."""
    model = build(BASIC_V1)
    fresh = copy.deepcopy(model)
    for module in fresh.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()  # running statistics and affine parameters
    assert max_diff(model, fresh, torch.randn(2, 3, 16, 16)) > 0.1


def test_folded_convs_get_a_bias_and_the_bns_become_identities():
    folded = fold_bn(build(BASIC_V2))
    block = folded.layer1[1]
    assert isinstance(block.bn2, nn.Identity) and block.conv1.bias is not None
    assert isinstance(block.bn1, nn.BatchNorm2d)  # before a ReLU and conv1: cannot fold
    assert block.conv2.bias is None  # feeds the addition, no BN to fold
    assert not folded.training


def test_fold_pairs_follow_the_forward_order_of_each_block():
    v2 = rk.ResNet(BOTTLENECK_V2)
    assert export.fold_pairs(v2.layer1[0]) == (("conv1", "bn2"), ("conv2", "bn3"))
    assert export.fold_pairs(rk.ResNet(DEEP_STEM_V1))[-1] == ("conv1.6", "bn1")


def test_fold_bn_asks_each_module_so_a_new_block_type_folds_without_touching_export():
    class ConvBN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.norm = nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)

        def forward(self, x):
            return self.norm(self.conv(x)).relu()

        def fold_pairs(self):
            return (("conv", "norm"),)

    model = randomize_bn(nn.Sequential(ConvBN(), nn.Conv2d(4, 2, 1)))
    folded = fold_bn(model)
    assert isinstance(folded[0].norm, nn.Identity) and count_bn(folded) == 0
    assert max_diff(model, folded, torch.randn(2, 3, 8, 8)) <= 1e-5


def test_the_stem_declares_its_own_pairs():
    assert rk.ResNet(BASIC_V1).fold_pairs() == (("conv1", "bn1"),)
    assert rk.ResNet(BASIC_V2).fold_pairs() == ()  # v2 bare-conv CIFAR stem: nothing to fold
    assert rk.ResNet(DEEP_STEM_V1).fold_pairs() == (
        ("conv1.0", "conv1.1"),
        ("conv1.3", "conv1.4"),
        ("conv1.6", "bn1"),
    )


# -- export and parity ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize(
    "spec", [BASIC_V1, BOTTLENECK_V1, BASIC_V2, BOTTLENECK_V2], ids=["v1", "v1b", "v2", "v2b"]
)
def test_round_trip_matches_pytorch(tmp_path, spec, fmt):
    model = build(spec)
    path = tmp_path / f"model.{fmt}"
    writer = export_onnx if fmt == "onnx" else export_torchscript
    writer(model, path, (2, 3, 32, 32), metadata={"class_names": CLASS_NAMES})
    assert check_parity(model, path, fmt, torch.randn(2, 3, 32, 32)) <= 1e-5
    assert model.training is False


def test_export_restores_training_mode(tmp_path):
    model = build(BASIC_V1).train()
    export_torchscript(model, tmp_path / "m.pt", (1, 3, 16, 16))
    assert model.training


def test_dynamic_batch_onnx_runs_other_batch_sizes_and_a_fixed_one_does_not(tmp_path):
    model = build(BASIC_V1)
    export_onnx(model, tmp_path / "dynamic.onnx", (2, 3, 16, 16), dynamic_batch=True)
    assert check_parity(model, tmp_path / "dynamic.onnx", "onnx", torch.randn(5, 3, 16, 16)) < 1e-5
    export_onnx(model, tmp_path / "fixed.onnx", (2, 3, 16, 16))
    with pytest.raises(ExportError, match="ONNX Runtime cannot run"):
        check_parity(model, tmp_path / "fixed.onnx", "onnx", torch.randn(5, 3, 16, 16))


def test_traced_torchscript_runs_other_batch_sizes(tmp_path):
    model = build(BOTTLENECK_V2)
    export_torchscript(model, tmp_path / "m.pt", (2, 3, 32, 32))
    assert check_parity(model, tmp_path / "m.pt", "torchscript", torch.randn(5, 3, 32, 32)) < 1e-5


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_metadata_travels_inside_the_file(tmp_path, fmt):
    model = build(BASIC_V1)
    path = tmp_path / f"m.{fmt}"
    meta = {"class_names": CLASS_NAMES, "mean": MEAN, "image_size": [16, 16], "spec": "{}"}
    writer = export_onnx if fmt == "onnx" else export_torchscript
    writer(model, path, (1, 3, 16, 16), metadata=meta)
    read = read_export_metadata(path)
    assert json.loads(read["class_names"]) == CLASS_NAMES
    assert json.loads(read["mean"]) == MEAN and json.loads(read["image_size"]) == [16, 16]
    assert read["spec"] == "{}"  # strings are stored as they are
    if fmt == "onnx":
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert props == read


# -- from a checkpoint ------------------------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path):
    model = build(BASIC_V1)
    meta = {"class_names": CLASS_NAMES, "mean": MEAN, "std": STD, "image_size": [16, 16]}
    return rk.save_weights(model, tmp_path / "best.safetensors", meta)


@pytest.fixture
def image(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_checkpoint_folds_checks_and_records_everything(checkpoint, tmp_path, fmt):
    out = tmp_path / f"model.{fmt}"
    report = export_checkpoint(checkpoint, fmt, out, fold_bn=True, dynamic_batch=True)
    assert report.path == out and out.is_file() and report.folded
    assert report.max_abs_diff <= 1e-5 and report.input_shape == (4, 3, 16, 16)
    meta = read_export_metadata(out)
    assert json.loads(meta["class_names"]) == CLASS_NAMES
    assert json.loads(meta["mean"]) == MEAN and json.loads(meta["std"]) == STD
    assert json.loads(meta["image_size"]) == [16, 16] and meta["bn_folded"] == "true"
    assert rk.ResNetSpec.from_json(meta["spec"]) == BASIC_V1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["best.safetensors", out.name]
    )  # no temporary file left behind


def test_export_beyond_tolerance_raises_and_writes_nothing(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "check_parity", lambda *args: 0.5)
    out = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match=r"differs from PyTorch by 0\.5.*tolerance 0\.0001"):
        export_checkpoint(checkpoint, "onnx", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors"]


def test_onnx_backend_predicts_like_the_torch_backend(checkpoint, tmp_path, image):
    out = export_checkpoint(checkpoint, "onnx", tmp_path / "m.onnx").path  # fixed batch of 4
    onnx_model = load_predictor(out)
    assert isinstance(onnx_model, OnnxModel) and onnx_model.batch_size == 4
    assert onnx_model.class_names == tuple(CLASS_NAMES) and onnx_model.image_size == (16, 16)
    images = [image] * 5  # more than the fixed batch: chunked and padded
    by_onnx = predict_images(onnx_model, images, top_k=3)
    by_torch = predict_images(load_predictor(checkpoint), images, top_k=3)
    for a, b in zip(by_onnx, by_torch, strict=True):
        assert [name for name, _ in a.top] == [name for name, _ in b.top]
        assert np.allclose([p for _, p in a.top], [p for _, p in b.top], atol=1e-6)


# -- command line -----------------------------------------------------------------------------


def test_cli_export_then_predict_with_both_backends(checkpoint, tmp_path, image, capsys):
    out = tmp_path / "m.onnx"
    args = ["export", str(checkpoint), "--format", "onnx", "--fold-bn", "-o", str(out)]
    assert main([*args, "--dynamic-batch"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(out) and "max abs logit diff vs PyTorch" in lines[1]
    assert float(lines[1].split(":")[1].split()[0]) <= 1e-4

    tops = {}
    for source, backend in [(out, []), (checkpoint, []), (out, ["--backend", "onnxruntime"])]:
        assert main(["predict", str(source), str(image), "--top-k", "1", *backend]) == 0
        printed = capsys.readouterr().out.splitlines()
        assert printed[0] == str(image)
        tops[(source.name, *backend)] = printed[1].split()[-1]
    assert len(set(tops.values())) == 1 and tops[("m.onnx",)] in CLASS_NAMES


def test_cli_export_failure_is_one_line_and_exit_2(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export, "check_parity", lambda *args: float("nan"))
    out = tmp_path / "m.pt"
    assert main(["export", str(checkpoint), "--format", "torchscript", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tolerance" in err and not out.exists()


def test_cli_predict_refuses_an_onnx_file_with_the_torch_backend(tmp_path, image, capsys):
    export_onnx(build(BASIC_V1), tmp_path / "m.onnx", (1, 3, 16, 16))
    assert main(["predict", str(tmp_path / "m.onnx"), str(image), "--backend", "torch"]) == 2
    assert "onnxruntime" in capsys.readouterr().err
    # An .onnx file without resnetkit's metadata cannot be preprocessed correctly.
    assert main(["predict", str(tmp_path / "m.onnx"), str(image)]) == 2
    assert "no resnetkit metadata" in capsys.readouterr().err


def test_export_never_replaces_an_existing_file_without_overwrite(checkpoint, tmp_path, capsys):
    out = tmp_path / "model.pt"
    out.write_text("someone's file")
    args = ["export", str(checkpoint), "--format", "torchscript", "-o", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err
    assert out.read_text() == "someone's file"
    assert main([*args, "--overwrite"]) == 0 and out.stat().st_size > 100


def test_export_never_writes_over_the_checkpoint_it_reads(checkpoint, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    best = run / "checkpoints" / "best.safetensors"
    best.write_bytes(checkpoint.read_bytes())
    before = best.read_bytes()
    (tmp_path / "link.safetensors").symlink_to(best)
    for source, out in [(run, best), (best, best), (run, tmp_path / "link.safetensors")]:
        args = ["export", str(source), "--format", "onnx", "-o", str(out), "--overwrite"]
        assert main(args) == 2
        assert "is the checkpoint being exported" in capsys.readouterr().err
    assert best.read_bytes() == before
