"""Gradient clipping and accumulation: the arithmetic the training loop steps by."""

import pytest
import torch
from torch import nn

from resnetkit.training.optim import (
    clip_gradients,
    closes_window,
    optimizer_steps,
    window_size,
    window_start,
)


def _with_gradients(scale: float) -> nn.Linear:
    layer = nn.Linear(4, 3)
    for p in layer.parameters():
        p.grad = torch.full_like(p, scale)
    return layer


def test_clipping_scales_the_global_norm_down_to_the_limit_and_returns_the_norm_before():
    layer = _with_gradients(2.0)  # 15 entries of 2: norm 2 * sqrt(15)
    before = clip_gradients(layer.parameters(), max_norm=1.0)
    assert before.item() == pytest.approx(2.0 * 15**0.5)
    after = torch.cat([p.grad.flatten() for p in layer.parameters()]).norm()
    assert after.item() == pytest.approx(1.0, rel=1e-4)


def test_clipping_leaves_small_gradients_and_none_turns_it_off():
    layer = _with_gradients(0.01)
    clip_gradients(layer.parameters(), max_norm=10.0)
    assert torch.equal(layer.weight.grad, torch.full_like(layer.weight, 0.01))
    big = _with_gradients(5.0)
    assert clip_gradients(big.parameters(), None) is None
    assert torch.equal(big.weight.grad, torch.full_like(big.weight, 5.0))


def test_ten_batches_with_four_step_accumulation_make_three_steps_the_last_short():
    batches, n = 10, 4
    assert optimizer_steps(batches, n) == 3
    closing = [b for b in range(batches) if closes_window(b, batches, n)]
    assert closing == [3, 7, 9]
    assert [window_size(b, batches, n) for b in range(batches)] == [4] * 8 + [2, 2]
    assert [window_start(step, n) for step in range(3)] == [0, 4, 8]


def test_without_accumulation_every_batch_is_a_step():
    assert optimizer_steps(7, 1) == 7
    assert all(closes_window(b, 7, 1) and window_size(b, 7, 1) == 1 for b in range(7))


def test_accumulated_gradients_divided_by_the_window_equal_one_large_batch():
    torch.manual_seed(0)
    model, x, y = nn.Linear(5, 2), torch.randn(8, 5), torch.randn(8, 2)
    nn.functional.mse_loss(model(x), y).backward()
    full = model.weight.grad.clone()
    model.zero_grad()
    for batch, part in enumerate(range(0, 8, 2)):
        loss = nn.functional.mse_loss(model(x[part : part + 2]), y[part : part + 2])
        (loss / window_size(batch, 4, 4)).backward()
    torch.testing.assert_close(model.weight.grad, full)


@pytest.mark.parametrize(
    "call",
    [
        lambda: closes_window(5, 5, 2),
        lambda: window_size(0, 5, 0),
        lambda: optimizer_steps(5, 0),
        lambda: window_start(-1, 2),
        lambda: clip_gradients([], 0.0),
    ],
)
def test_impossible_arguments_are_value_errors(call):
    with pytest.raises(ValueError):
        call()
