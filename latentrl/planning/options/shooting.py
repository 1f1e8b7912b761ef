"""Shooting: a cheap global search before iLQR's local one.

At each solve (or only in an episode's first ``steps`` control steps) ``count`` bang-bang
control sequences are rolled out (no iLQR), and iLQR starts from the cheapest of them and the
guesses so far (the warm start). For costs whose basin a local method does not see from the
warm start: a latent swing-up that must first move away from the goal. With ``beyond`` = f > 0
a problem shoots only while its distance to the goal (:func:`~latentrl.planning.cost.
goal_distance`) exceeds f times its distance at the first step of the episode: near the goal
it keeps its warm start. With ``lookahead`` = L > T the candidates are rolled out and scored
over L steps and iLQR starts from the winner's first T: a search that sees further than the plan
it seeds (a swing-up whose climb takes longer than iLQR's horizon).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from latentrl.errors import UserError
from latentrl.field_rules import check_fields, checked
from latentrl.planning.cost import QuadraticCost, approach_cost, goal_distance
from latentrl.planning.mpc import bang_bang_sequences, cheapest_guess, into_box
from latentrl.planning.options.kinds import Resources, Solve
from latentrl.planning.options.registry import OptionSpec, register


@dataclass(frozen=True)
class ShootingConfig:
    """``[plan.options.shooting]``."""

    count: int = checked(1024, int, low=1)
    """Bang-bang control sequences rolled out at each solve."""
    steps: int | None = checked(None, int, low=1, optional=True)
    """Shoot only at the solves of an episode's first this many control steps (None: at
    every solve)."""
    beyond: float = checked(0.0, float, low=0)
    """Shoot for an episode only while its distance to the goal exceeds this fraction of its
    distance at the first step (0: whatever the distance). Keeps the search for a swing-up
    away from the balancing near the goal."""
    terminal_weight: float | None = checked(None, float, low=0, optional=True)
    """Score the candidates with a terminal weight of this many running steps (Q_f =
    terminal_weight · Q) instead of the planner's own Q_f (None). A search that looks for a
    way out of the start (pumping a swing-up) can weigh the horizon's end more than the plan
    iLQR then refines from the winner."""

    lookahead: int | None = checked(None, int, low=1, optional=True)
    """Roll the candidates out and score them over this many steps (at least the planner's
    horizon; None: the horizon), then keep their first horizon steps. The guesses so far are
    extended with zero controls (clamped into the box) to be scored alike."""

    score: Literal["cost", "approach"] = checked("cost", str, choices=("cost", "approach"))
    """How candidates are ranked: ``cost``, the planner's cost (with ``terminal_weight``);
    ``approach``, each step charged the closest the candidate has come to the goal so far
    (:func:`~latentrl.planning.cost.approach_cost`), so one that passes the goal and leaves
    it is not blamed for leaving (``terminal_weight`` unused)."""

    def __post_init__(self) -> None:
        check_fields(self, "plan.options.shooting")
        if self.score == "approach" and self.terminal_weight is not None:
            raise UserError(
                "plan.options.shooting.terminal_weight weighs the horizon's end of score = "
                "'cost'; score = 'approach' does not read it: set it to null "
                "(--set plan.options.shooting.terminal_weight=null)"
            )


class Shooting:
    """Bang-bang shooting (:class:`~.kinds.Initialiser`); draws from the planner's generator."""

    def __init__(self, config: ShootingConfig) -> None:
        self.config = config
        self._start_distance: Tensor | None = None  # (B,) goal distance at the first step

    def reset(self) -> None:
        """Forget the previous episode's start distance."""
        self._start_distance = None

    def guesses(self, solve: Solve, guesses: Tensor) -> Tensor:
        """The best per problem of ``guesses (G, B, T, m)`` and ``count`` fresh bang-bang
        sequences by the score, ``(1, B, T, m)``; a problem within ``beyond`` of the goal keeps
        the first guess. ``guesses`` unchanged after the first ``steps`` control steps."""
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
        length = search_length(c.lookahead, solve.horizon)
        corners = bang_bang_sequences(c.count, length, solve.m, solve.generator)
        candidates = into_box(corners.to(z)[:, None], low[:, None], high[:, None])
        every = torch.cat([extend_with_zeros(guesses, length, low, high), candidates])
        every = every.reshape(-1, length, solve.m)
        if c.score == "approach":
            best = cheapest_guess(solve.dynamics, z, every, solve.cost, approach_cost)
        else:
            scoring = scoring_cost(solve.cost, c.terminal_weight)
            best = cheapest_guess(solve.dynamics, z, every, scoring)
        best = best[:, : solve.horizon]
        return (best if far is None else torch.where(far[:, None, None], best, guesses[0]))[None]


def search_length(lookahead: int | None, horizon: int) -> int:
    """Steps the candidates are rolled out over: ``lookahead``, or ``horizon`` for None.
    Raises UserError for a lookahead shorter than the horizon."""
    if lookahead is None:
        return horizon
    if lookahead < horizon:
        raise UserError(
            f"plan.options.shooting.lookahead={lookahead} is shorter than plan.horizon="
            f"{horizon}: the search must cover the plan it seeds; set it to at least {horizon} "
            "or to null"
        )
    return lookahead


def extend_with_zeros(guesses: Tensor, length: int, low: Tensor, high: Tensor) -> Tensor:
    """``guesses (G, B, T, m)`` continued to ``length`` steps with zero controls clamped into the
    box ``low``, ``high (B, m)``."""
    G, B, T, m = guesses.shape
    if length == T:
        return guesses
    rest = torch.zeros(G, B, length - T, m, dtype=guesses.dtype, device=guesses.device)
    rest = rest.clamp(low[None, :, None], high[None, :, None])
    return torch.cat([guesses, rest], dim=2)


def scoring_cost(cost: QuadraticCost, terminal_weight: float | None) -> QuadraticCost:
    """``cost`` with ``Q_f = terminal_weight · Q`` (``cost`` itself for None)."""
    if terminal_weight is None:
        return cost
    return dataclasses.replace(cost, Q_f=terminal_weight * cost.Q)


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
