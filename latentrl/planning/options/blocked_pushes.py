"""Blocked pushes: a push that moved the latent much less than predicted is dropped.

When an episode's latent moved less than ``ratio`` times what the model predicted for the last
action, that action's direction d counts as blocked while the episode stays stuck: the
planner's dynamics see controls without their push into d, ``f(z, u - max(0, dᵀu) d)``, up to
:data:`MAX_BLOCKED` such directions, cleared once it moves as predicted. For contact that a
transition linear in u cannot represent (planar: a push into a wall moves nothing, pulling
away moves freely).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from latentrl.errors import UserError
from latentrl.field_rules import check_fields, checked
from latentrl.planning.dynamics import Dynamics, select_problems
from latentrl.planning.options.kinds import Episode, Resources, Step
from latentrl.planning.options.registry import OptionSpec, register

MAX_BLOCKED = 4
"""Blocked directions an episode keeps while it stays stuck (the latest first)."""


@dataclass(frozen=True)
class BlockedPushesConfig:
    """``[plan.options.blocked_pushes]``."""

    ratio: float = checked(0.5, float, above=0, high=1)
    """A push is blocked when the latent moved less than this fraction of the model's
    predicted move for it."""

    one_sided: bool = checked(False, bool)
    """A contact blocks the pushes into it, never those out of it: a new blocked direction
    drops the kept ones at an obtuse angle to it (with one control, at most one sign is
    blocked). False: up to :data:`MAX_BLOCKED` directions, whichever they are."""

    least_move: float = checked(0.0, float, low=0, high=1)
    """A push is judged only where the model predicted a move of at least this fraction of the
    largest it predicted in the episode so far; a smaller one (a balancing pendulum's) counts as
    followed (0: every push is judged)."""

    def __post_init__(self) -> None:
        check_fields(self, "plan.options.blocked_pushes")


class BlockedDirections:
    """Planner dynamics in which a push along a blocked direction does nothing, as at a contact.

    Per problem up to ``K`` unit directions ``d_k``, ``directions (B, K, m)`` (zero rows: none),
    and ``g(z, u) = f(z, M u)`` with ``M = I - Σ_{k: d_kᵀu > 0} d_k d_kᵀ``: the component of
    ``u`` into a blocked direction is removed, pulling away from it is kept. ``M`` is constant
    on each piece of this map, so ``linearize`` is exact there: ``(A, B M, c)``. ``inner`` is
    shared by all problems or tiled as the planner's batches are (row ``r`` of a call is
    problem ``r mod B``)."""

    def __init__(self, inner: Dynamics, directions: Tensor) -> None:
        self.inner = inner
        self.directions = directions

    def _controls(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """``M u (R, m)`` and ``M (R, m, m)`` for ``u (R, m)``."""
        reps, rest = divmod(u.shape[0], self.directions.shape[0])
        if rest:
            raise UserError(
                f"BlockedDirections holds {self.directions.shape[0]} problems; a batch of "
                f"{u.shape[0]} rows is not a multiple"
            )
        d = self.directions.repeat(reps, 1, 1)  # (R, K, m)
        pushing = ((d @ u.unsqueeze(-1)) > 0).to(u.dtype)  # (R, K, 1)
        eye = torch.eye(u.shape[-1], dtype=u.dtype, device=u.device)
        M = eye - (pushing.unsqueeze(-1) * d.unsqueeze(-1) * d.unsqueeze(-2)).sum(1)
        return (M @ u.unsqueeze(-1)).squeeze(-1), M

    def step(self, z: Tensor, u: Tensor) -> Tensor:
        """``f(z (R, n), M u (R, m)) -> (R, n)``."""
        return self.inner.step(z, self._controls(u)[0])

    def linearize(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(A, B M, c)`` from the inner linearisation at ``(z, M u)``: ``g ≈ A z + B M u + c``."""
        v, M = self._controls(u)
        A, B, c = self.inner.linearize(z, v)
        return A, B @ M, c

    def select(self, index: Tensor) -> BlockedDirections:
        """The directions of the problems at ``index``."""
        inner = select_problems(self.inner, index) or self.inner
        return BlockedDirections(inner, self.directions[index])


