"""latentrl's environments, registered with Gymnasium under the ``latentrl/`` namespace.

Installed as ``latentrl.envs``. Registration is cheap: entry points are strings, so MuJoCo
and the renderers are imported only when an environment is made.
"""

from __future__ import annotations

import os

import gymnasium as gym

# Headless machines have no display for MuJoCo's default GLFW backend: use EGL (the GPU driver,
# or Mesa's software renderer on CPU-only machines). Must happen before mujoco is imported.
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")

from latentrl.envs.contract import (
    ControlEnv,
    InvalidStateError,
    check_states,
    goal_observation,
    in_box,
    in_goal,
    require_control_env,
    wrap_angle,
)

__all__ = [
    "ENV_IDS",
    "ControlEnv",
    "InvalidStateError",
    "check_states",
    "goal_observation",
    "in_box",
    "in_goal",
    "require_control_env",
    "wrap_angle",
]

# id -> (entry point, max_episode_steps)
_ENVIRONMENTS: dict[str, tuple[str, int]] = {
    "latentrl/Pendulum-v0": ("latentrl.envs.pendulum:PixelPendulumEnv", 200),
    "latentrl/Planar-v0": ("latentrl.envs.planar:PlanarEnv", 40),
    "latentrl/PendulumSwingup-v0": ("latentrl.envs.mujoco_swingup:PendulumSwingupEnv", 200),
    "latentrl/CartpoleSwingup-v0": ("latentrl.envs.mujoco_swingup:CartpoleSwingupEnv", 200),
}
ENV_IDS: tuple[str, ...] = tuple(_ENVIRONMENTS)


def _register_all() -> None:
    for env_id, (entry_point, steps) in _ENVIRONMENTS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=steps)


_register_all()
