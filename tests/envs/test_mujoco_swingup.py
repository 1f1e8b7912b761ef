"""Tests of the MuJoCo swing-up environments: the latentrl contract, the images and the physics."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import gymnasium as gym
import mujoco
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
from latentrl.envs.mujoco_frames import luminance
from latentrl.envs.mujoco_swingup import (
    CartpoleSwingupEnv,
    CartpoleSwingupGap2Env,
    PendulumSwingupEnv,
)

PENDULUM_ID = "latentrl/PendulumSwingup-v0"
CARTPOLE_ID = "latentrl/CartpoleSwingup-v0"
CARTPOLE_GAP2_ID = "latentrl/CartpoleSwingupGap2-v0"
OBS_SHAPES = {PENDULUM_ID: (2, 48, 48), CARTPOLE_ID: (2, 64, 64), CARTPOLE_GAP2_ID: (2, 64, 64)}
ACTION_BOUNDS = {PENDULUM_ID: 2.0, CARTPOLE_ID: 5.0, CARTPOLE_GAP2_ID: 5.0}
ANGLE = {PENDULUM_ID: 0, CARTPOLE_ID: 1, CARTPOLE_GAP2_ID: 1}  # index of theta in the state


@pytest.fixture(scope="module", params=list(OBS_SHAPES))
def env_id(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def env(env_id: str) -> Iterator[PendulumSwingupEnv | CartpoleSwingupEnv]:
    made = gym.make(env_id, render_mode="rgb_array")
    yield made.unwrapped
    made.close()


@pytest.fixture(scope="module")
def pendulum() -> Iterator[PendulumSwingupEnv]:
    env = PendulumSwingupEnv()
    yield env
    env.close()


@pytest.fixture(scope="module")
def cartpole() -> Iterator[CartpoleSwingupEnv]:
    env = CartpoleSwingupEnv()
    yield env
    env.close()


def body_pole(model: mujoco.MjModel) -> tuple[float, float]:
    """(mass, distance from the hinge to the centre of mass) of the model's pole."""
    pole = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "pole")
    return float(model.body_mass[pole]), float(np.linalg.norm(model.body_ipos[pole]))


def pendulum_inertia(model: mujoco.MjModel) -> float:
    """The pendulum's moment of inertia about its hinge (kg m^2), from MuJoCo's mass matrix."""
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    inertia = np.zeros((1, 1))
    mujoco.mj_fullM(model, data, inertia)
    return float(inertia[0, 0])


def rollout(env, state: np.ndarray, action: float, steps: int) -> np.ndarray:
    """States ``(steps + 1, d)`` under a constant action, through ``next_states``."""
    states = [np.asarray(state, dtype=np.float64)]
    for _ in range(steps):
        states.append(env.next_states(states[-1][None], np.array([[action]]))[0])
    return np.stack(states)


# ---- Gymnasium API and contract ----


@pytest.mark.filterwarnings("ignore:.*symmetric and normalized space")
def test_gymnasium_check_env_passes(env_id: str) -> None:
    made = gym.make(env_id, render_mode="rgb_array")
    check_env(made.unwrapped)
    require_control_env(made)
    made.close()


def test_spaces_follow_the_model(env, env_id: str) -> None:
    bound = ACTION_BOUNDS[env_id]
    assert env.action_space.dtype == np.float32
    np.testing.assert_array_equal(env.action_space.low, [-bound])
    np.testing.assert_array_equal(env.action_space.high, [bound])
    assert env.observation_space.shape == OBS_SHAPES[env_id]
    assert env.observation_space.dtype == np.uint8
    assert env.dt == pytest.approx(0.05)
    assert env.horizon == 200 and env.goal_radius == pytest.approx(np.pi / 6)
    theta = ANGLE[env_id]
    assert env.state_space.low[theta] == -np.pi and env.state_space.high[theta] == np.pi


def test_reset_to_state_reports_it_and_observes_it(env, env_id: str) -> None:
    for state in env.sample_states(5, np.random.default_rng(0)):
        obs, info = env.reset(options={"state": state})
        assert info["state"].dtype == np.float64
        np.testing.assert_array_equal(info["state"], state)
        np.testing.assert_array_equal(obs, env.observe(state[None])[0])
    edge = env.goal_state()
    edge[ANGLE[env_id]] = np.pi  # inside the closed box, reported wrapped
    _, info = env.reset(options={"state": edge})
    assert info["state"][ANGLE[env_id]] == -np.pi


