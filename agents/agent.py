"""The agent protocol: what the evaluation loop needs from anything that acts.

Agents are batched over the ``B`` copies of a vector env. Observations are the env's uint8
image stacks; the true states ride along because the oracle plans on them; an agent that
learns from pixels (the latent MPC agent) must not read them.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from latentrl.errors import UserError


@runtime_checkable
class Agent(Protocol):
    """An agent acting in a batch of ``B`` episodes of one task."""

    def reset(self, goal_obs: np.ndarray, batch_size: int) -> None:
        """Start ``batch_size`` new episodes towards the goal image ``goal_obs`` uint8
        ``(k, H, W)`` (the env's observation of its goal state)."""
        ...

    def act(self, obs: np.ndarray, states: np.ndarray) -> np.ndarray:
        """Actions float32 ``(B, m)`` for observations uint8 ``(B, k, H, W)``.

        ``states (B, d)`` are the true states, for agents that are allowed to see them (the
        oracle); pixel-based agents ignore them.
        """
        ...


def check_image(image: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``image`` as a uint8 array of exactly ``shape``, else UserError naming ``what``."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.shape != tuple(shape):
        raise UserError(
            f"{what} must be uint8 of shape {tuple(shape)}, got {arr.dtype} {arr.shape}; "
            "pass the env's own observation (latentrl.envs.goal_observation for the goal)"
        )
    return arr


def check_batch(obs: np.ndarray, obs_shape: tuple[int, ...], batch: int | None) -> np.ndarray:
    """Observations uint8 ``(B, *obs_shape)`` with ``B`` the batch size given to ``reset``."""
    arr = np.asarray(obs)
    if batch is None:
        batch = arr.shape[0] if arr.ndim > 0 else 1
    expected = (batch, *obs_shape)
    return check_image(arr, expected, "observations")
