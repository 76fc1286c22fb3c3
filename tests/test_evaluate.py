"""Evaluation with test-time augmentation: which views are averaged, and with what weights."""

import pytest
import torch
from torch import nn

from resnetkit.evaluate import evaluate, evaluate_checkpoint, tta_views
from resnetkit.train import train
from train_helpers import tiny_config


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
