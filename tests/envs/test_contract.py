"""Helpers of the env contract shared by the numpy envs."""

from __future__ import annotations

import numpy as np
import pytest

from latentrl.envs.contract import check_render_mode, sample_near_goal_states
from latentrl.envs.pendulum import PixelPendulumEnv
from latentrl.envs.planar import PlanarEnv
from latentrl.errors import UserError


@pytest.mark.parametrize("env_class", [PixelPendulumEnv, PlanarEnv])
def test_unsupported_render_mode_is_refused_with_the_choices(env_class: type) -> None:
    assert env_class(render_mode="rgb_array").render_mode == "rgb_array"
    assert env_class().render_mode is None
    with pytest.raises(ValueError, match=r"render_mode 'human' is not supported; use one of "):
        env_class(render_mode="human")


def test_check_render_mode_names_the_supported_modes() -> None:
    metadata = {"render_modes": ["rgb_array"]}
    assert check_render_mode(None, metadata) is None
    with pytest.raises(ValueError, match=r"\['rgb_array'\] or None"):
        check_render_mode("ansi", metadata)


def test_near_goal_states_fill_the_box_around_the_goal() -> None:
    env = PixelPendulumEnv()
    box = env.state_space
    states = sample_near_goal_states(env, 500, np.random.default_rng(0), 0.2)
    half = 0.2 * (box.high - box.low) / 2
    assert states.shape == (500, 2)
    assert np.all(np.abs(states - env.goal_state()) <= half + 1e-12)
    assert np.abs(states - env.goal_state()).max(0) == pytest.approx(half, rel=0.05)


def test_near_goal_states_are_redrawn_off_the_obstacles() -> None:
    env = PlanarEnv()
    # a box as large as the state box around planar's goal corner: most of it lies outside
    # the walls or in obstacles
    states = sample_near_goal_states(env, 2_000, np.random.default_rng(0), 1.0)
    assert env.is_valid(states).all()
    assert len(np.unique(states, axis=0)) == 2_000
    box = env.state_space
    assert np.all(np.abs(states - env.goal_state()) <= (box.high - box.low) / 2)
    with pytest.raises(UserError, match="near-goal fraction must lie in"):
        sample_near_goal_states(env, 10, np.random.default_rng(0), 0.0)


def test_near_goal_fractions_per_coordinate_set_each_half_width() -> None:
    env = PixelPendulumEnv()  # (theta, theta_dot); goal upright at rest
    box = env.state_space
    fractions = [0.1, 1.0]
    states = sample_near_goal_states(env, 2_000, np.random.default_rng(0), fractions)
    reach = np.abs(states - env.goal_state()).max(0)
    half = np.array(fractions) * (box.high - box.low) / 2
    assert reach == pytest.approx(half, rel=0.02)
    assert np.all(np.abs(states - env.goal_state()) <= half + 1e-12)
    with pytest.raises(UserError, match=r"one per state coordinate \(2: theta, theta_dot\)"):
        sample_near_goal_states(env, 10, np.random.default_rng(0), [0.1, 0.2, 0.3])
    with pytest.raises(UserError, match="must lie in"):
        sample_near_goal_states(env, 10, np.random.default_rng(0), [0.1, 1.5])
