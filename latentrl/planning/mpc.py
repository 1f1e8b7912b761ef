"""Receding-horizon control with the batched iLQR of :mod:`latentrl.planning.ilqr`.

Every ``replan_every`` steps the planner solves a fresh horizon-``T`` problem from the current
state, warm-started with the previous plan shifted by the steps executed since (the tail filled
by repeating the last control, or with zeros). In between it executes the stored plan with its
feedback gains, ``u = clamp(ū_i + K_i (z - z̄_i))``. Optional restarts add random control
sequences to each solve and keep the cheapest solution per problem. Optional shooting draws
bang-bang control sequences at every solve (or only in an episode's first steps, or only for
problems still far from the goal), rolls them out (no iLQR), and starts iLQR from the cheapest
of them and the warm start: a cheap global search for costs whose basin a local method does
not see from the warm start (a latent swing-up that must first move away from the goal).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import Tensor

from latentrl.errors import UserError
from latentrl.planning.cost import batch_cost, goal_distance, total_cost
from latentrl.planning.dynamics import Dynamics, rollout
from latentrl.planning.ilqr import (
    ILQRConfig,
    ILQRResult,
    QuadraticCost,
    control_bounds,
    solve_ilqr,
    wrap_angles,
)

WarmStart = Literal["repeat", "zero", "none"]


class MPCPlanner:
    """Batched receding-horizon iLQR.

    ``cost`` fixes ``n`` and ``m`` (its goal may be replaced by :meth:`reset`); bounds are
    floats, ``(m,)`` or ``(B, m)``. ``warm_start``: ``"repeat"`` / ``"zero"`` shift the last
    plan and fill its tail by repeating the last control / with zeros (clamped into the box);
    ``"none"`` starts every solve from zeros (or the ``u_init`` given to :meth:`reset`).
    ``restarts`` extra uniformly random control sequences in the box (which must then be finite)
    are solved alongside the warm start; the cheapest solution is kept. ``shooting`` bang-bang
    sequences are rolled out at each solve of the first ``shooting_steps`` control steps after
    :meth:`reset` (None: every solve), and iLQR starts from the cheapest of them and the warm
    start. With ``shooting_beyond`` = f > 0 a problem shoots only while its distance to the
    goal (:func:`goal_distance`) exceeds f times its distance at the first solve after
    :meth:`reset`: near the goal it keeps its warm start.
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
        warm_start: WarmStart = "repeat",
        restarts: int = 0,
        seed: int = 0,
        shooting: int = 0,
        shooting_steps: int | None = None,
        shooting_beyond: float = 0.0,
    ) -> None:
        if horizon < 1 or not 1 <= replan_every <= horizon:
            raise UserError(f"need horizon >= 1 and 1 <= replan_every <= horizon, got "
                            f"horizon={horizon}, replan_every={replan_every}")  # fmt: skip
        if warm_start not in ("repeat", "zero", "none"):
            raise UserError(f"warm_start must be 'repeat', 'zero' or 'none', got {warm_start!r}")
        if restarts < 0 or shooting < 0:
            raise UserError(f"restarts and shooting must be >= 0, got {restarts}, {shooting}")
        if shooting_steps is not None and shooting_steps < 1:
            raise UserError(f"shooting_steps must be >= 1 or None, got {shooting_steps}")
        if not shooting_beyond >= 0:
            raise UserError(f"shooting_beyond must be >= 0, got {shooting_beyond}")
        self.dynamics = dynamics
        self.cost = cost
        self.horizon = horizon
        self.u_low, self.u_high = u_low, u_high
        self.config = config or ILQRConfig()
        self.replan_every = replan_every
        self.warm_start = warm_start
        self.restarts = restarts
        self.shooting = shooting
        self.shooting_steps = shooting_steps
        self.shooting_beyond = shooting_beyond
        self.m = cost.R.shape[-1]
        self._generator = torch.Generator().manual_seed(seed)
        self._batch: int | None = None
        self._u_init: Tensor | None = None
        self._plan: ILQRResult | None = None
        self._index = 0  # steps of the stored plan executed so far
        self._steps = 0  # plan calls since reset
        self._start_distance: Tensor | None = None  # (B,) goal distance at the first plan call

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
        self._index = 0
        self._steps = 0
        self._start_distance = None

    def set_goal(self, goal: Tensor) -> None:
        """Move the goal ``(n,)``/``(B, n)`` and keep the plan as the next warm start."""
        self.cost = dataclasses.replace(self.cost, goal=goal)

    @property
    def last_plan(self) -> ILQRResult | None:
        """The latest solution (``u (B, T, m)``, predicted ``z (B, T + 1, n)``, gains, cost)."""
        return self._plan

    @property
    def predicted_states(self) -> Tensor | None:
        """States ``(B, T + 1, n)`` the latest plan predicts from the state it was made at."""
        return None if self._plan is None else self._plan.z

    def plan(self, z: Tensor) -> Tensor:
        """Control ``(B, m)`` for the current states ``z (B, n)``."""
        if z.ndim != 2:
            raise UserError(f"plan expects states of shape (B, n), got {tuple(z.shape)}")
        if self._batch is not None and z.shape[0] != self._batch:
            raise UserError(f"reset with batch_size={self._batch} but got {z.shape[0]} states")
        low, high = control_bounds(self.u_low, self.u_high, z.shape[0], self.m, z)
        if self._plan is not None and z.shape[0] != self._plan.u.shape[0]:
            raise UserError("the batch size changed between plan calls; call reset() first")
        if self._steps == 0 and self.shooting_beyond > 0:
            self._start_distance = goal_distance(self.cost, z)
        if self._plan is None or self._index >= self.replan_every:
            guess = self._first_guess(z, low, high)
            if self._shooting_now():
                guess = self._shoot(z, guess, low, high)
            self._plan = self._solve(z, guess, low, high)
            self._index = 0
        i = self._index
        p = self._plan
        # Wrapped: an env may report θ in [-π, π] while the plan predicts it unwrapped.
        dz = wrap_angles(z - p.z[:, i], self.cost.angle_dims)
        u = p.u[:, i] + (p.K[:, i] @ dz.unsqueeze(-1)).squeeze(-1)
        self._index += 1
        self._steps += 1
        return torch.clamp(u, low, high)

    def _first_guess(self, z: Tensor, low: Tensor, high: Tensor) -> Tensor:
        """Warm start ``(B, T, m)``: the shifted previous plan, or ``u_init`` / zeros."""
        batch, T = z.shape[0], self.horizon
        if self._plan is None or self.warm_start == "none":
            u = self._u_init if self._u_init is not None else z.new_zeros(batch, T, self.m)
        else:
            s = self._index
            kept = self._plan.u[:, s:]
            if self.warm_start == "repeat":
                tail = kept[:, -1:].expand(batch, s, self.m)
            else:
                tail = z.new_zeros(batch, s, self.m)
            u = torch.cat([kept, tail], dim=1)
        return torch.clamp(u.to(z), low.unsqueeze(1), high.unsqueeze(1))

    def _shooting_now(self) -> bool:
        """Shooting is on, and this is one of the first ``shooting_steps`` steps (if set)."""
        limit = self.shooting_steps
        return self.shooting > 0 and (limit is None or self._steps < limit)

    def _shoot(self, z: Tensor, u_init: Tensor, low: Tensor, high: Tensor) -> Tensor:
        """The cheapest per problem of ``u_init`` and ``shooting`` fresh bang-bang sequences
        (``u_init`` for the problems within ``shooting_beyond`` of the goal)."""
        if not bool(torch.isfinite(low).all() & torch.isfinite(high).all()):
            raise UserError("shooting draws controls at the box's bounds: give finite bounds")
        far = None  # (B,) bool: the problems that shoot; None: all of them
        if self.shooting_beyond > 0 and self._start_distance is not None:
            far = goal_distance(self.cost, z) > self.shooting_beyond * self._start_distance
            if not bool(far.any()):
                return u_init
        corners = bang_bang_sequences(self.shooting, self.horizon, self.m, self._generator)
        candidates = into_box(corners.to(z)[:, None], low[:, None], high[:, None])
        guesses = torch.cat([u_init[None], candidates]).reshape(-1, self.horizon, self.m)
        best = cheapest_guess(self.dynamics, z, guesses, self.cost)
        return best if far is None else torch.where(far[:, None, None], best, u_init)

    def _solve(self, z: Tensor, u_init: Tensor, low: Tensor, high: Tensor) -> ILQRResult:
        if self.restarts == 0:
            return solve_ilqr(self.dynamics, z, u_init, self.cost, low, high, self.config)
        if not bool(torch.isfinite(low).all() & torch.isfinite(high).all()):
            raise UserError("restarts draw controls uniformly in the box: give finite bounds")
        batch, reps = z.shape[0], self.restarts + 1
        unit = torch.rand(self.restarts, batch, self.horizon, self.m, generator=self._generator)
        random = into_box(unit.to(z), low[:, None], high[:, None])
        # Row j·B + b is restart j of problem b (the tiling Dynamics expect).
        guesses = torch.cat([u_init, random.reshape(-1, self.horizon, self.m)])
        res = solve_ilqr(
            self.dynamics, z.repeat(reps, 1), guesses, _tile_cost(self.cost, reps, batch),
            low.repeat(reps, 1), high.repeat(reps, 1), self.config,
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


def cheapest_guess(dynamics: Dynamics, z: Tensor, guesses: Tensor, cost: QuadraticCost) -> Tensor:
    """Of ``reps`` guesses per problem, ``guesses (reps · B, T, m)`` (row j·B + b is guess j of
    problem b), the one whose open-loop rollout from ``z (B, n)`` costs least: ``(B, T, m)``."""
    batch, n = z.shape
    reps, (T, m) = guesses.shape[0] // batch, guesses.shape[1:]
    costs = batch_cost(_tile_cost(cost, reps, batch), reps * batch, n, m, z)
    J = total_cost(costs, rollout(dynamics, z.repeat(reps, 1), guesses), guesses)
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
