"""Evaluation with test-time augmentation: which views are averaged, and with what weights."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import resnetkit as rk
from resnetkit.cli import main
from resnetkit.evaluate import evaluate, evaluate_checkpoint, tta_views
from resnetkit.pretrained_cfg import make_cfg
from resnetkit.train import train
from resnetkit.weights import save_weights
from train_helpers import TINY_SPEC, tiny_config


@pytest.mark.parametrize(
    ("flip", "translate", "count"), [(False, 0, 1), (True, 0, 2), (False, 2, 3), (True, 1, 6)]
)
def test_tta_views_count_and_weights_sum_to_one(flip, translate, count):
    views = tta_views(torch.randn(2, 3, 8, 8), flip, translate)
    assert len(views) == count
    assert sum(w for _, w in views) == pytest.approx(1.0)
    assert all(v.shape == (2, 3, 8, 8) for v, _ in views)


def test_translated_views_are_the_image_shifted_by_t_pixels_each_way():
    images = torch.arange(64.0).reshape(1, 1, 8, 8)
    (_, w0), (down_right, w1), (up_left, w2) = tta_views(images, flip=False, translate=2)
    assert (w0, w1, w2) == (0.5, 0.25, 0.25)
    torch.testing.assert_close(down_right[..., 2:, 2:], images[..., :-2, :-2])
    torch.testing.assert_close(up_left[..., :-2, :-2], images[..., 2:, 2:])


def test_flipped_views_mirror_each_translated_view():
    images = torch.randn(1, 1, 6, 6)
    views = tta_views(images, flip=True, translate=1)
    for (view, w), (mirror, w_mirror) in zip(views[::2], views[1::2], strict=True):
        torch.testing.assert_close(mirror, view.flip(3))
        assert w == w_mirror


class MeanColour(nn.Module):
    """Classifies by the mean of each channel: blind to flips, almost blind to shifts."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


def test_a_flip_invariant_model_scores_the_same_with_and_without_flip_tta():
    torch.manual_seed(0)
    model = MeanColour()
    batches = [(torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))) for _ in range(3)]
    plain = evaluate(model, batches, num_classes=4)
    flipped = evaluate(model, batches, num_classes=4, tta_flip=True)
    assert plain.top1 == flipped.top1
    assert plain.loss == pytest.approx(flipped.loss, rel=1e-5)
    assert torch.equal(plain.confusion, flipped.confusion)


def test_translate_tta_averages_probabilities_not_logits():
    class ShiftSensitive(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(1))

        def forward(self, x):  # class 0 if the top-left pixel is large, else class 1
            corner = x[:, 0, 0, 0]
            return torch.stack([corner * 10, -corner * 10], dim=1)

    images = torch.zeros(1, 1, 4, 4)
    images[0, 0, 0, 0] = 1.0  # the shifted views move it out of the corner
    result = evaluate(ShiftSensitive(), [(images, torch.tensor([0]))], 2, tta_translate=1)
    views = tta_views(images, False, 1)
    model = ShiftSensitive()
    expected = sum(model(v).softmax(1) * w for v, w in views)
    assert result.loss == pytest.approx(-expected[0, 0].log().item(), rel=1e-5)


def test_eval_of_a_run_repeats_the_tta_the_run_was_evaluated_with(tmp_path):
    run = train(tiny_config(tmp_path, epochs=1, tta_flip=True, tta_translate=1, subset=None))
    report = evaluate_checkpoint(run.run_dir / "checkpoints/best.safetensors")
    assert (report.tta_flip, report.tta_translate) == (True, 1)
    assert report.result.top1 == run.history[-1]["test_acc"]
    plain = evaluate_checkpoint(run.run_dir / "checkpoints/best.safetensors", tta_translate=0)
    assert plain.tta_translate == 0


def write_gradient_folder(root, split, shift):
    """root/split/<a|b>/0.png: 64x48 grey ramps (not flat, so the crop matters)."""
    pictures = {}
    x, y = np.meshgrid(np.arange(64), np.arange(48))
    for label, name in enumerate("ab"):
        pixels = np.stack([(5 * x + 9 * y + shift * label) % 256] * 3, axis=2).astype(np.uint8)
        (root / split / name).mkdir(parents=True)
        Image.fromarray(pixels).save(root / split / name / "0.png")
        pictures[label] = Image.fromarray(pixels)
    return pictures


