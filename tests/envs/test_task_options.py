"""The task kwargs every latentrl env takes: start box, goal radius, horizon."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from latentrl.envs.task_options import (
    StartBox,
    checked_goal_radius,
    checked_horizon,
    checked_positive,
    sample_start_box,
    start_box,
)
from latentrl.errors import UserError

SPACE = spaces.Box(np.array([-np.pi, -8.0]), np.array([np.pi, 8.0]), dtype=np.float64)


def test_no_start_box_unless_asked_for() -> None:
    assert start_box(None, None, SPACE) is None
    box = start_box([0.1, -1], [0.2, 1], SPACE)
    assert isinstance(box, StartBox)
    assert box.low.tolist() == [0.1, -1.0] and box.high.tolist() == [0.2, 1.0]


@pytest.mark.parametrize(
    ("low", "high", "message"),
    [
        ([0, 0], None, "give both start_low and start_high"),
        ([0], [1], "must each hold 2 numbers"),
        ([0, 0, 0], [1, 1, 1], "must each hold 2 numbers"),
        ([1, 0], [0, 0], "need finite start_low <= start_high"),
        ([0, float("nan")], [0, 0], "need finite start_low <= start_high"),
        ([0, 0], [0, 9], r"leaves the state box"),
        ([-4, 0], [0, 0], r"leaves the state box"),
    ],
)
def test_a_bad_start_box_is_refused_in_one_line(low, high, message) -> None:
    with pytest.raises(UserError, match=message) as refused:
        start_box(low, high, SPACE)
    assert "\n" not in str(refused.value)


def test_starts_are_uniform_in_the_box_and_a_flat_side_fixes_its_coordinate() -> None:
    box = start_box([0.9 * np.pi, 0.0], [0.95 * np.pi, 0.0], SPACE)
    states = sample_start_box(box, 20_000, np.random.default_rng(0), (0,), lambda s: s[:, 0] < 9)
    assert states.shape == (20_000, 2)
    assert np.all(states[:, 1] == 0.0)
    assert states[:, 0].min() >= 0.9 * np.pi and states[:, 0].max() <= 0.95 * np.pi
    # uniform: mean and standard deviation of U(a, b) within 4 standard errors
    a, b = 0.9 * np.pi, 0.95 * np.pi
    assert abs(states[:, 0].mean() - (a + b) / 2) < 4 * (b - a) / np.sqrt(12 * 20_000)
    assert states[:, 0].std() == pytest.approx((b - a) / np.sqrt(12), rel=0.02)
    point = start_box([0.0, 0.0], [0.0, 0.0], SPACE)
    every = lambda s: np.ones(len(s), dtype=bool)  # noqa: E731
    fixed = sample_start_box(point, 3, np.random.default_rng(1), (0,), every)
    assert np.array_equal(fixed, np.zeros((3, 2)))


def test_invalid_starts_are_redrawn_and_an_empty_box_is_refused() -> None:
    box = start_box([-1.0, -1.0], [1.0, 1.0], SPACE)
    right_half = lambda s: s[:, 0] > 0  # noqa: E731
    states = sample_start_box(box, 500, np.random.default_rng(2), (), right_half)
    assert states.shape == (500, 2) and np.all(states[:, 0] > 0)
    assert states[:, 0].mean() == pytest.approx(0.5, abs=0.06)  # uniform over the valid half
    with pytest.raises(UserError, match="holds almost no valid state"):
        sample_start_box(box, 5, np.random.default_rng(3), (), lambda s: s[:, 0] > 5)


def test_goal_radius_horizon_and_positive_numbers_are_checked() -> None:
    assert checked_goal_radius(None, 0.5) == 0.5 and checked_goal_radius(2, 0.5) == 2.0
    assert checked_horizon(None, 200) == 200 and checked_horizon(50, 200) == 50
    assert checked_positive("dt", 0.02) == 0.02
    for bad in (0, -1.0, True, "1"):
        with pytest.raises(UserError, match="goal_radius must be a positive number"):
            checked_goal_radius(bad, 0.5)  # type: ignore[arg-type]
    for bad in (0, 2.5, True, "9"):
        with pytest.raises(UserError, match="horizon must be a positive int"):
            checked_horizon(bad, 200)  # type: ignore[arg-type]
    for bad in (0.0, float("inf"), float("nan"), None):
        with pytest.raises(UserError, match="dt must be a positive number"):
            checked_positive("dt", bad)  # type: ignore[arg-type]
