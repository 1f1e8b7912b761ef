"""The goal-cost term: the latent distance to the goal's encoding, fitted to the task's cost.

The planner's cost is the latent distance to the goal, |z - z_g|^2 with z_g the encoding of
the goal image. Nothing in E2C's, PCC's or PC3's objective asks that distance to order states
as the task does; on the cart-pole it does not (``latentrl diagnose``'s cost check). This term
asks it to, from the cost each training transition's true state has under the env's own
``cost(s, u_centre)`` (the reward an agent observes, negated)::

    L_goal = 1/B sum_b ( log(eps + |mu(x_b) - mu(x_g)|^2) - log(eps + kappa (c(s_b) - c(s_g))) )^2

with mu the encoder's mean, kappa = ``loss.goal_cost.scale`` and eps = ``loss.goal_cost.floor``.
The squared distance is asked to equal kappa times the cost, its errors weighed as ratios: off by
a factor of 2 costs as much near the goal as far from it, and the floor keeps the states within
about sqrt(eps) of the goal from dominating. The scale sets how far apart the states near the
goal lie in latent units, against the noise the kind's own objective puts there.
The term reads the true state only through its cost, so a model trained with it still plans
from pixels.

It is added to any kind's objective (``loss.goal_cost.weight`` > 0); the training loop holds
the goal image and the rows' costs (:class:`GoalCostTarget`, made by
:func:`latentrl.train.goal_cost_target`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from latentrl.field_rules import check_fields, checked
from latentrl.losses.term import weight_field


@dataclass(frozen=True)
class GoalCostConfig:
    """``loss.goal_cost``: read by every model kind."""

    weight: float = weight_field(0.0)
    """0: off."""
    scale: float = checked(1.0, float, above=0)
    """kappa: the squared latent distance asked of a state whose cost is c above the goal's is
    kappa c."""
    floor: float = checked(0.01, float, above=0)
    """eps, in squared latent units: added to both sides before their logs."""

    def __post_init__(self) -> None:
        check_fields(self, "loss.goal_cost")


def goal_cost_values(
    z: Tensor, z_goal: Tensor, cost: Tensor, floor: float, scale: float = 1.0
) -> Tensor:
    """The term per row: ``(log(floor + |z - z_goal|^2) - log(floor + scale cost))^2`` for
    latents ``z (B, n)``, the goal's latent ``z_goal (n,)`` and the rows' costs above the goal's
    ``cost (B,)`` (negative costs count as 0) -> ``(B,)``."""
    distance = (z - z_goal).pow(2).sum(-1)
    target = torch.log(floor + scale * cost.clamp(min=0).to(z.dtype))
    return (torch.log(floor + distance) - target).pow(2)


@dataclass(frozen=True)
class GoalCostTarget:
    """What the term needs besides the model: the goal image and every training row's cost."""

    goal_image: Tensor
    """``(1, k, H, W)`` uint8, on the training device."""
    row_costs: Tensor
    """``(N,)`` the training rows' costs above the goal's."""
    config: GoalCostConfig

    def term(self, encode_mean: Callable[[Tensor], Tensor], obs: Tensor, rows: Tensor) -> Tensor:
        """The term's batch mean for observations ``obs (B, k, H, W)`` of training ``rows
        (B,)``; ``encode_mean`` maps images to the encoder's means ``(B, n)``."""
        z = encode_mean(torch.cat([obs, self.goal_image]))
        config = self.config
        values = goal_cost_values(z[:-1], z[-1], self.row_costs[rows], config.floor, config.scale)
        return values.mean()
