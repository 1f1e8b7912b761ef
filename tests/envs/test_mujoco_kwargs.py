"""The MuJoCo swing-ups' keyword arguments: force bound, control step, frame size, camera view,
task."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from latentrl.envs import make_env
from latentrl.errors import UserError

ENV_ID = "latentrl/CartpoleSwingup-v0"
PC3 = {
    "max_action": 10.0,
    "frame_skip": 2,
    "image_size": 80,
    "start_low": [0.0, -np.pi / 8, 0.0, 0.0],
    "start_high": [0.0, np.pi / 8, 0.0, 0.0],
    "goal_radius": np.pi / 10,
    "horizon": 50,
}


@pytest.fixture(scope="module")
def pc3_env():
    env = gym.make(ENV_ID, **PC3)
    yield env.unwrapped
    env.close()


@pytest.fixture(scope="module")
def one_step_env():
    env = gym.make(ENV_ID, max_action=10.0, frame_skip=1)
    yield env.unwrapped
    env.close()


def test_the_force_bound_is_applied(pc3_env) -> None:
    assert pc3_env.action_space.low.tolist() == [-10.0]
    assert pc3_env.action_space.high.tolist() == [10.0]
    state = np.array([[0.0, 0.3, 0.0, 0.0]])
    pushed = {u: pc3_env.next_states(state, np.array([[u]]))[0] for u in (5.0, 10.0, 40.0)}
    assert np.array_equal(pushed[10.0], pushed[40.0])
    assert pushed[10.0][2] > pushed[5.0][2] > 0  # twice the force: a faster cart


def test_frame_skip_sets_the_control_step(pc3_env, one_step_env) -> None:
    assert pc3_env.dt == pytest.approx(0.02) and pc3_env.metadata["render_fps"] == 50
    states = np.array([[0.1, 0.3, 0.2, -1.0], [-0.5, 2.0, 0.0, 3.0]])
    u = np.array([[3.0], [-7.0]])
    twice = one_step_env.next_states(one_step_env.next_states(states, u), u)
    np.testing.assert_allclose(pc3_env.next_states(states, u), twice, atol=1e-12)
    # the first frame shows the configuration one (0.02 s) step back
    earlier = states.copy()
    earlier[:, :2] -= 0.02 * states[:, 2:]
    earlier[:, 2:] = 0
    assert np.array_equal(pc3_env.observe(states)[:, 0], pc3_env.observe(earlier)[:, 0])


def test_frames_are_80_px_and_starts_tilted_at_rest(pc3_env) -> None:
    assert pc3_env.observation_space.shape == (2, 80, 80)
    assert pc3_env.observe(np.zeros((1, 4))).shape == (1, 2, 80, 80)
    starts = pc3_env.sample_start_states(2000, np.random.default_rng(0))
    assert np.all(starts[:, [0, 2, 3]] == 0)
    assert np.abs(starts[:, 1]).max() <= np.pi / 8
    assert starts[:, 1].std() == pytest.approx(np.pi / 8 / np.sqrt(3), rel=0.05)
    assert (pc3_env.horizon, pc3_env.goal_radius) == (50, np.pi / 10)
    inside = pc3_env.goal_distance(np.array([[1.0, 0.31, 0, 0], [0.0, 0.32, 0, 0]]))
    assert (inside <= pc3_env.goal_radius).tolist() == [True, False]


def test_defaults_keep_the_task() -> None:
    env = gym.make(ENV_ID)
    inner = env.unwrapped
    try:
        assert inner.dt == pytest.approx(0.05) and inner.action_space.high.tolist() == [5.0]
        assert inner.observation_space.shape == (2, 64, 64)
        assert (inner.horizon, inner.goal_radius) == (200, np.pi / 6)
        starts = inner.sample_start_states(100, np.random.default_rng(0))
        assert np.all(np.abs(np.abs(starts[:, 1]) - np.pi) <= 0.2)
    finally:
        env.close()


def bright_pixels(env, states: np.ndarray) -> np.ndarray:
    """Pixels brighter than the rail in the last frame of each state's observation."""
    return (env.observe(states)[:, -1] > 100).sum(axis=(1, 2))


def test_half_the_view_width_draws_the_pole_twice_as_large(pc3_env) -> None:
    near = gym.make(ENV_ID, **PC3, view_width=2.2)
    try:
        inner = near.unwrapped
        assert inner.model.cam_fovy.tolist() == [2.2]
        assert pc3_env.model.cam_fovy.tolist() == [4.4]  # the MJCF's, when left out
        states = np.array([[0.0, 0.0, 0.0, 0.0], [0.3, 0.4, 1.0, -2.0]])
        # twice as long and twice as wide: about four times the pixels
        ratio = bright_pixels(inner, states) / bright_pixels(pc3_env, states)
        assert np.all((ratio > 3.0) & (ratio < 5.5))
        # the pole's tip, upright over the centred cart, at the view's top: row 80 (1 - 1/2.2) / 2
        column = inner.observe(states[:1])[0, -1, :, 40]
        top = int(np.flatnonzero(column > 100)[0])
        assert abs(top - 80 * (1 - 1.08 / 1.1) / 2) <= 1.5
        # the camera changes the frames only: the same dynamics
        u = np.array([[3.0], [-7.0]])
        assert np.array_equal(inner.next_states(states, u), pc3_env.next_states(states, u))
    finally:
        near.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frame_skip": 0}, "frame_skip must be a positive int"),
        ({"image_size": 300}, "image_size must be an int in"),
        ({"max_action": -1}, "max_action must be a positive number"),
        ({"view_width": 0}, "view_width must be a positive number"),
        ({"view_width": "wide"}, "view_width must be a positive number"),
        ({"start_low": [0, 0], "start_high": [0, 0]}, "must each hold 4 numbers"),
    ],
)
def test_bad_kwargs_stop_make_env_with_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as refused:
        make_env(ENV_ID, **kwargs)
    assert "\n" not in str(refused.value)
