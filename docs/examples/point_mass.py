"""A plug-in environment for latentrl, written outside the package: a point mass on a rail.

State (x, v): position in [-1, 1] (walls at both ends stop the mass), velocity in [-2, 2].
Control: a force u in [-1, 1]. Observation: the last 2 frames, 32x32 grayscale, the mass
drawn as a bright disc. Task: from rest near the left wall, reach x = 0.5 and stay.

Importing this module registers ``PointMass-v0``; latentrl commands then take the id
``point_mass:PointMass-v0`` (Gymnasium imports the module named before the colon).
See docs/new_environment.md.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from latentrl.envs import in_box, requested_state, upscale_rgb

ENV_ID = "point_mass:PointMass-v0"
"""The id latentrl commands take: Gymnasium imports ``point_mass`` before making the env."""
DT = 0.1
SIZE = 32
RADIUS = 2.5  # pixels
GOAL_X = 0.5


def point_mass_step(states: np.ndarray, forces: np.ndarray) -> np.ndarray:
    """One semi-implicit Euler step of (x, v) under force u (unit mass); walls stop the mass."""
    x, v = states[:, 0], states[:, 1]
    u = np.clip(np.asarray(forces, dtype=np.float64)[:, 0], -1.0, 1.0)
    v_next = np.clip(v + u * DT, -2.0, 2.0)
    x_next = x + v_next * DT
    hit = np.abs(x_next) > 1.0
    return np.stack([np.clip(x_next, -1.0, 1.0), np.where(hit, 0.0, v_next)], axis=1)


def render_point_mass(x: np.ndarray) -> np.ndarray:
    """Frames (n, 32, 32) uint8 of masses at positions x (n,), x = -1 left, +1 right."""
    columns = np.arange(SIZE) + 0.5
    centre = (x[:, None] + 1.0) / 2.0 * (SIZE - 2 * RADIUS) + RADIUS  # (n, 1) pixels
    dx = columns[None, :] - centre  # (n, W)
    dy = columns - SIZE / 2  # (H,)
    distance = np.sqrt(dx[:, None, :] ** 2 + dy[None, :, None] ** 2)  # (n, H, W)
    return (255 * np.clip(RADIUS + 0.5 - distance, 0.0, 1.0)).astype(np.uint8)


class PointMassEnv(gym.Env):
    """A point mass on a rail, seen from above, implementing the latentrl contract."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    horizon = 50
    goal_radius = 0.05
    state_names = ("x", "v")
    angle_dims = ()

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.state_space = spaces.Box(
            np.array([-1.0, -2.0]), np.array([1.0, 2.0]), dtype=np.float64
        )
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.observation_space = spaces.Box(0, 255, shape=(2, SIZE, SIZE), dtype=np.uint8)
        self._state = np.zeros(2)

    # --- the latentrl contract -------------------------------------------------------------
    def is_valid(self, states: np.ndarray) -> np.ndarray:
        return in_box(self.state_space, states)

    def sample_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.state_space.low, self.state_space.high, size=(n, 2))

    def sample_start_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.uniform(-0.9, -0.7, size=n), np.zeros(n)], axis=1)

    def observe(self, states: np.ndarray) -> np.ndarray:
        # The previous frame is reconstructed from the state: the position update inverted.
        x, v = states[:, 0], states[:, 1]
        frames = [render_point_mass(np.clip(x - v * DT, -1.0, 1.0)), render_point_mass(x)]
        return np.stack(frames, axis=1)

    def next_states(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return point_mass_step(states, actions)

    def goal_state(self) -> np.ndarray:
        return np.array([GOAL_X, 0.0])

    def goal_distance(self, states: np.ndarray) -> np.ndarray:
        return np.abs(states[:, 0] - GOAL_X)

    def cost(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return (states[:, 0] - GOAL_X) ** 2 + 0.1 * states[:, 1] ** 2 + 0.01 * actions[:, 0] ** 2

    # --- the Gymnasium API -----------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        state = requested_state(self, options)  # checked; None if no state was asked for
        self._state = state if state is not None else self.sample_start_states(1, self.np_random)[0]
        return self.observe(self._state[None])[0], {"state": self._state.copy()}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64).reshape(1, 1)
        cost = float(self.cost(self._state[None], action)[0])
        self._state = point_mass_step(self._state[None], action)[0]
        obs = self.observe(self._state[None])[0]
        return obs, -cost, False, False, {"state": self._state.copy()}

    def render(self) -> np.ndarray:
        return upscale_rgb(self.observe(self._state[None])[0, -1])


if "PointMass-v0" not in gym.registry:
    gym.register(
        id="PointMass-v0", entry_point=PointMassEnv, max_episode_steps=PointMassEnv.horizon
    )
