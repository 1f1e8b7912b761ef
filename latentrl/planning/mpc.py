"""Receding-horizon control with the batched iLQR of :mod:`latentrl.planning.ilqr`.

Every ``replan_every`` steps the planner solves a fresh horizon-``T`` problem from the current
state, starting from the control sequences its initialisers give
(:class:`~latentrl.planning.options.Initialiser`: by default the previous plan shifted by the
steps executed since, :mod:`~latentrl.planning.options.warm_start`; shooting and restarts are
others). One guess is solved as it is; several are solved together and the cheapest solution
per problem is kept. In between it executes the stored plan with its feedback gains,
``u = clamp(ū_i + K_i (z - z̄_i))``.

With a speed weight ``W`` each planned step's move also costs ``(z_{t+1} - z_t)ᵀ W (z_{t+1} -
z_t)``: the planner then plans on states augmented with the previous one
(:mod:`latentrl.planning.speed`); its initialisers see the problem without that cost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from latentrl.errors import UserError
from latentrl.planning.cost import BatchCost, batch_cost, total_cost
from latentrl.planning.dynamics import Dynamics, rollout
from latentrl.planning.ilqr import (
    ILQRConfig,
    ILQRResult,
    QuadraticCost,
    control_bounds,
    solve_ilqr,
    wrap_angles,
)
from latentrl.planning.options.kinds import Initialiser, Solve
from latentrl.planning.options.warm_start import WarmStart
from latentrl.planning.speed import (
    PreviousStateDynamics,
    current_part,
    speed_cost,
    with_previous,
)


class MPCPlanner:
    """Batched receding-horizon iLQR.

    ``cost`` fixes ``n`` and ``m`` (its goal may be replaced by :meth:`reset`); bounds are
    floats, ``(m,)`` or ``(B, m)``. ``initialisers`` give the guesses of each solve, in order
    (default: the warm start alone); their random draws share one generator seeded by
    ``seed``, so a seed fixes every draw. ``speed_weight (n, n)``: the weight ``W`` of each
    planned step's move (None: no such cost).
    """

    def __init__(
        self,
        dynamics: Dynamics,
        cost: QuadraticCost,
        horizon: int,
        u_low: Tensor | float | None = None,
        u_high: Tensor | float | None = None,
        config: ILQRConfig | None = None,
        replan_every: int = 1,
        initialisers: Sequence[Initialiser] | None = None,
        seed: int = 0,
        speed_weight: Tensor | None = None,
    ) -> None:
        if speed_weight is not None:
            speed_cost(cost, speed_weight)  # refuses a wrong shape or angles now
        if horizon < 1 or not 1 <= replan_every <= horizon:
            raise UserError(f"need horizon >= 1 and 1 <= replan_every <= horizon, got "
                            f"horizon={horizon}, replan_every={replan_every}")  # fmt: skip
        self.dynamics = dynamics
        self.cost = cost
        self.horizon = horizon
        self.u_low, self.u_high = u_low, u_high
        self.config = config or ILQRConfig()
        self.replan_every = replan_every
        self.initialisers = list(initialisers) if initialisers is not None else [WarmStart()]
        self.m = cost.R.shape[-1]
        self.speed_weight = speed_weight
        self._previous: Tensor | None = None  # the states of the last plan call (speed cost)
        self._generator = torch.Generator().manual_seed(seed)
        self._batch: int | None = None
        self._u_init: Tensor | None = None
        self._plan: ILQRResult | None = None
        self._index = 0  # steps of the stored plan executed so far
        self._steps = 0  # plan calls since reset

    def reset(
        self,
        batch_size: int | None = None,
        goal: Tensor | None = None,
        u_init: Tensor | None = None,
    ) -> None:
        """Forget the plan; optionally set the batch size, a new goal ``(n,)``/``(B, n)`` and
        the first warm start ``u_init (B, T, m)`` (default zeros, clamped into the box)."""
        if goal is not None:
            self.set_goal(goal)
        self._batch = batch_size
        if u_init is not None and u_init.shape[1:] != (self.horizon, self.m):
            raise UserError(f"u_init must be (B, {self.horizon}, {self.m}), got "
                            f"{tuple(u_init.shape)}")  # fmt: skip
        self._u_init = u_init
        self._plan = None
        self._previous = None
        self._index = 0
        self._steps = 0
        for initialiser in self.initialisers:
            initialiser.reset()

    def set_goal(self, goal: Tensor) -> None:
        """Move the goal ``(n,)``/``(B, n)`` and keep the plan as the next warm start."""
        self.cost = dataclasses.replace(self.cost, goal=goal)

    @property
    def last_plan(self) -> ILQRResult | None:
        """The latest solution (``u (B, T, m)``, predicted ``z (B, T + 1, n)``, gains, cost);
        with a speed weight its states and gains are those of the augmented states ``(z,
        z_previous)``, ``2n`` wide."""
        return self._plan

    @property
    def predicted_states(self) -> Tensor | None:
        """States ``(B, T + 1, n)`` the latest plan predicts from the state it was made at."""
        if self._plan is None:
            return None
        return self._plan.z if self.speed_weight is None else current_part(self._plan.z, self._n)

    @property
    def _n(self) -> int:
        return self.cost.Q.shape[-1]

    def _planned(self) -> tuple[Dynamics, QuadraticCost]:
        """The dynamics and cost the solver sees: with a speed weight, on augmented states."""
        if self.speed_weight is None:
            return self.dynamics, self.cost
        return (
            PreviousStateDynamics(self.dynamics, self._n),
            speed_cost(self.cost, self.speed_weight),
        )

    def plan(self, z: Tensor) -> Tensor:
        """Control ``(B, m)`` for the current states ``z (B, n)``."""
        if z.ndim != 2:
            raise UserError(f"plan expects states of shape (B, n), got {tuple(z.shape)}")
        if self._batch is not None and z.shape[0] != self._batch:
            raise UserError(f"reset with batch_size={self._batch} but got {z.shape[0]} states")
        low, high = control_bounds(self.u_low, self.u_high, z.shape[0], self.m, z)
        if self._plan is not None and z.shape[0] != self._plan.u.shape[0]:
            raise UserError("the batch size changed between plan calls; call reset() first")
        x = z
        if self.speed_weight is not None:
            previous = z if self._previous is None else self._previous
            self._previous = z
            x = with_previous(z, previous)
        dynamics, cost = self._planned()
        if self._plan is None or self._index >= self.replan_every:
            self._plan = self._solve(x, self._guesses(z, low, high), low, high, dynamics, cost)
            self._index = 0
        i = self._index
        p = self._plan
        # Wrapped: an env may report θ in [-π, π] while the plan predicts it unwrapped.
        dz = wrap_angles(x - p.z[:, i], cost.angle_dims)
        u = p.u[:, i] + (p.K[:, i] @ dz.unsqueeze(-1)).squeeze(-1)
        self._index += 1
        self._steps += 1
        return torch.clamp(u, low, high)

    def _guesses(self, z: Tensor, low: Tensor, high: Tensor) -> Tensor:
        """The initialisers' guesses ``(G, B, T, m)`` for a solve from ``z (B, n)``: they see
        the problem without the speed cost (a search for a swing-up is not to be charged for
        the swing's speed; iLQR then weighs it)."""
        solve = Solve(
            z, low, high, self.horizon, self.dynamics, self.cost, self._plan, self._index,
            self._steps, self._u_init, self._generator,
        )  # fmt: skip
        guesses = z.new_zeros(0, z.shape[0], self.horizon, self.m)
        for initialiser in self.initialisers:
            guesses = initialiser.guesses(solve, guesses)
        if guesses.shape[0] == 0:
            raise UserError("the planner's initialisers gave no control sequence to start from")
        return guesses

    def _solve(
        self,
        z: Tensor,
        guesses: Tensor,
        low: Tensor,
        high: Tensor,
        dynamics: Dynamics,
        cost: QuadraticCost,
    ) -> ILQRResult:
        """iLQR from each guess ``(G, B, T, m)``; the cheapest solution per problem."""
        reps, batch = guesses.shape[:2]
        if reps == 1:
            return solve_ilqr(dynamics, z, guesses[0], cost, low, high, self.config)
        # Row j·B + b is guess j of problem b (the tiling Dynamics expect).
        res = solve_ilqr(
            dynamics, z.repeat(reps, 1), guesses.reshape(-1, self.horizon, self.m),
            _tile_cost(cost, reps, batch), low.repeat(reps, 1), high.repeat(reps, 1),
            self.config,
        )  # fmt: skip
        best = res.cost.view(reps, batch).argmin(0)
        rows = best * batch + torch.arange(batch, device=z.device)
        return ILQRResult(*(field[rows] for field in res))


def into_box(unit: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """``low + unit · (high - low)``: values in [0, 1] mapped into the box (broadcasting)."""
    return low + unit * (high - low)


def bang_bang_sequences(
    count: int, horizon: int, m: int, generator: torch.Generator, mean_block: float | None = None
) -> Tensor:
    """``count`` piecewise-constant sequences ``(count, T, m)`` of 0 (lower bound) and 1 (upper
    bound) per control: blocks of geometric length, ``mean_block`` steps on average (default
    T / 6), each at an independently drawn corner of the box."""
    mean_block = mean_block or max(horizon / 6, 1.0)
    switches = torch.rand(count, horizon, generator=generator) < 1.0 / mean_block
    block = torch.cumsum(switches.long(), dim=1)  # (count, T): block index of each step
    corners = (torch.rand(count, horizon + 1, m, generator=generator) < 0.5).float()
    return torch.gather(corners, 1, block.unsqueeze(-1).expand(count, horizon, m))


def cheapest_guess(
    dynamics: Dynamics,
    z: Tensor,
    guesses: Tensor,
    cost: QuadraticCost,
    score: Callable[[BatchCost, Tensor, Tensor], Tensor] = total_cost,
) -> Tensor:
    """Of ``reps`` guesses per problem, ``guesses (reps · B, T, m)`` (row j·B + b is guess j of
    problem b), the one whose open-loop rollout from ``z (B, n)`` scores least under ``cost``:
    ``(B, T, m)``. ``score(costs, states, controls)`` is the cost's total by default."""
    batch, n = z.shape
    reps, (T, m) = guesses.shape[0] // batch, guesses.shape[1:]
    costs = batch_cost(_tile_cost(cost, reps, batch), reps * batch, n, m, z)
    J = score(costs, rollout(dynamics, z.repeat(reps, 1), guesses), guesses)
    best = J.view(reps, batch).argmin(0)
    return guesses.view(reps, batch, T, m)[best, torch.arange(batch, device=z.device)]


def _tile_cost(cost: QuadraticCost, reps: int, batch: int) -> QuadraticCost:
    """The cost for ``reps`` stacked copies of a batch: per-problem fields repeated."""

    def tile(x: Tensor, shared_ndim: int) -> Tensor:
        if x.ndim == shared_ndim:
            return x
        return x.repeat(reps, *([1] * shared_ndim))

    goal = cost.goal if cost.goal.ndim == 1 else cost.goal.repeat(reps, 1)
    return dataclasses.replace(
        cost, Q=tile(cost.Q, 2), R=tile(cost.R, 2), Q_f=tile(cost.Q_f, 2), goal=goal
    )
