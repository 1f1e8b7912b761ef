"""latentrl/Planar-v0's keyword arguments: PC3's obstacles, control bound, goal and starts."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from latentrl.envs import make_env
from latentrl.envs.planar import (
    AGENT_RADIUS,
    OBSTACLE_VALUE,
    PC3_LAYOUT,
    PlanarEnv,
    render_planar,
)
from latentrl.errors import UserError

ENV_ID = "latentrl/Planar-v0"
# The PC3 code's obstacles (mdp/plane_obstacles_mdp.py), (row, col) pixels
PC3_ROW_COL = [[20.5, 5.5], [20.5, 13.5], [20.5, 27.5], [20.5, 35.5], [10.5, 20.5], [30.5, 20.5]]
PC3 = {
    "obstacles": "pc3",
    "max_control": 3.0,
    "goal": [37.0, 37.0],
    "start_low": [3.0, 3.0],
    "start_high": [7.0, 7.0],
}


def make(**kwargs: object) -> PlanarEnv:
    return gym.make(ENV_ID, **kwargs).unwrapped


def test_pc3_obstacles_stand_where_their_code_puts_them_and_block_within_1_7_px() -> None:
    centres = np.array(PC3_ROW_COL)[:, ::-1]  # (x, y) = (col, row)
    assert np.array_equal(PC3_LAYOUT.centers, centres)
    env = make(**PC3)
    contact = PC3_LAYOUT.radius + AGENT_RADIUS
    assert contact == pytest.approx(1.7)
    assert np.pi * contact**2 == pytest.approx(9.0, abs=0.1)  # PC3's blocked 3x3 px square
    directions = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, -1.0]])
    for centre in centres:
        assert not env.is_valid(centre[None])[0]
        assert not env.is_valid(centre + 1.69 * directions).any()
        assert env.is_valid(centre + 1.71 * directions).all()


def test_pc3_obstacles_are_drawn_with_radius_2_5() -> None:
    env = make(**PC3)
    empty = env.observe(np.array([[3.0, 3.0]]))[0, 0]
    for x, y in PC3_LAYOUT.centers:
        row, col = int(y), int(x)
        assert empty[row, col] == OBSTACLE_VALUE  # the pixel holding the centre
        assert empty[row, col + 3] == 0 and empty[row + 3, col] == 0  # 3 px away: free
    assert not np.array_equal(empty, render_planar(np.array([[3.0, 3.0]]))[0])  # not E2C's


def test_moves_go_up_to_3_px_per_axis() -> None:
    env = make(**PC3)
    assert env.action_space.high.tolist() == [3.0, 3.0]
    states = np.array([[5.0, 5.0], [30.0, 35.0]])
    assert np.array_equal(env.next_states(states, np.array([[3.0, -3.0], [-2.5, 1.0]])),
                          [[8.0, 2.0], [27.5, 36.0]])  # fmt: skip
    assert np.array_equal(env.next_states(states[:1], np.array([[9.0, 9.0]])), [[8.0, 8.0]])


def test_the_goal_kwarg_moves_goal_distance_and_cost() -> None:
    env = make(**PC3, goal_radius=2.0)
    assert env.goal_state().tolist() == [37.0, 37.0]
    states = np.array([[37.0, 35.5], [35.0, 35.0]])
    assert env.goal_distance(states).tolist() == [1.5, np.sqrt(8)]
    assert (env.goal_distance(states) <= env.goal_radius).tolist() == [True, False]
    u = np.array([[3.0, 0.0], [9.0, 0.0]])
    np.testing.assert_allclose(env.cost(states, u), [2.25 + 0.09, 8 + 0.09])
    other = make(**{**PC3, "goal": [3.0, 37.0]})
    assert other.goal_distance(np.array([[3.0, 37.0]])).tolist() == [0.0]


def test_starts_are_uniform_in_the_start_box() -> None:
    env = make(**PC3)
    starts = env.sample_start_states(4000, np.random.default_rng(0))
    assert starts.min() >= 3.0 and starts.max() <= 7.0
    np.testing.assert_allclose(starts.mean(axis=0), [5.0, 5.0], atol=0.06)
    _, info = env.reset(seed=1)
    assert np.all((info["state"] >= 3) & (info["state"] <= 7))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"obstacles": "maze"}, "obstacles must be one of"),
        ({"goal": [20.0, 13.0]}, "goal must be a free"),
        ({"goal": [1.0, 37.0]}, "goal must be a free"),
        ({"max_control": 0}, "max_control must be a positive number"),
        ({"start_low": [0, 0], "start_high": [5, 5]}, "leaves the state box"),
    ],
)
def test_bad_kwargs_stop_make_env_with_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as refused:
        make_env(ENV_ID, **kwargs)
    assert "\n" not in str(refused.value)
