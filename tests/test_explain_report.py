"""report.html: a run (or any evaluation) on one self-contained page, with its mistakes."""

import re

import torch

import resnetkit as rk
from resnetkit.cli import main
from resnetkit.explain.run_report import find_mistakes
from resnetkit.train import train
from train_helpers import tiny_config


def test_a_finished_run_writes_a_self_contained_report_page(tmp_path):
    run = train(tiny_config(tmp_path, epochs=1))
    page = (run.run_dir / "report.html").read_text()
    for section in (
        "Curves",
        "Confusion matrix",
        "Per-class accuracy",
        "Most confident mistakes",
        "Configuration",
    ):
        assert f"<h2>{section}</h2>" in page
    assert page.count("data:image/png;base64,") >= 4  # curves, lr, confusion, mistakes
    assert not re.search(r"(src|href)=['\"]https?:", page) and "<script" not in page
    assert f"{run.history[-1]['test_acc']:.2%}" in page
    assert "<th>precision</th><td>fp32 (as configured)</td>" in page


def test_mistakes_are_wrong_and_sorted_by_confidence():
    torch.manual_seed(0)
    model = rk.create_model("resnet8", num_classes=4).eval()
    images, labels = torch.randn(32, 3, 32, 32), torch.randint(0, 4, (32,))
    mistakes = find_mistakes(
        model,
        [(images[:16], labels[:16]), (images[16:], labels[16:])],
        (0.5,) * 3,
        (0.25,) * 3,
        count=5,
    )
    predicted = model(images).argmax(1)
    wrong = int((predicted != labels).sum())
    assert len(mistakes) == min(5, wrong)
    assert all(m.predicted != m.true for m in mistakes)
    confidences = [m.confidence for m in mistakes]
    assert confidences == sorted(confidences, reverse=True)
    assert all(m.image.dtype == torch.uint8 and m.cam.shape == (32, 32) for m in mistakes)


def test_eval_writes_the_same_page_for_any_checkpoint(tmp_path, capsys):
    run = train(tiny_config(tmp_path, epochs=1))
    html_path = tmp_path / "eval.html"
    args = ["eval", str(run.run_dir), "--num-workers", "0", "--html", str(html_path)]
    assert main(args) == 0
    page = html_path.read_text()
    assert "<h2>Most confident mistakes</h2>" in page and "<h2>Confusion matrix</h2>" in page
    capsys.readouterr()
    assert main(args) == 2  # an existing page is kept without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
