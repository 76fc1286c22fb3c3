"""TrainState: the one schema of a training state, written by checkpoints and read by resume."""

import pytest
import torch
from torch import nn

from resnetkit.training.ema import WeightEma
from resnetkit.training.state import OPTIONAL_STATE_KEYS, STATE_KEYS, TrainState
from resnetkit.weights.checkpoint import CheckpointError, list_states, load_state, save_state


def make_state(seed: int, ema_decay: float = 0.0) -> TrainState:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ema = WeightEma(model, ema_decay) if ema_decay else None
    return TrainState(model, optimizer, ema)


def train_a_step(state: TrainState) -> None:
    loss = state.model(torch.randn(8, 4)).square().mean()
    loss.backward()
    state.optimizer.step()
    state.step += 1
    if state.ema is not None:
        state.ema.update(state.model, state.step)


def saved_and_read_back(tmp_path, state_dict):
    save_state(tmp_path, 7, state_dict, keep=2)
    return load_state(list_states(tmp_path)[-1])


def test_a_cpu_state_without_an_average_has_exactly_the_keys_resume_reads():
    assert set(make_state(0).state_dict()) == set(STATE_KEYS)
    assert set(make_state(0, ema_decay=0.9).state_dict()) == {*STATE_KEYS, "ema"}
    assert set(OPTIONAL_STATE_KEYS) == {"rng_cuda", "ema", "loader"}


def test_a_state_round_trips_through_a_checkpoint_file_bit_for_bit(tmp_path):
    saved = make_state(0, ema_decay=0.9)
    train_a_step(saved)
    saved.epoch, saved.batch, saved.best, saved.bad_steps = 1, 3, 0.5, 2
    saved.running = torch.tensor([12.5, 6.0, 16.0], dtype=torch.float64)
    saved.history = [{"epoch": 1, "step": 4, "test_acc": 0.5}]
    on_disk = saved_and_read_back(tmp_path, saved.state_dict())
    drawn_after_saving = torch.rand(4)

    loaded = make_state(1, ema_decay=0.9)  # other initial weights, an empty optimizer
    loaded.load_state_dict(on_disk)
    assert torch.equal(torch.rand(4), drawn_after_saving)  # the RNG continues where it was
    for key, value in saved.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    for key, value in saved.ema.module.state_dict().items():
        assert torch.equal(loaded.ema.module.state_dict()[key], value), key
    assert loaded.ema.updates == saved.ema.updates == 1
    momentum = [s["momentum_buffer"] for s in loaded.optimizer.state.values()]
    expected = [s["momentum_buffer"] for s in saved.optimizer.state.values()]
    assert len(momentum) == 4 and all(map(torch.equal, momentum, expected))
    fields = ("step", "epoch", "batch", "best", "bad_steps", "history")
    assert [getattr(loaded, f) for f in fields] == [1, 1, 3, 0.5, 2, saved.history]
    assert loaded.running.tolist() == [12.5, 6.0, 16.0]


def test_a_state_written_in_the_layout_of_the_old_training_loop_resumes(tmp_path):
    # The dict fit() built by hand before TrainState existed, key for key.
    old = make_state(0)
    train_a_step(old)
    layout = {
        "model": old.model.state_dict(),
        "optimizer": old.optimizer.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "step": 9,
        "epoch": 1,
        "batch": 1,
        "best": 0.25,
        "bad_steps": 0,
        "running": torch.tensor([3.0, 2.0, 32.0], dtype=torch.float64),
        "history": [{"epoch": 1, "step": 8, "train_loss": 2.0}],
        "elapsed": 41.5,
    }
    state = make_state(1)
    state.load_state_dict(saved_and_read_back(tmp_path, layout))
    assert (state.step, state.epoch, state.batch, state.best) == (9, 1, 1, 0.25)
    assert state.history == layout["history"] and state.running.tolist() == [3.0, 2.0, 32.0]
    assert torch.equal(state.model[0].weight, old.model[0].weight)
    assert 41.5 <= state.state_dict()["elapsed"] < 60  # the clock goes on from the saved time


def test_a_rank_that_does_not_carry_the_sums_restarts_them_at_zero():
    saved = make_state(0)
    totals = torch.tensor([4.0, 3.0, 8.0], dtype=torch.float64)  # over all ranks
    state_dict = saved.state_dict(running=totals)
    assert state_dict["running"].tolist() == [4.0, 3.0, 8.0]
    other_rank = make_state(0)
    other_rank.load_state_dict(state_dict, carry_running=False)
    assert other_rank.running.tolist() == [0.0, 0.0, 0.0]


def test_a_run_saved_before_it_had_an_average_starts_the_average_from_the_loaded_weights():
    plain = make_state(0)
    train_a_step(plain)
    averaged = make_state(1, ema_decay=0.9)
    averaged.load_state_dict(plain.state_dict())
    assert averaged.ema.updates == 0
    assert torch.equal(averaged.ema.module[0].weight, plain.model[0].weight)
    assert averaged.eval_model is averaged.ema.module


def test_a_state_missing_a_key_is_a_checkpoint_error_that_names_it():
    state_dict = make_state(0).state_dict()
    del state_dict["bad_steps"], state_dict["history"]
    with pytest.raises(CheckpointError, match="has no bad_steps, history"):
        make_state(0).load_state_dict(state_dict)


def test_running_sums_count_loss_times_images_correct_and_seen():
    state = make_state(0)
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    state.count_batch(torch.tensor(0.5), logits, torch.tensor([0, 2]))
    state.count_batch(torch.tensor(1.0), logits, torch.tensor([0, 1]))
    assert state.running.tolist() == [3.0, 3.0, 4.0]


class Position:
    """Training batches with a state of their own, as a user's DataLoader wrapper has."""

    def __init__(self) -> None:
        self.generator = torch.Generator().manual_seed(4)
        self.loaded = None

    def state_dict(self):
        return {"epoch": 1, "start": [self.generator.get_state()], "now": []}

    def load_state_dict(self, state) -> None:
        self.loaded = state


def test_training_batches_with_a_state_of_their_own_are_saved_and_restored_with_it(tmp_path):
    state = make_state(0)
    state.loader = Position()
    saved = saved_and_read_back(tmp_path, state.state_dict())  # read with weights_only=True
    assert set(saved) == {*STATE_KEYS, "loader", "format"}
    fresh = make_state(1)
    fresh.loader = Position()
    fresh.load_state_dict(saved)
    assert fresh.loader.loaded["epoch"] == 1
    assert torch.equal(fresh.loader.loaded["start"][0], state.loader.generator.get_state())
