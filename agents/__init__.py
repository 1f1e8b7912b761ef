"""Agents that act in latentrl environments (installed as ``latentrl.agents``).

* :class:`Agent`: the protocol, ``reset(goal_obs, batch_size)`` and ``act(obs, states)``,
  batched over the copies of a vector env;
* :class:`LatentMPCAgent`: iLQR MPC in the latent space of a trained E2C model (pixels only);
* :class:`FrameRoadmap`: subgoals for it through a roadmap of the training frames;
* :class:`OracleMPCAgent`: the same MPC on the true state and dynamics, the ceiling;
* :class:`RandomAgent`: uniform random actions, the floor.
"""

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