def test_step_observation_is_the_observation_of_its_state(env) -> None:
    env.reset(seed=1)
    env.action_space.seed(1)
    for _ in range(5):
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert not terminated and not truncated
        assert env.is_valid(info["state"][None])[0]
        np.testing.assert_array_equal(obs, env.observe(info["state"][None])[0])


def test_observe_is_deterministic_and_leaves_the_simulation_alone(env) -> None:
    env.reset(seed=2)
    qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
    states = env.sample_states(4, np.random.default_rng(2))
    first = env.observe(states)
    np.testing.assert_array_equal(first, env.observe(states))
    np.testing.assert_array_equal(env.data.qpos, qpos)
    np.testing.assert_array_equal(env.data.qvel, qvel)
    assert first.shape == (4, *env.observation_space.shape)


def test_luminance_keeps_grays_and_weighs_green_most() -> None:
    rgb = np.array([[[0, 0, 0], [153, 153, 153], [255, 255, 255], [255, 0, 0], [0, 255, 0]]])
    np.testing.assert_array_equal(luminance(rgb.astype(np.uint8)), [[0, 153, 255, 77, 149]])


def test_a_batch_looks_like_its_states_one_by_one(env) -> None:
    # 40 states are 80 frames: several sheets of tiles in the offscreen buffer.
    states = env.sample_states(40, np.random.default_rng(8))
    batch = env.observe(states)
    for state, obs in zip(states, batch, strict=True):
        np.testing.assert_array_equal(obs, env.observe(state[None])[0])


def test_frames_differ_exactly_when_the_state_moves(env) -> None:
    still = np.zeros(env.state_space.shape[0])
    moving = still.copy()
    moving[-1] = 4.0  # theta_dot: the pole turns 0.2 rad between the frames
    still_obs, moving_obs = env.observe(np.stack([still, moving]))
    np.testing.assert_array_equal(still_obs[0], still_obs[1])
    np.testing.assert_array_equal(moving_obs[1], still_obs[1])
    assert np.sum(moving_obs[0] != moving_obs[1]) > 10


def test_next_states_equal_stepping_the_env(env) -> None:
    rng = np.random.default_rng(3)
    states = env.sample_states(6, rng)
    states[0] = 0.98 * env.state_space.high  # the cart-pole runs into its rail's end
    bound = env.action_space.high
    actions = rng.uniform(-1.2, 1.2, (6, 1)).astype(np.float32) * bound  # some beyond it
    predicted = env.next_states(states, actions)
    for state, action, expected in zip(states, actions, predicted, strict=True):
        env.reset(options={"state": state})
        qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
        env.next_states(state[None], action[None])  # must not move the env's own simulation
        np.testing.assert_array_equal(env.data.qpos, qpos)
        np.testing.assert_array_equal(env.data.qvel, qvel)
        _, reward, _, _, info = env.step(action)
        np.testing.assert_array_equal(info["state"], expected)
        assert reward == pytest.approx(-env.cost(state[None], action[None])[0], rel=1e-6)


def test_start_states_hang_and_the_goal_looks_different(env, env_id: str) -> None:
    starts = env.sample_start_states(200, np.random.default_rng(4))
    theta = ANGLE[env_id]
    assert np.all(np.abs(wrap_angle(starts[:, theta] - np.pi)) <= 0.2)
    assert np.all(np.delete(starts, theta, axis=1) == 0)
    assert np.all(starts[:, theta] >= -np.pi) and np.all(starts[:, theta] < np.pi)
    _, info = env.reset(seed=4)
    assert abs(wrap_angle(info["state"][theta] - np.pi)) <= 0.2
    assert not np.any(in_goal(env, starts))
    assert in_goal(env, env.goal_state())[0]
    goal_img = goal_observation(env)[1].astype(int)
    start_img = env.observe(starts[:1])[0, 1].astype(int)
    assert np.sum(np.abs(goal_img - start_img) > 100) > 20
    assert goal_img.max() - goal_img.min() >= 200  # a white pole on black


