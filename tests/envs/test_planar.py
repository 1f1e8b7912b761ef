"""latentrl/Planar-v0: blocked motion, the task, images that are a function of the state."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from latentrl.envs import InvalidStateError, goal_observation, in_goal, require_control_env
from latentrl.envs.planar import (
    AGENT_RADIUS,
    OBSTACLE_CENTERS,
    OBSTACLE_RADIUS,
    PlanarEnv,
    planar_is_free,
    planar_min_steps,
    planar_step,
    render_planar,
)

ENV_ID = "latentrl/Planar-v0"
_EXPECTED_WARNING = "we recommend using a symmetric and normalized space"
CONTACT = OBSTACLE_RADIUS + AGENT_RADIUS  # centre distance at which agent and obstacle touch


@pytest.fixture
def env() -> PlanarEnv:
    return gym.make(ENV_ID).unwrapped


def test_check_env_passes_with_only_the_action_box_advice() -> None:
    made = gym.make(ENV_ID)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(made.unwrapped)
    unexpected = [str(w.message) for w in caught if _EXPECTED_WARNING not in str(w.message)]
    assert unexpected == []
    inner = require_control_env(made)
    assert inner.state_names == ("x", "y") and inner.angle_dims == ()
    assert made.spec.max_episode_steps == 40


def test_free_motion_moves_by_u_exactly(env) -> None:
    states = np.array([[5.0, 5.0], [20.0, 20.0], [35.0, 5.5]])
    actions = np.array([[1.5, -0.7], [-2.0, 2.0], [0.25, 1.0]], dtype=np.float32)
    expected = states + actions.astype(np.float64)
    assert np.array_equal(env.next_states(states, actions), expected)
    # controls are clipped to ±2 px per step
    assert np.array_equal(env.next_states(states[:1], np.array([[9.0, -9.0]])), [[7.0, 3.0]])


def test_walls_stop_the_agent_at_contact(env) -> None:
    states = np.array([[2.5, 20.0], [20.0, 37.5], [37.9, 37.9]])
    actions = np.array([[-2.0, 0.0], [0.0, 2.0], [2.0, 1.0]])
    moved = env.next_states(states, actions)
    np.testing.assert_allclose(moved, [[1.5, 20.0], [20.0, 38.5], [38.5, 38.2]], atol=1e-5)
    assert env.is_valid(moved).all()


def test_obstacles_block_motion_before_contact(env) -> None:
    centre = OBSTACLE_CENTERS[1]  # (20, 13)
    start = centre - [CONTACT + 1.0, 0.0]  # 1 px left of contact
    moved = env.next_states(start[None], np.array([[2.0, 0.0]]))[0]
    assert moved[0] == pytest.approx(centre[0] - CONTACT, abs=1e-5)
    assert moved[0] <= centre[0] - CONTACT and moved[1] == start[1]
    # already touching: a push into the obstacle does not move the agent
    touching = np.array([centre[0], centre[1] + CONTACT])
    assert np.allclose(env.next_states(touching[None], [[0.0, -2.0]]), touching, atol=1e-6)
    # a move that leaves the obstacle is free
    assert np.array_equal(
        env.next_states(touching[None], [[0.0, 2.0]])[0], touching + np.array([0.0, 2.0])
    )


def test_random_moves_never_end_inside_and_stay_on_the_segment(env) -> None:
    rng = np.random.default_rng(0)
    states = env.sample_states(4000, rng)
    actions = rng.uniform(-2, 2, (4000, 2))
    moved = env.next_states(states, actions)
    assert env.is_valid(moved).all()
    step = moved - states
    fraction = np.sum(step * actions, axis=1) / np.sum(actions**2, axis=1)
    assert np.all((fraction >= 0) & (fraction <= 1 + 1e-12))
    np.testing.assert_allclose(step, fraction[:, None] * actions, atol=1e-12)
    # unobstructed segments (all of 200 points along them free) move by u exactly
    along = np.linspace(0, 1, 200)
    path = states[:, None] + along[None, :, None] * actions[:, None]
    clear = planar_is_free(path.reshape(-1, 2)).reshape(4000, 200).all(axis=1)
    assert 0.5 < clear.mean() < 0.99  # both kinds of move are exercised
    assert np.array_equal(moved[clear], states[clear] + actions[clear])
    # blocked moves stop at contact: pushing 1e-3 px further along u collides
    blocked = ~clear & (fraction < 1)
    beyond = (
        moved[blocked] + 1e-3 * actions[blocked] / np.linalg.norm(actions[blocked], axis=1)[:, None]
    )
    assert not env.is_valid(beyond).any()


def test_valid_set_and_invalid_states(env) -> None:
    obstacle = OBSTACLE_CENTERS[0]
    states = np.array(
        [[1.5, 1.5], [1.4, 20.0], obstacle, obstacle + np.array([CONTACT - 0.01, 0.0])]
    )
    assert env.is_valid(states).tolist() == [True, False, False, False]
    with pytest.raises(InvalidStateError, match="outside the valid set of PlanarEnv"):
        env.reset(options={"state": obstacle})
    with pytest.raises(InvalidStateError, match="outside the valid set"):
        env.reset(options={"state": [0.5, 20.0]})
    with pytest.raises(InvalidStateError, match="outside the valid set"):
        env.next_states(obstacle[None], np.zeros((1, 2)))
    _, info = env.reset(options={"state": [4.25, 30.5]})
    assert np.array_equal(info["state"], [4.25, 30.5])


def test_sample_states_are_uniform_over_the_free_set(env) -> None:
    rng = np.random.default_rng(1)
    states = env.sample_states(20000, rng)
    assert states.shape == (20000, 2) and env.is_valid(states).all()
    # the obstacle layout is left-right and top-bottom symmetric, so halves hold half the mass
    assert np.mean(states[:, 0] < 20) == pytest.approx(0.5, abs=0.02)
    assert np.mean(states[:, 1] < 20) == pytest.approx(0.5, abs=0.02)
    # uniform: the density in a free square equals 1 / free area (free area estimated by a grid)
    grid = np.stack(np.meshgrid(*[np.linspace(1.5, 38.5, 400)] * 2), -1).reshape(-1, 2)
    free_area = 37.0**2 * planar_is_free(grid).mean()
    in_square = np.all((states >= [2, 2]) & (states <= [8, 8]), axis=1).mean()
    assert in_square == pytest.approx(36 / free_area, rel=0.15)


def test_task_goal_distance_and_cost(env) -> None:
    goal = env.goal_state()
    assert np.array_equal(goal, [36.0, 36.0]) and env.is_valid(goal[None])[0]
    assert env.horizon == 40 and env.goal_radius == 2.0
    states = np.array([goal, goal - [1.2, 1.5], goal - [0.0, 2.1], [2.0, 2.0]])
    np.testing.assert_allclose(
        env.goal_distance(states), [0.0, np.hypot(1.2, 1.5), 2.1, 34 * 2**0.5]
    )
    assert in_goal(env, states).tolist() == [True, True, False, False]
    cost = env.cost(np.array([[30.0, 32.0]]), np.array([[1.0, -3.0]]))  # u clipped to (1, -2)
    assert cost[0] == pytest.approx(36 + 16 + 0.01 * 5)


def test_min_steps_counts_box_moves_into_the_goal_disc() -> None:
    goal = np.array([36.0, 36.0])
    states = np.array(
        [goal, goal - [4.0, 0.0], goal - [4.01, 0.0], goal - [10.0, 10.0], goal - [7.0, 7.0]]
    )
    # 2 px per axis per step: 4 px leaves 2 after one step (on the rim); 4.01 needs two; the
    # diagonal (10, 10) is 2.8 px out after four steps, so five; (7, 7) is 1.4 px out after three
    assert planar_min_steps(states).tolist() == [0, 1, 2, 5, 3]
    assert planar_min_steps(goal[None] - [6.0, 0.0], goal_radius=1.0).tolist() == [3]


def _greedy_steps_to_goal(starts: np.ndarray, horizon: int = 40) -> np.ndarray:
    """First step at which ``u = clip(goal - s)`` reaches the goal disc (``horizon + 1``: never)."""
    goal = np.array([36.0, 36.0])
    s, first = starts.copy(), np.full(len(starts), horizon + 1)
    first[np.linalg.norm(s - goal, axis=1) <= 2.0] = 0
    for t in range(1, horizon + 1):
        s = planar_step(s, goal - s)
        reached = (np.linalg.norm(s - goal, axis=1) <= 2.0) & (first > horizon)
        first[reached] = t
    return first


def test_min_steps_is_attained_in_free_space_and_never_beaten(env) -> None:
    rng = np.random.default_rng(3)
    # below the lower obstacle row (y > 31.5) a straight path to the goal is clear
    clear = np.column_stack([rng.uniform(1.5, 38.5, 200), rng.uniform(32.0, 38.5, 200)])
    np.testing.assert_array_equal(_greedy_steps_to_goal(clear), planar_min_steps(clear))
    anywhere = env.sample_start_states(500, rng)  # obstacles in the way only add steps
    assert np.all(_greedy_steps_to_goal(anywhere) >= planar_min_steps(anywhere))


def test_step_matches_next_states_and_reward_is_minus_cost() -> None:
    env = gym.make(ENV_ID)
    _, info = env.reset(seed=5)
    rng = np.random.default_rng(5)
    for t in range(40):
        state = info["state"]
        action = rng.uniform(-2, 2, 2).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        assert np.array_equal(
            info["state"], env.unwrapped.next_states(state[None], action[None])[0]
        )
        assert reward == -env.unwrapped.cost(state[None], action[None])[0]
        assert np.array_equal(obs, env.unwrapped.observe(info["state"][None])[0])
        assert not terminated and truncated == (t == 39)


def test_reset_without_options_draws_valid_seeded_starts(env) -> None:
    starts = np.array([env.reset(seed=seed)[1]["state"] for seed in range(30)])
    assert env.is_valid(starts).all()
    assert len(np.unique(starts[:, 0])) == 30
    assert np.array_equal(env.reset(seed=4)[1]["state"], starts[4])


def test_observation_is_a_deterministic_function_of_the_state(env) -> None:
    states = np.array([[10.3, 30.7], [10.3, 30.7], [10.8, 30.7], [36.0, 36.0]])
    frames = env.observe(states)
    assert frames.shape == (4, 1, 40, 40) and frames.dtype == np.uint8
    assert frames.tobytes() == env.observe(states.copy()).tobytes()
    assert np.array_equal(frames[0], frames[1]) and not np.array_equal(frames[0], frames[2])
    # obstacles: mid grey at their centres; elsewhere away from them and the agent: black
    frame = frames[0, 0]
    for x, y in OBSTACLE_CENTERS.astype(int):
        assert frame[y, x] == 128
    assert frame[:8].max() == 0
    # agent: a disc of radius 1.5 centred on the state, 255 in its middle
    window = render_planar(np.array([[4.3, 33.6]]))[0, 30:38, 0:9].astype(float)  # y, x
    assert window.max() == 255 and window[[0, -1]].max() == 0 and window[:, -1].max() == 0
    assert window.sum() == pytest.approx(255 * np.pi * 1.5**2, rel=0.1)
    rows, cols = np.indices(window.shape) + 0.5
    centroid = (cols * window).sum() / window.sum(), 30 + (rows * window).sum() / window.sum()
    assert centroid == pytest.approx((4.3, 33.6), abs=0.1)
    goal = goal_observation(env)[0]
    assert goal[35:37, 35:37].min() == 255


def test_rgb_render_is_the_upscaled_latest_frame() -> None:
    env = gym.make(ENV_ID, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    image = env.render()
    assert image.shape == (160, 160, 3) and image.dtype == np.uint8
    assert np.array_equal(image[1::4, 2::4, 2], obs[0])
