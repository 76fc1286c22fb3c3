"""The callback protocol: which hooks the loop calls, when, in what order, and with what."""

import pytest

from resnetkit.train import train
from resnetkit.training.callbacks import Callback, CallbackList
from train_helpers import StopAfter, tiny_config


class Recorder(Callback):
    """Writes down every hook call with what a callback can see at that point."""

    def __init__(self):
        self.events, self.metrics, self.rows, self.info = [], {}, [], None

    def on_train_start(self, state, info):
        self.info = info
        self.events.append(("train_start", state.step))

    def on_epoch_start(self, state):
        self.events.append(("epoch_start", state.epoch))

    def on_step_end(self, state, metrics):
        self.events.append(("step", state.step))
        self.metrics[state.step] = metrics

    def on_epoch_end(self, state, row):
        self.events.append(("epoch_end", row["epoch"]))
        self.rows.append((row, state.epoch, state.batch))

    def on_train_end(self, state):
        self.events.append(("train_end", state.step))


def test_the_loop_calls_each_hook_at_its_point_in_order(tmp_path):
    recorder = Recorder()
    result = train(tiny_config(tmp_path, log_every_steps=4), callbacks=[recorder])  # 2 x 8 steps
    expected = [("train_start", 0)]
    for epoch in (0, 1):
        expected.append(("epoch_start", epoch))
        expected += [("step", step) for step in range(8 * epoch + 1, 8 * epoch + 9)]
        expected.append(("epoch_end", epoch + 1))
    assert recorder.events == [*expected, ("train_end", 16)]
    info = recorder.info
    assert (info.epochs, info.steps_per_epoch, info.total_steps) == (2, 8, 16)
    assert info.precision == "fp32" and info.run_dir == result.run_dir


def test_step_metrics_come_on_logging_steps_only_as_running_means_of_the_epoch(tmp_path):
    recorder = Recorder()
    result = train(tiny_config(tmp_path, log_every_steps=4), callbacks=[recorder])
    logged = {step: m for step, m in recorder.metrics.items() if m is not None}
    assert sorted(logged) == [4, 8, 12, 16]
    assert [(m.epoch, m.batch, m.batches) for m in logged.values()] == [
        (0, 4, 8),
        (0, 8, 8),
        (1, 4, 8),
        (1, 8, 8),
    ]
    # At an epoch's last batch the running means are the epoch's row.
    assert logged[16].loss == pytest.approx(result.history[1]["train_loss"])
    assert logged[16].accuracy == pytest.approx(result.history[1]["train_acc"])


def test_epoch_end_gets_the_metrics_row_and_the_state_as_saved_for_the_next_epoch(tmp_path):
    recorder = Recorder()
    result = train(tiny_config(tmp_path), callbacks=[recorder])
    assert [row for row, _, _ in recorder.rows] == result.history
    assert [(epoch, batch) for _, epoch, batch in recorder.rows] == [(1, 0), (2, 0)]


def test_a_callback_that_raises_stops_the_run_and_every_callback_still_ends(tmp_path):
    recorder = Recorder()
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path), callbacks=[StopAfter(3), recorder])
    # StopAfter comes first, so the recorder never sees step 3.
    assert recorder.events[-3:] == [("step", 1), ("step", 2), ("train_end", 3)]


def test_callbacks_are_called_in_the_order_given_and_all_end_despite_an_error():
    calls = []

    class Named(Callback):
        def __init__(self, name, fail=False):
            self.name, self.fail = name, fail

        def on_epoch_start(self, state):
            calls.append(self.name)

        def on_train_end(self, state):
            calls.append(f"end {self.name}")
            if self.fail:
                raise OSError(f"{self.name} failed")

    callbacks = CallbackList([Named("a", fail=True), Named("b", fail=True), Named("c")])
    callbacks.on_epoch_start(None)
    with pytest.raises(OSError, match="a failed"):
        callbacks.on_train_end(None)
    assert calls == ["a", "b", "c", "end a", "end b", "end c"]
