"""The observation kwargs ``frames`` and ``frame_gap`` of the pixel envs (Pendulum-v0 and the
MuJoCo swing-ups): frame j of k shows the state ``(k-1-j) * frame_gap`` control steps back."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from latentrl.env_check import check_environment
from latentrl.envs import make_env
from latentrl.envs.mujoco_frames import luminance
from latentrl.envs.mujoco_swingup import CartpoleSwingupEnv, CartpoleSwingupGap2Env
from latentrl.envs.pendulum import DT, PixelPendulumEnv, observe_pendulum, render_pendulum
from latentrl.errors import UserError

PENDULUM_ID = "latentrl/Pendulum-v0"
CARTPOLE_ID = "latentrl/CartpoleSwingup-v0"
MUJOCO_PENDULUM_ID = "latentrl/PendulumSwingup-v0"


def pendulum_states(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-np.pi, np.pi, n), rng.uniform(-8, 8, n)], axis=1)


def cartpole_states(n: int, seed: int = 0) -> np.ndarray:
    """Valid cart-pole states that move, away from the rail's ends."""
    rng = np.random.default_rng(seed)
    return np.stack(
        [
            rng.uniform(-0.8, 0.8, n),
            rng.uniform(-np.pi, np.pi, n),
            rng.uniform(-2, 2, n),
            rng.uniform(-6, 6, n),
        ],
        axis=1,
    )


# ---- Pendulum-v0: a pure NumPy renderer, so frames compare against direct renders ----


def test_pendulum_default_is_the_pair_it_always_was() -> None:
    states = pendulum_states(300)
    env = PixelPendulumEnv()
    theta, thdot = states[:, 0], states[:, 1]
    today = np.stack([render_pendulum(theta - thdot * DT), render_pendulum(theta)], axis=1)
    assert env.observation_space.shape == (2, 48, 48)
    np.testing.assert_array_equal(env.observe(states), today)
    np.testing.assert_array_equal(observe_pendulum(states), today)


@pytest.mark.parametrize(("frames", "gap"), [(1, 1), (3, 1), (4, 2)])
def test_pendulum_frame_j_renders_the_angle_k_minus_1_minus_j_gaps_back(
    frames: int, gap: int
) -> None:
    states = pendulum_states(50, seed=frames)
    env = PixelPendulumEnv(frames=frames, frame_gap=gap, dt=0.03)
    obs = env.observe(states)
    assert obs.shape == (50, frames, 48, 48) and env.observation_space.shape == (frames, 48, 48)
    for j in range(frames):
        back = (frames - 1 - j) * gap
        direct = render_pendulum(states[:, 0] - back * 0.03 * states[:, 1])
        # the env multiplies (back * dt) first: at most a rounding apart, which moves no pixel
        # by more than one level
        assert np.abs(obs[:, j].astype(int) - direct).max() <= 1
        assert np.mean(obs[:, j] == direct) > 0.999
    np.testing.assert_array_equal(obs[:, -1], render_pendulum(states[:, 0]))


def test_pendulum_reset_and_step_give_k_frames() -> None:
    env = gym.make(PENDULUM_ID, frames=3)
    try:
        obs, info = env.reset(options={"state": np.array([0.5, 2.0])})
        assert obs.shape == (3, 48, 48)
        np.testing.assert_array_equal(obs, env.unwrapped.observe(info["state"][None])[0])
        obs, _, _, _, info = env.step(np.array([1.0], dtype=np.float32))
        np.testing.assert_array_equal(obs, env.unwrapped.observe(info["state"][None])[0])
        # the three frames differ where the pole moves
        assert not np.array_equal(obs[0], obs[1]) and not np.array_equal(obs[1], obs[2])
    finally:
        env.close()


# ---- MuJoCo: frame j equals a render of the earlier configuration in the same tile ----


@pytest.fixture(scope="module")
def cartpole3():
    env = CartpoleSwingupEnv(frames=3)
    yield env
    env.close()


