"""A cost on each planned step's move: ``(z_{t+1} - z_t)ᵀ W (z_{t+1} - z_t)`` beside the goal cost.

A latent learned from pixels spreads a velocity over its coordinates far more thinly than a
position (on the trained pendulum models 0.05 rad/s moved the encoding 10 to 80 times less
than 0.05 rad), so the goal cost hardly tells a state at rest at the goal from one passing
through it. The move of a step is what the latent shows of a velocity; charging it asks the
plan to arrive slowly and stay.

The move is not a function of one state, so the planner plans on the state augmented with the
previous one, ``x_t = (z_t, z_{t-1})``, under :class:`PreviousStateDynamics`, ``x_{t+1} =
(f(z_t, u_t), z_t)``. Then the cost is quadratic in ``x`` with the goal ``(g, g)``:

    (x - (g, g))ᵀ [[Q + W, -W], [-W, W]] (x - (g, g)) = (z - g)ᵀ Q (z - g) + (z - z')ᵀ W (z - z'),

so the iLQR solves it unchanged. :class:`~latentrl.planning.MPCPlanner` gives the first
state the state of its last control step as the previous one (at an episode's first step, the
state itself): that first move is a constant of the plan, so it changes no control; the
feedback between replans reads it.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from latentrl.errors import UserError
from latentrl.planning.cost import QuadraticCost
from latentrl.planning.dynamics import Dynamics, select_problems


def with_previous(z: Tensor, previous: Tensor) -> Tensor:
    """The augmented states ``(B, 2n)``: ``z (B, n)`` then ``previous (B, n)``."""
    return torch.cat([z, previous], dim=-1)


def current_part(x: Tensor, n: int) -> Tensor:
    """The current states ``(..., n)`` of augmented states ``x (..., 2n)``."""
    return x[..., :n]


def speed_block(Q: Tensor, W: Tensor) -> Tensor:
    """``[[Q + W, -W], [-W, W]]`` for ``Q`` ``(n, n)`` or ``(B, n, n)`` and ``W (n, n)``."""
    W = W.to(Q).expand(Q.shape)
    top = torch.cat([Q + W, -W], dim=-1)
    bottom = torch.cat([-W, W], dim=-1)
    return torch.cat([top, bottom], dim=-2)


def speed_cost(cost: QuadraticCost, W: Tensor) -> QuadraticCost:
    """``cost`` on the augmented state: its goal cost plus ``(z - z')ᵀ W (z - z')`` at every
    state, the final one included, so each of the ``T`` planned moves is charged once.
    A goal ``(n,)`` or ``(B, n)`` becomes ``(g, g)``. Angles are refused: a wrapped angle's
    move is not linear in the augmented state."""
    n = cost.goal.shape[-1]
    if W.shape != (n, n):
        raise UserError(f"the speed weight must be ({n}, {n}), got {tuple(W.shape)}")
    if cost.angle_dims:
        raise UserError(
            f"a speed cost needs states without wrapped angles, got angle_dims {cost.angle_dims}"
        )
    return dataclasses.replace(
        cost,
        Q=speed_block(cost.Q, W),
        Q_f=speed_block(cost.Q_f, W),
        goal=with_previous(cost.goal, cost.goal),
    )


class PreviousStateDynamics:
    """``dynamics`` on states augmented with the previous one: ``(z, z') -> (f(z, u), z)``."""

    def __init__(self, dynamics: Dynamics, n: int) -> None:
        self.dynamics = dynamics
        self.n = n

    def step(self, x: Tensor, u: Tensor) -> Tensor:
        """``x (B, 2n)``, ``u (B, m)`` -> ``(B, 2n)``."""
        z = current_part(x, self.n)
        return with_previous(self.dynamics.step(z, u), z)

    def linearize(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``[[A, 0], [I, 0]]``, ``[[B], [0]]`` and ``(c, 0)`` from the linearisation
        ``(A, B, c)`` of the dynamics at ``(z, u)``."""
        n = self.n
        A, B, c = self.dynamics.linearize(current_part(x, n), u)
        rows = A.shape[0]
        A_aug = A.new_zeros(rows, 2 * n, 2 * n)
        A_aug[:, :n, :n] = A
        A_aug[:, n:, :n] = torch.eye(n, dtype=A.dtype, device=A.device)
        B_aug = torch.cat([B, B.new_zeros(rows, n, B.shape[-1])], dim=-2)
        return A_aug, B_aug, torch.cat([c, c.new_zeros(rows, n)], dim=-1)

    def select(self, index: Tensor) -> PreviousStateDynamics | None:
        """The augmented dynamics of the problems at ``index``, where ``dynamics`` can select."""
        selected = select_problems(self.dynamics, index)
        return None if selected is None else PreviousStateDynamics(selected, self.n)
