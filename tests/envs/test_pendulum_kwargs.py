"""latentrl/Pendulum-v0's keyword arguments: other physics and another task (PC3's pendulum)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from latentrl.envs import make_env
from latentrl.envs.pendulum import PENDULUM_V1, PixelPendulumEnv, render_pendulum
from latentrl.errors import UserError

ENV_ID = "latentrl/Pendulum-v0"
# The PC3 code's pendulum (mdp/pendulum_mdp.py, mdp/pole_base.py): m = 0.1 kg, l = 0.5 m,
# g = 9.81 m/s^2, theta'' = (m g l sin(theta) - u) / (m l^2 / 3), 50 Hz, |u| <= 0.65 N m.
PC3 = {
    "gravity": 19.62,
    "mass": 0.1,
    "length": 0.5,
    "dt": 0.02,
    "max_torque": 0.65,
    "max_speed": 3 * np.pi,
}
SWING = {**PC3, "start_low": [0.9 * np.pi, 0.0], "start_high": [0.95 * np.pi, 0.0]}


def pc3_acceleration(theta: np.ndarray, u: np.ndarray) -> np.ndarray:
    """PC3's theta'' (its theta and torque mirrored to ours: theta_pc3 = -theta, u_pc3 = u)."""
    m, g, length = 0.1, 9.81, 0.5
    theirs = (m * g * length * np.sin(np.pi + theta) - u) / (m * length**2 / 3)
    return -theirs


def make(**kwargs: object) -> PixelPendulumEnv:
    return gym.make(ENV_ID, **kwargs).unwrapped


def test_defaults_are_pendulum_v1_and_its_task() -> None:
    env = make()
    assert env.physics == PENDULUM_V1
    assert (env.horizon, env.goal_radius) == (200, np.pi / 6)
    assert env.action_space.high.tolist() == [2.0] and env.state_space.high.tolist() == [np.pi, 8]
    starts = env.sample_start_states(500, np.random.default_rng(0))
    assert np.all(np.abs(np.abs(starts[:, 0]) - np.pi) <= 0.2) and np.all(starts[:, 1] == 0)


def test_pc3_physics_follow_their_equation_of_motion() -> None:
    env = make(**PC3)
    rng = np.random.default_rng(0)
    states = np.stack([rng.uniform(-np.pi, np.pi, 200), rng.uniform(-3, 3, 200)], axis=1)
    u = rng.uniform(-0.65, 0.65, (200, 1))
    nxt = env.next_states(states, u)
    accel = (nxt[:, 1] - states[:, 1]) / 0.02
    np.testing.assert_allclose(accel, pc3_acceleration(states[:, 0], u[:, 0]), atol=1e-9)
    # semi-implicit Euler: the new speed moves the angle
    moved = np.angle(np.exp(1j * (states[:, 0] + nxt[:, 1] * 0.02)))
    np.testing.assert_allclose(np.cos(nxt[:, 0] - moved), 1.0, atol=1e-12)


def test_the_torque_limit_and_the_speed_limit_are_applied() -> None:
    env = make(**PC3)
    high = env.action_space.high
    assert np.array_equal(high, np.float32([0.65])) and np.all(env.action_space.low == -high)
    states = np.array([[0.3, 0.0], [-2.0, 1.0]])
    beyond = env.next_states(states, np.array([[5.0], [-5.0]]))
    at_limit = env.next_states(states, np.array([[0.65], [-0.65]]))
    assert np.array_equal(beyond, at_limit)
    fast = env.next_states(np.array([[1.5, 9.4]]), np.array([[0.65]]))
    assert fast[0, 1] == 3 * np.pi and env.state_space.high[1] == 3 * np.pi


def test_the_first_frame_is_one_pc3_step_back() -> None:
    env = make(**PC3)
    state = np.array([[0.4, 5.0]])
    obs = env.observe(state)
    assert np.array_equal(obs[0, 0], render_pendulum(np.array([0.4 - 5.0 * 0.02]))[0])
    assert np.array_equal(obs[0, 1], render_pendulum(np.array([0.4]))[0])


def test_swing_up_starts_where_the_start_box_says_and_reset_draws_from_it() -> None:
    env = make(**SWING, horizon=100)
    starts = env.sample_start_states(4000, np.random.default_rng(1))
    assert starts[:, 0].min() >= 0.9 * np.pi and starts[:, 0].max() <= 0.95 * np.pi
    assert np.all(starts[:, 1] == 0) and env.horizon == 100
    assert starts[:, 0].mean() == pytest.approx(0.925 * np.pi, abs=0.002)
    _, info = env.reset(seed=3)
    assert 0.9 * np.pi <= info["state"][0] <= 0.95 * np.pi and info["state"][1] == 0


def test_balance_starts_exactly_upright_and_stays_there_without_torque() -> None:
    env = make(**PC3, start_low=[0, 0], start_high=[0, 0])
    assert np.array_equal(env.sample_start_states(5, np.random.default_rng(0)), np.zeros((5, 2)))
    _, info = env.reset(seed=0)
    for _ in range(100):
        _, _, _, _, info = env.step(np.zeros(1, dtype=np.float32))
    assert np.array_equal(info["state"], np.zeros(2))


def test_the_goal_radius_sets_the_goal_region() -> None:
    env = make(goal_radius=0.1)
    states = np.array([[0.09, 3.0], [-0.11, 0.0], [np.pi, 0.0]])
    assert env.goal_radius == 0.1
    assert (env.goal_distance(states) <= env.goal_radius).tolist() == [True, False, False]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dt": 0}, "dt must be a positive number"),
        ({"max_torque": -1}, "max_torque must be a positive number"),
        ({"start_low": [0, 0], "start_high": [0, 9]}, "leaves the state box"),
        ({"horizon": 0}, "horizon must be a positive int"),
    ],
)
def test_bad_kwargs_stop_make_env_with_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message) as refused:
        make_env(ENV_ID, **kwargs)
    assert "\n" not in str(refused.value)
