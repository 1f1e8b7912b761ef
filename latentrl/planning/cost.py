"""The quadratic goal-reaching cost the planners minimise, and its evaluation on trajectories.

    J = Σ_{t<T} (z_t - g)ᵀ Q (z_t - g) + u_tᵀ R u_t  +  (z_T - g)ᵀ Q_f (z_T - g)

Angles: a state dimension listed in ``QuadraticCost.angle_dims`` enters the cost through
``wrap(z_i - g_i)`` in [-π, π), so the dynamics may keep the angle unwrapped and the goal is
always the nearest copy of ``g_i``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from latentrl.errors import UserError


@dataclass(frozen=True)
class QuadraticCost:
    """Quadratic cost towards a goal; matrices shared ``(n, n)``/``(m, m)`` or per problem
    ``(B, n, n)``/``(B, m, m)``, goal ``(n,)`` or ``(B, n)``. Q, Q_f PSD; R PD."""

    Q: Tensor
    R: Tensor
    Q_f: Tensor
    goal: Tensor
    angle_dims: tuple[int, ...] = ()
    """State dimensions that are angles (radians): their deviation is wrapped to [-π, π)."""


class BatchCost(NamedTuple):
    """A QuadraticCost checked and broadcast to the batch: ``(B, ...)`` in the solve's dtype
    (Q, R, Q_f symmetrised)."""

    Q: Tensor  # (B, n, n)
    R: Tensor  # (B, m, m)
    Q_f: Tensor  # (B, n, n)
    goal: Tensor  # (B, n)
    angles: Tensor | None  # bool (n,), None when no dimension is an angle

    def rows(self, index: Tensor) -> BatchCost:
        """The problems at ``index`` (a 1-D index tensor), in its order."""
        return BatchCost(
            self.Q[index], self.R[index], self.Q_f[index], self.goal[index], self.angles
        )


def batch_cost(cost: QuadraticCost, batch: int, n: int, m: int, like: Tensor) -> BatchCost:
    """Check the shapes of ``cost`` against ``B, n, m`` and broadcast it to the batch, in the
    dtype and on the device of ``like``. Raises UserError on a shape mismatch."""

    def matrix(name: str, M: Tensor, d: int) -> Tensor:
        if M.shape not in ((d, d), (batch, d, d)):
            raise UserError(
                f"cost.{name} must be ({d}, {d}) or ({batch}, {d}, {d}), got {tuple(M.shape)}"
            )
        M = M.to(like)
        return (0.5 * (M + M.transpose(-1, -2))).expand(batch, d, d)

    goal = cost.goal
    if goal.shape not in ((n,), (batch, n)):
        raise UserError(f"cost.goal must be ({n},) or ({batch}, {n}), got {tuple(goal.shape)}")
    angles = None
    if cost.angle_dims:
        if any(not 0 <= i < n for i in cost.angle_dims):
            raise UserError(f"cost.angle_dims {cost.angle_dims} out of range for n = {n}")
        angles = torch.zeros(n, dtype=torch.bool, device=like.device)
        angles[list(cost.angle_dims)] = True
    return BatchCost(
        matrix("Q", cost.Q, n),
        matrix("R", cost.R, m),
        matrix("Q_f", cost.Q_f, n),
        goal.to(like).expand(batch, n),
        angles,
    )


def wrap_angles(dz: Tensor, angle_dims: tuple[int, ...] | Tensor) -> Tensor:
    """State differences ``dz (..., n)`` with the angle entries (indices, or a bool mask
    ``(n,)``) wrapped into [-π, π)."""
    if not isinstance(angle_dims, Tensor):
        if not angle_dims:
            return dz
        mask = torch.zeros(dz.shape[-1], dtype=torch.bool, device=dz.device)
        mask[list(angle_dims)] = True
        angle_dims = mask
    return torch.where(angle_dims, torch.remainder(dz + math.pi, 2 * math.pi) - math.pi, dz)


def residual(c: BatchCost, z: Tensor) -> Tensor:
    """``z - goal`` with angles wrapped, for ``z (..., B, T, n)``."""
    r = z - c.goal.unsqueeze(-2)
    return r if c.angles is None else wrap_angles(r, c.angles)


def total_cost(c: BatchCost, z: Tensor, u: Tensor) -> Tensor:
    """Cost of trajectories ``z (..., B, T + 1, n)``, ``u (..., B, T, m)`` -> ``(..., B)``."""
    r = residual(c, z)
    r_run, r_final = r[..., :-1, :], r[..., -1:, :]
    # (T, n) @ (n, n) per problem; leading dims broadcast against the batch of matrices.
    run = ((r_run @ c.Q) * r_run).sum((-1, -2))
    ctrl = ((u @ c.R) * u).sum((-1, -2))
    final = ((r_final @ c.Q_f) * r_final).sum((-1, -2))
    return run + ctrl + final


def approach_cost(c: BatchCost, z: Tensor, u: Tensor) -> Tensor:
    """Cost of trajectories ``z (..., B, T + 1, n)``, ``u (..., B, T, m)`` that charges each step
    the closest the trajectory has come to the goal so far, ``Σ_{t=1..T} min_{s≤t} (z_s - g)ᵀ Q
    (z_s - g)``, plus the controls' cost -> ``(..., B)``. Leaving the goal after passing it costs
    nothing more: a score for a search whose winner a local method then refines."""
    r = residual(c, z)
    distance = ((r @ c.Q) * r).sum(-1)  # (..., B, T + 1)
    closest = torch.cummin(distance, dim=-1).values[..., 1:]
    ctrl = ((u @ c.R) * u).sum((-1, -2))
    return closest.sum(-1) + ctrl


def goal_distance(cost: QuadraticCost, z: Tensor) -> Tensor:
    """Distance ``sqrt((z - g)ᵀ Q (z - g))`` of states ``z (B, n)`` to the goal (angles
    wrapped), ``(B,)``: the running cost's measure of how far a state is."""
    c = batch_cost(cost, z.shape[0], z.shape[-1], cost.R.shape[-1], z)
    r = residual(c, z.unsqueeze(-2)).squeeze(-2)
    return (r.unsqueeze(-2) @ c.Q @ r.unsqueeze(-1)).reshape(-1).clamp_min(0).sqrt()


def trajectory_cost(cost: QuadraticCost, z: Tensor, u: Tensor) -> Tensor:
    """Total cost of ``z (B, T + 1, n)`` and ``u (B, T, m)`` under ``cost``, ``(B,)``."""
    c = batch_cost(cost, z.shape[0], z.shape[-1], u.shape[-1], z)
    return total_cost(c, z, u.to(z))