def test_eval_on_an_image_folder_resizes_and_crops_as_the_checkpoints_cfg_says(tmp_path):
    torch.manual_seed(0)
    model = rk.ResNet(TINY_SPEC.replace(num_classes=2)).eval()
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    cfg = make_cfg(input_size=(3, 16, 16), mean=mean, std=std, num_classes=2, crop_pct=0.5)
    meta = {"class_names": ["a", "b"], "mean": mean, "std": std, "image_size": [16, 16]}
    save_weights(model, tmp_path / "m.safetensors", meta | {"pretrained_cfg": cfg})
    write_gradient_folder(tmp_path / "photos", "train", 70)
    pictures = write_gradient_folder(tmp_path / "photos", "test", 70)
    report = evaluate_checkpoint(
        tmp_path / "m.safetensors", data=f"folder:{tmp_path / 'photos'}", num_workers=0
    )
    # 16 / 0.5 = 32: 64x48 -> 42x32, then the centre 16x16 from (13, 8).
    bilinear = Image.Resampling.BILINEAR
    crops = [pictures[k].resize((42, 32), bilinear).crop((13, 8, 29, 24)) for k in (0, 1)]
    batch = torch.from_numpy(np.stack([np.asarray(c, np.float32) for c in crops]))
    with torch.no_grad():
        logits = model((batch.permute(0, 3, 1, 2) / 255 - 0.5) / 0.25)
    expected = nn.functional.cross_entropy(logits, torch.tensor([0, 1])).item()
    assert report.result.count == 2
    assert report.result.loss == pytest.approx(expected, rel=1e-5)


def test_eval_normalises_with_the_checkpoints_cfg_even_where_older_keys_disagree(tmp_path):
    torch.manual_seed(0)
    model = rk.ResNet(TINY_SPEC.replace(num_classes=2)).eval()
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    cfg = make_cfg(input_size=(3, 16, 16), mean=mean, std=std, num_classes=2, crop_pct=0.5)
    # The flat mean/std keys are kept for older readers; the cfg is what the weights expect.
    stale = {"mean": (0.9,) * 3, "std": (0.1,) * 3, "image_size": [16, 16]}
    save_weights(model, tmp_path / "m.safetensors", stale | {"pretrained_cfg": cfg})
    write_gradient_folder(tmp_path / "photos", "train", 70)
    pictures = write_gradient_folder(tmp_path / "photos", "test", 70)
    report = evaluate_checkpoint(
        tmp_path / "m.safetensors", data=f"folder:{tmp_path / 'photos'}", num_workers=0
    )
    assert (report.mean, report.std) == (mean, std)
    bilinear = Image.Resampling.BILINEAR  # resized and cropped as in the test above
    crops = [pictures[k].resize((42, 32), bilinear).crop((13, 8, 29, 24)) for k in (0, 1)]
    batch = torch.from_numpy(np.stack([np.asarray(c, np.float32) for c in crops]))
    with torch.no_grad():
        logits = model((batch.permute(0, 3, 1, 2) / 255 - 0.5) / 0.25)
    expected = nn.functional.cross_entropy(logits, torch.tensor([0, 1])).item()
    assert report.result.loss == pytest.approx(expected, rel=1e-5)


def test_cli_eval_writes_the_confusion_matrix_as_a_png_and_keeps_an_existing_file(tmp_path, capsys):
    model = rk.ResNet(TINY_SPEC.replace(num_classes=2))
    meta = {"class_names": ["a", "b"], "image_size": [16, 16], "dataset": "unused"}
    save_weights(model, tmp_path / "m.safetensors", meta)
    write_gradient_folder(tmp_path / "photos", "train", 70)
    write_gradient_folder(tmp_path / "photos", "test", 70)
    png = tmp_path / "confusion.png"
    argv = ["eval", str(tmp_path / "m.safetensors"), "--data", f"folder:{tmp_path / 'photos'}"]
    argv += ["--num-workers", "0", "--confusion", str(png)]
    assert main(argv) == 0
    assert str(png) in capsys.readouterr().out
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 1000
    png.write_bytes(b"mine")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err and png.read_bytes() == b"mine"
    assert main([*argv, "--overwrite"]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")


def test_eval_on_val_uses_the_split_the_run_held_out(tmp_path):
    """The run's recorded share and seed draw the same validation images, so evaluating the
    last checkpoint on `val` gives exactly the accuracy the run logged for it."""
    result = train(tiny_config(tmp_path, epochs=1, val_fraction=0.25, seed=3, tensorboard=False))
    last = result.run_dir / "checkpoints" / "last.safetensors"
    report = evaluate_checkpoint(last, split="val", num_workers=0)
    assert report.result.count > 0
    assert report.result.top1 == pytest.approx(result.history[-1]["val_acc"], abs=1e-9)
