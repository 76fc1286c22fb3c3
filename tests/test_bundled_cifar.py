"""The networks trained on CIFAR-10 (JPEG q75) that ship inside the package, usable offline:
the fast recipe's ResNet-9 (half width) and the first ResNet-20."""

import json
import tarfile
from pathlib import Path

import pytest

import resnetkit as rk
from data_fixtures import CIFAR10_NAMES
from resnetkit.cli import main
from resnetkit.evaluate import evaluate_checkpoint
from resnetkit.pretrained import find_bundled

# name -> (its config, the smallest test accuracy it may record)
SHIPPED = {
    "resnet9_half.cifar10": ("cifar10_resnet9_fast", 0.91),
    "resnet20.cifar10": ("cifar10_resnet20_fast", 0.85),
}
REAL_ARCHIVE = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-jpeg.tar.gz"
)
needs_archive = pytest.mark.skipif(
    not REAL_ARCHIVE.is_file(), reason="needs ../shared/data/cifar10-jpeg.tar.gz"
)


@pytest.mark.parametrize("name", SHIPPED)
def test_bundled_file_says_what_it_was_trained_and_measured_on(name):
    weights = find_bundled(name)
    config, least_accuracy = SHIPPED[name]
    meta = weights.metadata()
    assert weights.path.stat().st_size < 8_000_000
    assert json.loads(meta["class_names"]) == list(CIFAR10_NAMES)
    assert meta["dataset"] == "cifar10"  # a name, not the training machine's folder
    assert "JPEG q75" in meta["test_acc_measured_on"]
    assert least_accuracy <= float(meta["test_acc"]) < 1.0
    assert f"model: {weights.model}\n" in meta["recipe"]
    # The recipe recorded is the shipped config's, whatever the command line overrode.
    recipe_lines = set(meta["recipe"].splitlines())
    config_text = (Path(__file__).resolve().parents[1] / "configs" / f"{config}.yaml").read_text()
    for key in ("schedule", "batch_size", "lr", "label_smoothing"):
        line = next(li for li in config_text.splitlines() if li.startswith(f"{key}:"))
        assert line.split("#")[0].strip() in recipe_lines


@pytest.mark.parametrize("name", SHIPPED)
def test_both_names_give_the_same_network(name):
    model_name, tag = name.split(".")
    model = rk.create_model(model_name, pretrained=tag)
    assert model.spec.in_chans == 3 and model.num_classes == 10
    underscored = rk.create_model(f"{model_name}_{tag}")
    assert underscored.state_dict().keys() == model.state_dict().keys()


@needs_archive
@pytest.mark.parametrize("name", SHIPPED)
def test_bundled_weights_reach_their_recorded_accuracy_on_the_jpeg_test_set(name):
    weights = find_bundled(name)
    report = evaluate_checkpoint(weights.path, data=f"folder:{REAL_ARCHIVE}", num_workers=0)
    assert report.result.count == 10_000
    # Recorded during training (in bf16 autocast for resnet20); fp32 may differ by a few images.
    assert report.result.top1 >= float(weights.metadata()["test_acc"]) - 0.003


def extract_test_images(folder: Path, class_name: str, count: int) -> list[str]:
    """The first `count` test JPEGs of one class, copied out of the archive as they are."""
    paths = []
    with tarfile.open(REAL_ARCHIVE) as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isreg() and parts[:2] == ["test", class_name] and len(paths) < count:
                path = folder / f"{class_name}_{Path(member.name).name}"
                path.write_bytes(tar.extractfile(member).read())
                paths.append(str(path))
    return paths


@needs_archive
@pytest.mark.parametrize("name", ["resnet9_half_cifar10", "resnet20_cifar10"])
@pytest.mark.parametrize("class_name", ["automobile", "ship"])
def test_predict_pretrained_names_cifar_classes_offline(tmp_path, capsys, name, class_name):
    paths = extract_test_images(tmp_path, class_name, 20)
    assert main(["predict", "--pretrained", name, *paths, "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    top = [line.split("%", 1)[1].strip() for line in lines if "%" in line]
    assert len(top) == 20
    assert sum(t == class_name for t in top) >= 16