def test_positive_theta_tips_the_pole_to_the_right(env, env_id: str) -> None:
    right, left = np.zeros((2, env.state_space.shape[0]))
    right[ANGLE[env_id]], left[ANGLE[env_id]] = np.pi / 2, -np.pi / 2
    img_right, img_left = env.observe(np.stack([right, left]))[:, 1].astype(int)
    half = img_right.shape[1] // 2
    assert img_right[:, half:].sum() > 2 * img_right[:, :half].sum()
    assert img_left[:, :half].sum() > 2 * img_left[:, half:].sum()


def test_cost_and_goal_distance(env, env_id: str) -> None:
    goal = env.goal_state()
    assert env.cost(goal[None], np.zeros((1, 1)))[0] == 0.0
    assert env.goal_distance(goal[None])[0] == 0.0
    hanging = goal.copy()
    hanging[ANGLE[env_id]] = -np.pi
    assert env.cost(hanging[None], np.zeros((1, 1)))[0] == pytest.approx(np.pi**2)
    assert env.goal_distance(hanging[None])[0] == pytest.approx(np.pi)
    bound = ACTION_BOUNDS[env_id]
    pushed = env.cost(goal[None], np.array([[10 * bound]]))[0]  # clipped to the bound
    assert pushed == pytest.approx(1e-3 * bound**2)


def test_invalid_states_raise(env, env_id: str) -> None:
    cartpole = [[2.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 9.0, 0], [0, 0, 0, 100.0], [0, 0]]
    bad_states = {
        PENDULUM_ID: [[4.0, 0.0], [0.0, 100.0], [np.nan, 0.0], [0.0]],
        CARTPOLE_ID: cartpole,
        CARTPOLE_GAP2_ID: cartpole,
    }
    for state in map(np.array, bad_states[env_id]):
        with pytest.raises(InvalidStateError):
            env.reset(options={"state": state})
        with pytest.raises(InvalidStateError):
            env.observe(state[None])
        with pytest.raises(InvalidStateError):
            env.next_states(state[None], np.zeros((1, 1)))


def test_bad_actions_raise(env) -> None:
    env.reset(seed=5)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(2, dtype=np.float32))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan], dtype=np.float32))


def test_render_gives_an_rgb_view_and_close_is_idempotent(env_id: str) -> None:
    made = gym.make(env_id, render_mode="rgb_array")
    made.reset(seed=6)
    frame = made.render()
    assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8
    assert frame.max() >= 200
    made.close()
    made.close()


# ---- physics ----


def test_pendulum_small_swing_has_the_physical_pendulum_period(pendulum) -> None:
    model = pendulum.model
    mass, lever = body_pole(model)
    g = -model.opt.gravity[2]
    expected = 2 * np.pi * np.sqrt(pendulum_inertia(model) / (mass * g * lever))
    states = rollout(pendulum, [wrap_angle(np.pi + 0.05), 0.0], 0.0, steps=100)
    swing = wrap_angle(states[:, 0] - np.pi)
    up = np.flatnonzero((swing[:-1] < 0) & (swing[1:] >= 0))
    crossings = (up - swing[up] / (swing[up + 1] - swing[up])) * pendulum.dt
    measured = np.mean(np.diff(crossings))
    assert len(up) >= 2
    assert measured == pytest.approx(expected, rel=0.01)
    assert np.max(np.abs(swing[-30:])) == pytest.approx(0.05, rel=0.02)  # no damping


def test_pendulum_conserves_energy_without_torque(pendulum) -> None:
    mass, lever = body_pole(pendulum.model)
    inertia = pendulum_inertia(pendulum.model)
    states = rollout(pendulum, [np.pi / 2, 3.0], 0.0, steps=60)
    g = -pendulum.model.opt.gravity[2]
    energy = 0.5 * inertia * states[:, 1] ** 2 + mass * g * lever * np.cos(states[:, 0])
    assert np.ptp(energy) < 1e-4 * np.abs(energy).max()
    assert np.ptp(states[:, 0]) > 3.0  # a big swing, not a state at rest


