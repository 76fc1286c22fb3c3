"""`predict`: images go through the evaluation transform of the checkpoint's weights; the
answers come as a listing, JSON or CSV, printed or written to a file."""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import resnetkit as rk
from resnetkit.cli import main
from resnetkit.predict import load_predictor, predict_images
from resnetkit.pretrained_cfg import make_cfg
from resnetkit.weights import save_weights
from train_helpers import TINY_SPEC

SPEC = TINY_SPEC.replace(num_classes=3)
CLASSES = ("cat", "dog", "fox")
MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def busy_image(width: int, height: int) -> Image.Image:
    x = np.arange(width)[None, :]
    y = np.arange(height)[:, None]
    channels = [(7 * x + 3 * y) % 256, (2 * x + 11 * y) % 256, (x * y) % 256]
    return Image.fromarray(np.stack(channels, axis=2).astype(np.uint8), "RGB")


def write_checkpoint(path: Path, crop_pct: float | None = None) -> torch.nn.Module:
    """A tiny 3-class network whose metadata gives 16x16 inputs; `crop_pct` None writes an
    old-style file without a pretrained_cfg."""
    torch.manual_seed(0)
    model = rk.ResNet(SPEC).eval()
    meta = {"class_names": list(CLASSES), "mean": list(MEAN), "std": list(STD)}
    meta["image_size"] = [16, 16]
    if crop_pct is not None:
        meta["pretrained_cfg"] = make_cfg(
            input_size=(3, 16, 16),
            mean=MEAN,
            std=STD,
            num_classes=3,
            crop_pct=crop_pct,
            label_names=CLASSES,
        )
    save_weights(model, path, meta)
    return model


def probabilities(model: torch.nn.Module, image: Image.Image) -> list[float]:
    array = (np.asarray(image, dtype=np.float64) / 255 - MEAN) / STD
    batch = torch.from_numpy(array.transpose(2, 0, 1)).float()[None]
    with torch.no_grad():
        return model(batch).softmax(1)[0].tolist()


@pytest.mark.parametrize("crop_pct", [None, 1.0])
def test_a_wide_image_is_centre_cropped_not_squashed(tmp_path, crop_pct):
    write_checkpoint(tmp_path / "m.safetensors", crop_pct)
    wide = busy_image(48, 16)
    wide.save(tmp_path / "wide.png")
    wide.crop((16, 0, 32, 16)).save(tmp_path / "centre.png")
    wide.resize((16, 16), Image.Resampling.BILINEAR).save(tmp_path / "squashed.png")
    loaded = load_predictor(tmp_path / "m.safetensors")
    paths = [tmp_path / name for name in ("wide.png", "centre.png", "squashed.png")]
    on_wide, on_centre, on_squashed = predict_images(loaded, paths, top_k=3)
    assert on_wide.top == on_centre.top
    assert on_wide.top != on_squashed.top


def test_predict_resizes_and_crops_as_the_checkpoints_cfg_says(tmp_path):
    model = write_checkpoint(tmp_path / "m.safetensors", crop_pct=0.5)
    image = busy_image(64, 48)
    image.save(tmp_path / "x.png")
    (prediction,) = predict_images(load_predictor(tmp_path / "m.safetensors"), [tmp_path / "x.png"])
    # 16 / 0.5 = 32: 64x48 -> 42x32, then the centre 16x16 from (13, 8).
    by_hand = image.resize((42, 32), Image.Resampling.BILINEAR).crop((13, 8, 29, 24))
    expected = probabilities(model, by_hand)
    assert prediction.indices[0] == int(np.argmax(expected))
    got = dict(prediction.top)
    for index, name in enumerate(CLASSES):
        assert got[name] == pytest.approx(expected[index], abs=1e-5)


@pytest.fixture
def two_images(tmp_path):
    write_checkpoint(tmp_path / "m.safetensors", crop_pct=1.0)
    paths = []
    for name, size in (("a.png", (16, 16)), ("b.png", (30, 20))):
        busy_image(*size).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    return str(tmp_path / "m.safetensors"), paths


def test_predict_json_gives_path_labels_probabilities_and_indices_per_image(two_images, capsys):
    checkpoint, paths = two_images
    assert main(["predict", checkpoint, *paths, "--top-k", "2", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in records] == paths
    for record in records:
        assert set(record) == {"path", "labels", "probabilities", "indices"}
        assert len(record["labels"]) == len(record["probabilities"]) == 2
        assert [CLASSES[i] for i in record["indices"]] == record["labels"]
        assert record["probabilities"] == sorted(record["probabilities"], reverse=True)


def test_predict_csv_has_a_header_and_one_row_per_image(two_images, capsys):
    checkpoint, paths = two_images
    assert main(["predict", checkpoint, *paths, "--top-k", "2", "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    header = "path,label_1,probability_1,index_1,label_2,probability_2,index_2"
    assert rows[0] == header.split(",")
    assert [row[0] for row in rows[1:]] == paths
    assert all(CLASSES[int(row[3])] == row[1] and 0 < float(row[2]) <= 1 for row in rows[1:])


def test_predict_writes_to_a_file_and_never_replaces_one_without_overwrite(
    two_images, tmp_path, capsys
):
    checkpoint, paths = two_images
    out = tmp_path / "predictions.csv"  # the suffix chooses the format
    assert main(["predict", checkpoint, *paths, "-o", str(out)]) == 0
    assert out.read_text().startswith("path,label_1,probability_1,index_1")
    out.write_text("mine")
    capsys.readouterr()
    assert main(["predict", checkpoint, *paths, "--json", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err and out.read_text() == "mine"
    assert main(["predict", checkpoint, *paths, "--json", "-o", str(out), "--overwrite"]) == 0
    assert len(json.loads(out.read_text())) == 2


def test_an_output_file_without_a_format_is_one_line_exit_2(two_images, tmp_path, capsys):
    checkpoint, paths = two_images
    assert main(["predict", checkpoint, *paths, "-o", str(tmp_path / "out.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--json or --csv" in err
    assert not (tmp_path / "out.txt").exists()
