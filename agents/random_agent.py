"""The baseline that knows nothing: uniformly random actions in the action box."""

from __future__ import annotations

import numpy as np

from latentrl.errors import UserError


class RandomAgent:
    """Actions drawn uniformly from ``[low, high]`` (``(m,)`` each), float32 ``(B, m)``.

    Seeded: every :meth:`reset` restarts the generator from ``seed``, so an evaluation's
    actions depend on the seed only, not on what the agent did before.
    """

    def __init__(self, low: np.ndarray, high: np.ndarray, seed: int = 0) -> None:
        self.low = np.asarray(low, dtype=np.float64).reshape(-1)
        self.high = np.asarray(high, dtype=np.float64).reshape(-1)
        if self.low.shape != self.high.shape or not np.all(np.isfinite(self.low + self.high)):
            raise UserError("RandomAgent needs a finite action box: low and high of shape (m,)")
        if np.any(self.low > self.high):
            raise UserError("RandomAgent: low must be <= high in every dimension")
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._batch: int | None = None

    @classmethod
    def for_env(cls, env: object, seed: int = 0) -> RandomAgent:
        """Uniform in ``env.action_space`` (a Box)."""
        space = env.action_space  # type: ignore[attr-defined]
        return cls(space.low, space.high, seed)

    def reset(self, goal_obs: np.ndarray, batch_size: int) -> None:
        """Restart the generator; the goal is ignored."""
        self._rng = np.random.default_rng(self.seed)
        self._batch = batch_size

    def act(self, obs: np.ndarray, states: np.ndarray) -> np.ndarray:
        """``(B, m)`` float32 uniform actions, ``B = len(obs)``; obs and states are ignored."""
        batch = len(obs)
        if self._batch is not None and batch != self._batch:
            raise UserError(f"reset with batch_size={self._batch} but got {batch} observations")
        size = (batch, self.low.shape[0])
        return self._rng.uniform(self.low, self.high, size=size).astype(np.float32)