def blocked_directions(
    moved: Tensor, predicted: Tensor, u: Tensor, ratio: float, least: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Of the controls ``u (B, m)`` that the model predicted to move the latent by ``predicted
    (B, n)``: unit directions ``(B, m)`` of those whose move ``moved (B, n)`` fell short of
    ``ratio`` times it (zero rows elsewhere), and a mask ``(B,)`` of those that did not.
    ``least (B,)``: a predicted move shorter than it is not judged and counts as followed."""
    size = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
    expected = torch.linalg.vector_norm(predicted, dim=-1, keepdim=True)
    tried = (size > 0) & (expected > 0)
    short = torch.linalg.vector_norm(moved, dim=-1, keepdim=True) < ratio * expected
    if least is not None:
        short = short & (expected >= least[:, None])
    directions = torch.where(tried & short, u / size.clamp(min=torch.finfo(u.dtype).tiny), 0.0)
    return directions, (tried & ~short).squeeze(-1)


def update_blocked(kept: Tensor, new: Tensor, moved: Tensor, one_sided: bool = False) -> Tensor:
    """Blocked directions ``(B, K, m)`` after a step: a problem with a ``new (B, m)`` blocked
    direction puts it first and keeps the others (the oldest drops out; ``one_sided``: those at
    an obtuse angle to it too), one that ``moved (B,)`` as predicted clears them, one that did
    neither (no push tried) keeps ``kept``."""
    stuck = (new != 0).any(-1)[:, None, None]
    if one_sided:
        against = (kept @ new.unsqueeze(-1)) < 0  # (B, K, 1)
        kept = torch.where(against, 0.0, kept)
    kept = torch.where(stuck, torch.cat([new.unsqueeze(1), kept[:, :-1]], dim=1), kept)
    return torch.where(moved[:, None, None], 0.0, kept)


class BlockedPushes:
    """Watches the latent's moves and blocks the pushes that fell short
    (:class:`~.kinds.DynamicsModifier`)."""

    def __init__(self, config: BlockedPushesConfig) -> None:
        self.config = config
        self.blocked: Tensor | None = None
        """Blocked directions ``(B, MAX_BLOCKED, m)`` (None before the first comparison)."""
        self.largest: Tensor | None = None
        """``(B,)``: the largest move the model predicted in the episode so far."""

    def reset(self, episode: Episode) -> None:
        """Unblock everything."""
        self.blocked = None
        self.largest = None

    def modify(self, dynamics: Dynamics, step: Step) -> Dynamics:
        """``dynamics`` without the pushes into the directions blocked after comparing the
        last action's move, ``step.previous_z -> step.z``, with the model's prediction."""
        if step.previous_z is not None and step.last_action is not None:
            previous, u = step.previous_z, step.last_action
            c = self.config
            predicted = step.model.step(previous, u) - previous
            least = None
            if c.least_move > 0:
                size = torch.linalg.vector_norm(predicted, dim=-1)
                self.largest = size if self.largest is None else torch.maximum(self.largest, size)
                least = c.least_move * self.largest
            new, moved = blocked_directions(step.z - previous, predicted, u, c.ratio, least)
            kept = self.blocked
            if kept is None:
                kept = new.new_zeros(new.shape[0], MAX_BLOCKED, new.shape[-1])
            self.blocked = update_blocked(kept, new, moved, c.one_sided)
        return dynamics if self.blocked is None else BlockedDirections(dynamics, self.blocked)


def _build(config: BlockedPushesConfig, resources: Resources) -> BlockedPushes:
    return BlockedPushes(config)


register(
    OptionSpec(
        name="blocked_pushes",
        kind="dynamics",
        order=1,
        config=BlockedPushesConfig,
        build=_build,
    )
)