def test_cartpole_default_is_the_pair_it_always_was() -> None:
    env = CartpoleSwingupEnv()
    try:
        assert env.observation_space.shape == (2, 64, 64) and env.frame_gap == 1
        states = cartpole_states(6)
        qpos, qvel = states[:, :2], states[:, 2:]
        today = env._frames.render(np.stack([qpos - qvel * (1 * env.dt), qpos], axis=1))
        obs = env.observe(states)
        np.testing.assert_array_equal(obs, luminance(today))
    finally:
        env.close()


def at_rest(states: np.ndarray, back: float) -> np.ndarray:
    """The configurations ``back`` seconds earlier (first order), at rest: ``(n, 4)``."""
    earlier = np.zeros_like(states)
    earlier[:, :2] = states[:, :2] - back * states[:, 2:]
    return earlier


def test_cartpole_frame_j_shows_the_configuration_k_minus_1_minus_j_steps_back(
    cartpole3,
) -> None:
    states = cartpole_states(5, seed=1)
    states[:, 0] = np.clip(states[:, 0], -0.6, 0.6)  # earlier carts stay on the rail
    obs = cartpole3.observe(states)
    assert obs.shape == (5, 3, 64, 64)
    for j in range(3):
        back = (2 - j) * cartpole3.dt
        # a state at rest shows its configuration in every frame, in the same tile as frame j
        direct = cartpole3.observe(at_rest(states, back))[:, j]
        np.testing.assert_array_equal(obs[:, j], direct)
    assert not np.array_equal(obs[:, 0], obs[:, 1]) and not np.array_equal(obs[:, 1], obs[:, 2])


def test_frame_gap_kwarg_matches_gap2_and_more_frames_than_one_read_holds() -> None:
    states = cartpole_states(3, seed=2)
    states[:, 0] = np.clip(states[:, 0], -0.3, 0.3)
    gap2, kwarg = CartpoleSwingupGap2Env(), CartpoleSwingupEnv(frame_gap=2)
    six = CartpoleSwingupEnv(frames=6, frame_gap=1, image_size=48)  # 5 tiles fit: two reads
    try:
        assert gap2.frame_gap == 2 and gap2.observation_space.shape == (2, 64, 64)
        np.testing.assert_array_equal(gap2.observe(states), kwarg.observe(states))
        obs = six.observe(states)
        assert obs.shape == (3, 6, 48, 48)
        for j in range(6):
            direct = six.observe(at_rest(states, (5 - j) * six.dt))[:, j]
            np.testing.assert_array_equal(obs[:, j], direct)
        # frame 5 sits in the second read's first tile, as frame 0 in the first read
        still = at_rest(states, 0.0)
        np.testing.assert_array_equal(six.observe(still)[:, 5], six.observe(still)[:, 0])
    finally:
        for env in (gap2, kwarg, six):
            env.close()


# ---- contract checks and bad values ----


@pytest.mark.filterwarnings("ignore:.*symmetric and normalized space")
@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        (PENDULUM_ID, {"frames": 1}),
        (PENDULUM_ID, {"frames": 4, "frame_gap": 2}),
        (CARTPOLE_ID, {"frames": 3}),
        (MUJOCO_PENDULUM_ID, {"frames": 1}),
    ],
)
def test_check_env_passes_with_other_frame_counts(env_id: str, kwargs: dict) -> None:
    made = gym.make(env_id, render_mode="rgb_array", **kwargs)
    try:
        check_env(made.unwrapped)
    finally:
        made.close()
    results = check_environment(env_id, **kwargs)
    assert [r.name for r in results if not r.passed] == []


@pytest.mark.parametrize("env_id", [PENDULUM_ID, CARTPOLE_ID])
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frames": 0}, r"frames must be an int >= 1 \(stacked frames in an observation\), got 0"),
        ({"frames": 2.0}, "frames must be an int >= 1"),
        ({"frames": True}, "frames must be an int >= 1"),
        ({"frame_gap": -1}, r"frame_gap must be an int >= 1 \(control steps between frames\)"),
    ],
)
def test_bad_frame_kwargs_stop_make_env_with_one_line(
    env_id: str, kwargs: dict, message: str
) -> None:
    with pytest.raises(UserError, match=message) as refused:
        make_env(env_id, **kwargs)
    assert "\n" not in str(refused.value)
