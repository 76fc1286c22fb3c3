"""Learning-rate schedules, checked at the steps where their shape is known."""

import itertools
import math

import pytest

from resnetkit.schedule import Schedule, epochs_to_steps


def test_step_schedule_of_the_2015_paper_divides_by_ten_at_32k_and_48k():
    s = Schedule("step", lr=0.1, total_steps=64_000, milestones=(32_000, 48_000))
    assert s(0) == pytest.approx(0.1)
    assert s(31_999) == pytest.approx(0.1)
    assert s(32_000) == pytest.approx(0.01)
    assert s(47_999) == pytest.approx(0.01)
    assert s(48_000) == pytest.approx(0.001)
    assert s(63_999) == pytest.approx(0.001)


def test_cosine_starts_at_lr_passes_half_in_the_middle_and_ends_near_zero():
    s = Schedule("cosine", lr=0.2, total_steps=100)
    assert s(0) == pytest.approx(0.2)
    assert s(50) == pytest.approx(0.1)
    assert 0 < s(99) < 1e-3


def test_linear_warmup_then_cosine():
    s = Schedule("cosine", lr=1.0, total_steps=110, warmup_steps=10, warmup_start=0.0)
    assert s(0) == 0.0
    assert s(5) == pytest.approx(0.5)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.5)


def test_onecycle_rises_to_the_peak_then_falls_far_below_the_start():
    s = Schedule("onecycle", lr=0.4, total_steps=1000, pct_start=0.25)
    assert s(0) == pytest.approx(0.4 / 25)
    assert s(250) == pytest.approx(0.4)
    values = [s(i) for i in range(1000)]
    assert max(values) == pytest.approx(0.4)
    rising, falling = values[:251], values[250:]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(rising))
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(falling))
    assert s(999) == pytest.approx(0.4 / 25 / 1e4)


def test_linear_decay_heads_to_zero_at_the_end_of_the_run():
    s = Schedule("linear", lr=0.3, total_steps=10)
    assert s(5) == pytest.approx(0.15)
    assert s(9) == pytest.approx(0.03)


def test_unknown_schedule_and_bad_warmup_are_rejected():
    with pytest.raises(ValueError, match="allowed values: step, cosine"):
        Schedule("exp", lr=0.1, total_steps=10)
    with pytest.raises(ValueError, match="does not fit"):
        Schedule("cosine", lr=0.1, total_steps=10, warmup_steps=20)


def test_epochs_convert_to_steps():
    assert epochs_to_steps((32_000 / 391, 48_000 / 391), 391) == (32_000, 48_000)
    assert math.isclose(Schedule("constant", 0.5, 3)(2), 0.5)


def test_linear_decay_ends_at_its_floor_and_warm_up_starts_where_asked():
    # airbench's triangle: from 0.2 x lr up to lr over the warm-up, then down to 0.07 x lr.
    s = Schedule(
        "linear", lr=1.0, total_steps=101, warmup_steps=20, warmup_start=0.2, final_lr_ratio=0.07
    )
    assert s(0) == pytest.approx(0.2)
    assert s(20) == pytest.approx(1.0)
    # The decay is straight from lr at step 20 toward 0.07 x lr at step 101 (one past the last).
    assert s(60) == pytest.approx(1.0 - 0.93 * 40 / 81)
    assert s(100) == pytest.approx(1.0 - 0.93 * 80 / 81)
    assert min(s(step) for step in range(101)) > 0.07
