"""Agents that act in latentrl environments (installed as ``latentrl.agents``).

* :class:`Agent`: the protocol, ``reset(goal_obs, batch_size)`` and ``act(obs, states)``,
  batched over the copies of a vector env;
* :class:`LatentMPCAgent`: iLQR MPC in the latent space of a trained E2C model (pixels only);
* :class:`FrameRoadmap`: subgoals for it through a roadmap of the training frames;
* :class:`OracleMPCAgent`: the same MPC on the true state and dynamics, the ceiling;
* :class:`RandomAgent`: uniform random actions, the floor;
* :mod:`latentrl.agents.registry`: the agents by name, for ``latentrl evaluate``.

The names below are imported on first use, so that the registry (imported by
``latentrl.config``) loads without torch and without the agents that import the config.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Agent": "agent",
    "check_batch": "agent",
    "check_image": "agent",
    "LatentMPCAgent": "latent",
    "ModelDynamics": "latent",
    "check_run_env": "latent",
    "FiniteDifferenceDynamics": "oracle",
    "OracleMPCAgent": "oracle",
    "quadratic_weights": "oracle",
    "true_dynamics": "oracle",
    "RandomAgent": "random_agent",
    "FrameRoadmap": "roadmap",
    "roadmap_of_run": "roadmap",
}

if TYPE_CHECKING:
    from latentrl.agents.agent import Agent, check_batch, check_image
    from latentrl.agents.latent import LatentMPCAgent, ModelDynamics, check_run_env
    from latentrl.agents.oracle import (
        FiniteDifferenceDynamics,
        OracleMPCAgent,
        quadratic_weights,
        true_dynamics,
    )
    from latentrl.agents.random_agent import RandomAgent
    from latentrl.agents.roadmap import FrameRoadmap, roadmap_of_run


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


__all__ = [
    "Agent",
    "FiniteDifferenceDynamics",
    "FrameRoadmap",
    "LatentMPCAgent",
    "ModelDynamics",
    "OracleMPCAgent",
    "RandomAgent",
    "check_batch",
    "check_image",
    "check_run_env",
    "quadratic_weights",
    "roadmap_of_run",
    "true_dynamics",
]
