"""latentrl's environments, registered with Gymnasium under the ``latentrl/`` namespace.

Installed as ``latentrl.envs``. Registration is cheap: entry points are strings, so MuJoCo
and the renderers are imported only when an environment is made.
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

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
    render_frame,
    requested_state,
    require_control_env,
    state_costs,
    upscale_rgb,
    wrap_angle,
)
from latentrl.errors import UserError

__all__ = [
    "ENV_IDS",
    "ControlEnv",
    "InvalidStateError",
    "check_states",
    "goal_observation",
    "in_box",
    "in_goal",
    "make_env",
    "render_frame",
    "requested_state",
    "require_control_env",
    "state_costs",
    "upscale_rgb",
    "wrap_angle",
]

# id -> (entry point, max_episode_steps)
_ENVIRONMENTS: dict[str, tuple[str, int]] = {
    "latentrl/Pendulum-v0": ("latentrl.envs.pendulum:PixelPendulumEnv", 200),
    "latentrl/Planar-v0": ("latentrl.envs.planar:PlanarEnv", 40),
    "latentrl/PendulumSwingup-v0": ("latentrl.envs.mujoco_swingup:PendulumSwingupEnv", 200),
    "latentrl/CartpoleSwingup-v0": ("latentrl.envs.mujoco_swingup:CartpoleSwingupEnv", 200),
    "latentrl/CartpoleSwingupGap2-v0": ("latentrl.envs.mujoco_swingup:CartpoleSwingupGap2Env", 200),
    "latentrl/ArmSwingup-v0": ("latentrl.envs.mujoco_arm:ArmSwingupEnv", 200),
}
ENV_IDS: tuple[str, ...] = tuple(_ENVIRONMENTS)


def _register_all() -> None:
    for env_id, (entry_point, steps) in _ENVIRONMENTS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=steps)


_register_all()


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make(env_id, **kwargs)`` for an env that implements the latentrl contract.

    ``env_id`` may name a plug-in as ``"my_package.my_module:MyEnv-v0"``: Gymnasium imports the
    module (which registers the env) first. Raises UserError for an unknown id or an env that
    does not implement :class:`ControlEnv`.
    """
    checked = False  # whether the kwargs' names passed, so a UserError is the env's own
    try:
        _check_kwargs(env_id, kwargs)
        checked = True
        env = gym.make(env_id, **kwargs)
    except gym.error.UnregisteredEnv as exc:
        known = ", ".join(ENV_IDS)
        raise UserError(
            f"unknown environment {env_id!r} ({exc}). latentrl's own: {known}; a plug-in is "
            "named 'my_module:MyEnv-v0' so that its module is imported and registers it "
            "(see docs/new_environment.md)."
        ) from None
    except ModuleNotFoundError as exc:
        raise UserError(f"cannot import the module of environment {env_id!r}: {exc}") from None
    except gym.error.Error as exc:  # a malformed id, a render mode the env lacks, ...
        raise UserError(f"cannot make environment {env_id!r}: {exc}") from None
    except UserError as exc:
        if not (kwargs and checked):
            raise
        # the env's own check of a kwarg: say which env and which env_kwargs it refused
        raise UserError(f"{env_id} refused the env_kwargs {kwargs}: {exc}") from None
    except (TypeError, ValueError, AttributeError, AssertionError) as exc:
        if not kwargs:
            raise
        # the env's constructor refused a value: one line, with the env's own words
        raise UserError(
            f"{env_id} refused the env_kwargs {kwargs}: {type(exc).__name__}: {exc}"
        ) from None
    try:
        require_control_env(env)
    except TypeError as exc:
        env.close()
        raise UserError(str(exc)) from None
    return env


_MAKE_KWARGS = frozenset({"max_episode_steps", "disable_env_checker"})
"""Keyword arguments ``gymnasium.make`` takes itself rather than passing to the env."""


def env_kwarg_names(env_id: str) -> frozenset[str] | None:
    """The keyword arguments ``gymnasium.make(env_id, ...)`` accepts: those of the env's entry
    point and of ``make`` itself; None when the entry point takes any (``**kwargs``)."""
    module, _, name = env_id.rpartition(":")
    if module:  # a plug-in's module registers its envs on import, as gymnasium.make does
        importlib.import_module(module)
    creator = gym.spec(name).entry_point
    if isinstance(creator, str):
        creator = load_env_creator(creator)
    try:
        parameters = inspect.signature(creator).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: let make decide
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    named = {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return frozenset(named) | _MAKE_KWARGS


def _check_kwargs(env_id: str, kwargs: dict[str, Any]) -> None:
    """UserError naming the keyword arguments ``env_id`` does not take."""
    if not kwargs:
        return
    accepted = env_kwarg_names(env_id)
    unknown = sorted(set(kwargs) - accepted) if accepted is not None else []
    if unknown:
        raise UserError(
            f"{env_id} takes no keyword argument(s) {', '.join(map(repr, unknown))} (env_kwargs "
            f"{kwargs}); it takes: {', '.join(sorted(accepted or ())) or 'none'}"
        )
