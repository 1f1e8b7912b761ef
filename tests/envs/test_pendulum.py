"""latentrl/Pendulum-v0: Gymnasium-identical physics, images that are a function of the state."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from latentrl.envs import (
    InvalidStateError,
    goal_observation,
    in_goal,
    require_control_env,
    wrap_angle,
)
from latentrl.envs.pendulum import (
    DT,
    PixelPendulumEnv,
    observe_pendulum,
    pendulum_step,
    render_pendulum,
    wrap_into_box,
)

ENV_ID = "latentrl/Pendulum-v0"
# Gymnasium's advice for every action box other than [-1, 1]; Pendulum-v1 gets it too.
_EXPECTED_WARNING = "we recommend using a symmetric and normalized space"


@pytest.fixture
def env() -> PixelPendulumEnv:
    return gym.make(ENV_ID).unwrapped


def _centroid(frame: np.ndarray) -> tuple[float, float]:
    """Intensity-weighted (row, column) of a frame, in pixel-centre coordinates."""
    rows, cols = np.indices(frame.shape) + 0.5
    weight = frame.astype(np.float64)
    return float((rows * weight).sum() / weight.sum()), float((cols * weight).sum() / weight.sum())


def test_check_env_passes_with_only_the_action_box_advice() -> None:
    made = gym.make(ENV_ID)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(made.unwrapped)
    unexpected = [str(w.message) for w in caught if _EXPECTED_WARNING not in str(w.message)]
    assert unexpected == []
    inner = require_control_env(made)
    assert inner.state_names == ("theta", "theta_dot") and inner.angle_dims == (0,)
    assert made.spec.max_episode_steps == 200


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_trajectories_equal_gymnasium_pendulum_v1(seed: int) -> None:
    ours, ref = gym.make(ENV_ID), gym.make("Pendulum-v1")
    _, info = ours.reset(seed=seed)
    ref.reset(seed=seed)
    assert np.array_equal(ours.unwrapped.physics_state, ref.unwrapped.state)
    # torques beyond ±2 check the clipping as well
    actions = np.random.default_rng(seed).uniform(-3, 3, (200, 1)).astype(np.float32)
    for t, action in enumerate(actions):
        _, reward, terminated, truncated, info = ours.step(action)
        _, ref_reward, _, ref_truncated, _ = ref.step(action)
        theta, theta_dot = ref.unwrapped.state
        assert np.array_equal(ours.unwrapped.physics_state, ref.unwrapped.state), t
        assert reward == ref_reward, t
        assert info["state"].dtype == np.float64
        assert np.array_equal(info["state"], [wrap_into_box(theta), theta_dot]), t
        np.testing.assert_allclose(info["state"], [wrap_angle(theta), theta_dot], atol=1e-12)
        assert not terminated
        assert truncated == ref_truncated == (t == 199)


def test_spinning_trajectory_with_unwrapped_angle_equals_gymnasium() -> None:
    ours, ref = gym.make(ENV_ID), gym.make("Pendulum-v1")
    ours.reset(seed=0, options={"state": [3.0, 8.0]})
    ref.reset(seed=0)
    ref.unwrapped.state = np.array([3.0, 8.0])
    for _ in range(100):
        _, reward, _, _, info = ours.step(np.array([2.0], dtype=np.float32))
        _, ref_reward, _, _, _ = ref.step(np.array([2.0], dtype=np.float32))
        assert np.array_equal(ours.unwrapped.physics_state, ref.unwrapped.state)
        assert reward == ref_reward
        assert -np.pi <= info["state"][0] <= np.pi
    # the pole went round several times, so the wrapped and integrated angles differ
    assert ref.unwrapped.state[0] > 6 * np.pi
    assert info["state"][0] == pytest.approx(wrap_angle(ref.unwrapped.state[0]), abs=1e-12)


def test_pendulum_step_matches_hand_computed_values() -> None:
    states = np.array([[0.5, -1.0], [np.pi / 2, 7.9]])
    torques = np.array([[1.0], [5.0]])  # the second is clipped to 2
    thdot0 = -1.0 + (15.0 * np.sin(0.5) + 3.0 * 1.0) * 0.05
    thdot1 = min(7.9 + (15.0 * 1.0 + 3.0 * 2.0) * 0.05, 8.0)
    expected = np.array([[0.5 + thdot0 * 0.05, thdot0], [np.pi / 2 + thdot1 * 0.05, thdot1]])
    np.testing.assert_allclose(pendulum_step(states, torques), expected, rtol=0, atol=1e-15)


def test_obs_is_observe_of_info_state_and_previous_frame_is_one_step_back(env) -> None:
    obs, info = env.reset(seed=3)
    rng = np.random.default_rng(3)
    for _ in range(60):
        expected = env.observe(info["state"][None])[0]
        assert obs.dtype == np.uint8 and obs.shape == (2, 48, 48)
        assert np.array_equal(obs, expected)
        theta, theta_dot = info["state"]
        assert np.array_equal(obs[0], render_pendulum(np.array([theta - theta_dot * DT]))[0])
        assert np.array_equal(obs[1], render_pendulum(np.array([theta]))[0])
        obs, _, _, _, info = env.step(rng.uniform(-2, 2, 1).astype(np.float32))


def test_frames_are_a_deterministic_function_of_the_state() -> None:
    states = np.array([[0.3, 1.0], [0.3, 1.0], [0.35, 1.0], [-2.0, -5.0]])
    first, second = observe_pendulum(states), observe_pendulum(states.copy())
    assert first.tobytes() == second.tobytes()
    assert np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0, 1], first[2, 1])  # 0.05 rad apart
    # a frame does not depend on the batch it is rendered in (blocks of 64 frames)
    batch = np.random.default_rng(0).uniform(-np.pi, np.pi, 200)
    assert np.array_equal(render_pendulum(batch)[150], render_pendulum(batch[150:151])[0])
    # a capsule 20 px long, 2 px in radius: its intensity sums to its area times 255
    area = 20 * 4 + np.pi * 2**2
    assert int(render_pendulum(np.array([0.7]))[0].sum()) == pytest.approx(255 * area, rel=0.02)


def test_pole_points_up_at_zero_and_turns_counter_clockwise_like_gymnasium(env) -> None:
    goal = goal_observation(env)
    assert np.array_equal(goal[0], goal[1])  # at rest: both frames alike
    row, col = _centroid(goal[1])
    assert row < 24 - 8 and col == pytest.approx(24.0, abs=1e-9)
    bright_rows = np.nonzero(goal[1] > 128)[0]
    assert np.mean(bright_rows < 24) > 0.9
    # positive θ: the tip moves left (tip at (-sin θ, cos θ), as Pendulum-v1 draws it)
    row, col = _centroid(render_pendulum(np.array([np.pi / 2]))[0])
    assert col < 24 - 8 and row == pytest.approx(24.0, abs=1e-6)
    row, col = _centroid(render_pendulum(np.array([np.pi]))[0])
    assert row > 24 + 8


def test_reset_to_a_state_reports_it_exactly_and_rejects_invalid_ones(env) -> None:
    for state in ([np.pi, 8.0], [-np.pi, -8.0], [0.1, 0.2]):
        _, info = env.reset(options={"state": np.array(state)})
        assert np.array_equal(info["state"], state)
    with pytest.raises(InvalidStateError, match=r"outside the valid set of PixelPendulumEnv"):
        env.reset(options={"state": [0.0, 8.5]})
    with pytest.raises(InvalidStateError, match=r"outside the valid set"):
        env.reset(options={"state": [3.2, 0.0]})
    with pytest.raises(InvalidStateError, match=r"outside the valid set"):
        env.reset(options={"state": [np.nan, 0.0]})
    with pytest.raises(InvalidStateError, match=r"expected states of shape \(n, 2\)"):
        env.reset(options={"state": [0.0, 0.0, 0.0]})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"x_init": 1.0})


def test_sampled_states_are_valid_and_cover_the_box(env) -> None:
    rng = np.random.default_rng(0)
    states = env.sample_states(5000, rng)
    assert states.shape == (5000, 2) and states.dtype == np.float64
    assert env.is_valid(states).all()
    assert states.min(axis=0) == pytest.approx([-np.pi, -8.0], abs=0.05)
    assert states.max(axis=0) == pytest.approx([np.pi, 8.0], abs=0.05)
    starts = env.sample_start_states(1000, rng)
    assert env.is_valid(starts).all()
    assert np.all(np.abs(wrap_angle(starts[:, 0] - np.pi)) <= 0.2 + 1e-12)
    assert np.all(starts[:, 1] == 0.0)
    assert not in_goal(env, starts).any()


def test_next_states_match_step(env) -> None:
    rng = np.random.default_rng(1)
    states = env.sample_states(50, rng)
    actions = rng.uniform(-2.5, 2.5, (50, 1)).astype(np.float32)
    batched = env.next_states(states, actions)
    assert env.is_valid(batched).all()
    for state, action, expected in zip(states, actions, batched, strict=True):
        _, info = env.reset(options={"state": state})
        _, reward, _, _, info = env.step(action)
        assert np.array_equal(info["state"], expected)
        assert reward == pytest.approx(-env.cost(state[None], action[None])[0], abs=1e-9)


def test_task_definition(env) -> None:
    assert np.array_equal(env.goal_state(), [0.0, 0.0])
    assert env.horizon == 200 and env.goal_radius == pytest.approx(np.pi / 6)
    states = np.array([[0.0, 3.0], [-0.5, 0.0], [np.pi / 6 + 1e-3, 0.0], [-3.0, 0.0]])
    np.testing.assert_allclose(env.goal_distance(states), [0.0, 0.5, np.pi / 6 + 1e-3, 3.0])
    assert in_goal(env, states).tolist() == [True, True, False, False]
    cost = env.cost(np.array([[-3.5, 2.0]]), np.array([[3.0]]))
    assert cost[0] == pytest.approx((2 * np.pi - 3.5) ** 2 + 0.1 * 4.0 + 0.001 * 4.0)


def test_rgb_render_is_the_upscaled_latest_frame() -> None:
    env = gym.make(ENV_ID, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(np.array([1.0], dtype=np.float32))
    image = env.render()
    assert image.shape == (192, 192, 3) and image.dtype == np.uint8
    assert np.array_equal(image[::4, ::4, 1], obs[1])
    assert np.array_equal(image[3::4, 3::4, 0], obs[1])
