"""The progress display: a tqdm bar where a person watches, plain lines in logs, nothing
with -q."""

import io
import sys
import types
from typing import ClassVar

import pytest

from resnetkit import progress as progress_module
from resnetkit.progress import Progress, is_interactive
from resnetkit.train import train
from train_helpers import tiny_config

METRICS = {
    "train_loss": 0.5,
    "train_acc": 0.8,
    "test_loss": 0.6,
    "test_acc": 0.75,
    "images_per_s": 1000.0,
    "epoch_time": 2.0,
}


class FakeBar:
    """Stands in for tqdm and records what the display does with its bar."""

    made: ClassVar[list["FakeBar"]] = []

    def __init__(self, **options):
        self.options, self.n, self.closed, self.postfix = options, 0, False, ""
        FakeBar.made.append(self)

    def update(self, count):
        self.n += count

    def set_postfix_str(self, text, refresh=True):
        self.postfix = text

    def close(self):
        self.closed = True

    def write(self, text, file):
        file.write(text + "\n")


@pytest.fixture
def fake_tqdm(monkeypatch):
    FakeBar.made = []
    monkeypatch.setattr(progress_module, "tqdm", FakeBar)
    return FakeBar.made


def run_epoch(display, batches=4, epoch=0, epochs=2):
    display.epoch_start(epoch, epochs)
    for batch in range(1, batches + 1):
        display.step(epoch, epochs, batch, batches, 0.5, 0.8, 1000.0)
    display.epoch_end(epoch, epochs, METRICS, eta=3.0)


def test_output_that_is_not_a_terminal_gets_plain_lines():
    stream = io.StringIO()
    run_epoch(Progress(stream=stream, plain_every=0.0))
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("epoch 1/2 1/4 loss 0.5000 acc 80.00% 1,000 img/s eta")
    assert lines[-1].startswith("epoch 1/2: train loss 0.5000 acc 80.00% | test loss 0.6000")
    assert len(lines) == 5 and "\r" not in stream.getvalue()


def test_interactive_output_gets_one_tqdm_bar_per_epoch_closed_by_the_summary(fake_tqdm):
    stream = io.StringIO()
    display = Progress(stream=stream, live=True)
    run_epoch(display, batches=4, epoch=0)
    run_epoch(display, batches=4, epoch=1)
    first, second = fake_tqdm
    assert first.options["total"] == 4 and first.options["desc"] == "epoch 1/2"
    assert first.options["file"] is stream and second.options["desc"] == "epoch 2/2"
    assert first.n == 4 and first.closed and second.closed
    assert first.postfix == "loss 0.5000 acc 80.00% 1,000 img/s"
    assert stream.getvalue().count("train loss 0.5000") == 2


def test_a_real_tqdm_bar_draws_the_epoch_and_the_rate():
    stream = io.StringIO()
    display = Progress(stream=stream, live=True)
    display.epoch_start(0, 1)
    display.step(0, 1, 1, 2, 0.5, 0.8, 1000.0)
    display.message("a note above the bar")
    assert "epoch 1/1" in stream.getvalue() and "a note above the bar" in stream.getvalue()
    display.step(0, 1, 2, 2, 0.5, 0.8, 1000.0)
    display.epoch_end(0, 1, METRICS, eta=0.0)
    assert "img/s" in stream.getvalue()
    assert stream.getvalue().rstrip().endswith("eta 00:00")


def test_quiet_shows_nothing_and_makes_no_bar(fake_tqdm):
    stream = io.StringIO()
    run_epoch(Progress(stream=stream, live=True, enabled=False))
    assert stream.getvalue() == "" and fake_tqdm == []


def test_a_terminal_or_a_notebook_counts_as_interactive(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert is_interactive(Terminal()) and not is_interactive(io.StringIO())
    kernel = types.SimpleNamespace(config={"IPKernelApp": {}})
    fake_ipython = types.SimpleNamespace(get_ipython=lambda: kernel)
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython)
    assert is_interactive(io.StringIO())


def test_training_drives_the_live_display_to_the_end(tmp_path):
    stream = io.StringIO()
    train(tiny_config(tmp_path, epochs=1, max_steps=2), progress=Progress(stream, live=True))
    assert "epoch 1/1: train loss" in stream.getvalue()
