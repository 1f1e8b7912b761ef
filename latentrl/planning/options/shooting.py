"""Shooting: a cheap global search before iLQR's local one.

At each solve (or only in an episode's first ``steps`` control steps) ``count`` bang-bang
control sequences are rolled out (no iLQR), and iLQR starts from the cheapest of them and the
guesses so far (the warm start). For costs whose basin a local method does not see from the
warm start: a latent swing-up that must first move away from the goal. With ``beyond`` = f > 0
a problem shoots only while its distance to the goal (:func:`~latentrl.planning.cost.
goal_distance`) exceeds f times its distance at the first step of the episode: near the goal
it keeps its warm start.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from latentrl.errors import UserError
from latentrl.planning.cost import goal_distance
from latentrl.planning.mpc import bang_bang_sequences, cheapest_guess, into_box
from latentrl.planning.options.kinds import Resources, Solve
from latentrl.planning.options.registry import OptionSpec, register


@dataclass(frozen=True)
class ShootingConfig:
    """``[plan.options.shooting]``."""

    count: int = 1024
    """Bang-bang control sequences rolled out at each solve."""
    steps: int | None = None
    """Shoot only at the solves of an episode's first this many control steps (None: at
    every solve)."""
    beyond: float = 0.0
    """Shoot for an episode only while its distance to the goal exceeds this fraction of its
    distance at the first step (0: whatever the distance). Keeps the search for a swing-up
    away from the balancing near the goal."""

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or self.count < 1:
            raise UserError(f"plan.options.shooting.count must be an int >= 1, got {self.count!r}")
        if self.steps is not None and (isinstance(self.steps, bool) or self.steps < 1):
            raise UserError(f"plan.options.shooting.steps must be >= 1 or null, got {self.steps!r}")
        if not self.beyond >= 0:  # NaN fails too
            raise UserError(f"plan.options.shooting.beyond must be >= 0, got {self.beyond}")


class Shooting:
    """Bang-bang shooting (:class:`~.kinds.Initialiser`); draws from the planner's generator."""

    def __init__(self, config: ShootingConfig) -> None:
        self.config = config
        self._start_distance: Tensor | None = None  # (B,) goal distance at the first step

    def reset(self) -> None:
        """Forget the previous episode's start distance."""
        self._start_distance = None

    def guesses(self, solve: Solve, guesses: Tensor) -> Tensor:
        """The cheapest per problem of ``guesses (G, B, T, m)`` and ``count`` fresh bang-bang
        sequences, ``(1, B, T, m)``; a problem within ``beyond`` of the goal keeps the first
        guess. ``guesses`` unchanged after the first ``steps`` control steps."""
        c, z = self.config, solve.z
        if solve.step == 0 and c.beyond > 0:
            self._start_distance = goal_distance(solve.cost, z)
        if c.steps is not None and solve.step >= c.steps:
            return guesses
        low, high = solve.low, solve.high
        if not bool(torch.isfinite(low).all() & torch.isfinite(high).all()):
            raise UserError("shooting draws controls at the box's bounds: give finite bounds")
        far = None  # (B,) bool: the problems that shoot; None: all of them
        if c.beyond > 0 and self._start_distance is not None:
            far = goal_distance(solve.cost, z) > c.beyond * self._start_distance
            if not bool(far.any()):
                return guesses[:1]
        corners = bang_bang_sequences(c.count, solve.horizon, solve.m, solve.generator)
        candidates = into_box(corners.to(z)[:, None], low[:, None], high[:, None])
        every = torch.cat([guesses, candidates]).reshape(-1, solve.horizon, solve.m)
        best = cheapest_guess(solve.dynamics, z, every, solve.cost)
        return (best if far is None else torch.where(far[:, None, None], best, guesses[0]))[None]


def _build(config: ShootingConfig, resources: Resources) -> Shooting:
    return Shooting(config)


register(
    OptionSpec(
        name="shooting",
        kind="initialiser",
        order=1,
        config=ShootingConfig,
        build=_build,
    )
)