def test_pendulum_torque_cannot_hold_the_pole_horizontal(pendulum) -> None:
    horizontal = np.array([np.pi / 2, 0.0])
    nxt = pendulum.next_states(horizontal[None], np.array([[-2.0]]))[0]
    assert nxt[1] > 0  # gravity's torque (4.9 N m) beats the bound (2 N m): it falls anyway


def test_fast_states_stay_valid(pendulum, cartpole) -> None:
    spinning = rollout(pendulum, [-np.pi, 7.9], 2.0, steps=40)
    assert np.all(pendulum.is_valid(spinning)) and np.abs(spinning[:, 1]).max() == 8.0
    crashing = rollout(cartpole, [1.3, 0.0, 5.0, 0.0], 5.0, steps=20)
    assert np.all(cartpole.is_valid(crashing)) and crashing[:, 0].max() == 1.5


def test_cart_accelerates_in_the_direction_of_the_force(cartpole) -> None:
    hanging = np.array([[0.0, -np.pi, 0.0, 0.0]])
    cart_mass = float(cartpole.model.body("cart").mass[0])
    pole_mass, _ = body_pole(cartpole.model)
    for force in (5.0, -5.0):
        nxt = cartpole.next_states(hanging, np.array([[force]]))[0]
        assert np.sign(nxt[0]) == np.sign(force) and np.sign(nxt[2]) == np.sign(force)
        # The swinging pole's share of the cart's inertia lies between none and all of it.
        impulse = abs(force) * cartpole.dt
        assert impulse / (cart_mass + pole_mass) <= abs(nxt[2]) <= impulse / cart_mass


def test_cartpole_conserves_horizontal_momentum_without_force(cartpole) -> None:
    cart_mass = float(cartpole.model.body("cart").mass[0])
    mass, lever = body_pole(cartpole.model)
    states = rollout(cartpole, [0.0, 1.0, 0.0, 0.0], 0.0, steps=30)
    x, theta, x_dot, theta_dot = states.T
    momentum = (cart_mass + mass) * x_dot + mass * lever * theta_dot * np.cos(theta)
    np.testing.assert_allclose(momentum, 0.0, atol=1e-6)
    assert np.abs(x).max() > 0.01 and np.abs(x).max() < 1.0  # moved, but never reached a rail end


# ---- vectorised ----


def test_async_vector_env_with_spawn_steps_two_envs(env, env_id: str) -> None:
    # "module:id" makes the spawned workers import the registration before gym.make.
    make = functools.partial(gym.make, f"latentrl.envs:{env_id}")
    venv = gym.vector.AsyncVectorEnv([make, make], context="spawn")
    shape = (2, *OBS_SHAPES[env_id])
    try:
        obs, info = venv.reset(seed=7)
        assert obs.shape == shape and obs.dtype == np.uint8
        obs, reward, _, _, info = venv.step(np.array([[1.0], [-1.0]], dtype=np.float32))
        assert obs.shape == shape and reward.shape == (2,)
        assert info["state"].shape == (2, env.state_space.shape[0])
    finally:
        venv.close()
    np.testing.assert_array_equal(obs, env.observe(info["state"]))


def test_cartpole_gap2_is_v0_with_its_frames_two_steps_apart(cartpole) -> None:
    gap2 = CartpoleSwingupGap2Env()
    try:
        states = np.array([[0.3, 0.5, 1.2, -2.5], [-1.0, -3.0, -0.4, 4.0], [0.0, 0.1, 0.0, 0.0]])
        twice = states.copy()
        twice[:, 2:] *= 2  # v0's frame 0 at twice the speed lies where gap2's lies
        obs_gap2, obs_twice = gap2.observe(states), cartpole.observe(twice)
        np.testing.assert_array_equal(obs_gap2[:, 0], obs_twice[:, 0])
        np.testing.assert_array_equal(obs_gap2[:, 1], cartpole.observe(states)[:, 1])
        assert not np.array_equal(obs_gap2[:2, 0], cartpole.observe(states)[:2, 0])
        actions = np.array([[5.0], [-2.0], [0.5]])
        np.testing.assert_array_equal(
            gap2.next_states(states, actions), cartpole.next_states(states, actions)
        )
        np.testing.assert_array_equal(gap2.cost(states, actions), cartpole.cost(states, actions))
    finally:
        gap2.close()
