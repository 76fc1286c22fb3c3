"""The ResNet-20 trained on CIFAR-10 (JPEG q75) that ships inside the package, usable offline."""

import json
import tarfile
from pathlib import Path

import pytest

import resnetkit as rk
from data_fixtures import CIFAR10_NAMES
from resnetkit.cli import main
from resnetkit.evaluate import evaluate_checkpoint
from resnetkit.pretrained import find_bundled

SHIPPED = find_bundled("resnet20.cifar10")
REAL_ARCHIVE = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-jpeg.tar.gz"
)
needs_archive = pytest.mark.skipif(
    not REAL_ARCHIVE.is_file(), reason="needs ../shared/data/cifar10-jpeg.tar.gz"
)


def test_bundled_file_says_what_it_was_trained_and_measured_on():
    meta = SHIPPED.metadata()
    assert SHIPPED.path.stat().st_size < 2_000_000
    assert json.loads(meta["class_names"]) == list(CIFAR10_NAMES)
    assert meta["dataset"] == "cifar10"  # a name, not the training machine's folder
    assert "JPEG q75" in meta["test_acc_measured_on"]
    assert 0.85 < float(meta["test_acc"]) < 1.0
    assert "onecycle" in meta["recipe"] and "resnet20" in meta["recipe"]


def test_both_names_give_the_same_network():
    model = rk.create_model("resnet20", pretrained="cifar10")
    assert model.spec.in_chans == 3 and model.num_classes == 10
    assert rk.create_model("resnet20.cifar10").state_dict().keys() == model.state_dict().keys()


@needs_archive
def test_bundled_weights_reach_their_recorded_accuracy_on_the_jpeg_test_set():
    report = evaluate_checkpoint(SHIPPED.path, data=f"folder:{REAL_ARCHIVE}", num_workers=0)
    assert report.result.count == 10_000
    # Recorded with bf16 autocast during training; fp32 may differ by a few images.
    assert report.result.top1 >= float(SHIPPED.metadata()["test_acc"]) - 0.003


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
@pytest.mark.parametrize("class_name", ["automobile", "ship"])
def test_predict_pretrained_names_cifar_classes_offline(tmp_path, capsys, class_name):
    paths = extract_test_images(tmp_path, class_name, 20)
    assert main(["predict", "--pretrained", "resnet20_cifar10", *paths, "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    top = [line.split("%", 1)[1].strip() for line in lines if "%" in line]
    assert len(top) == 20
    assert sum(t == class_name for t in top) >= 16
