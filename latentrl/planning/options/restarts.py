"""Restarts: random control sequences solved alongside the other guesses.

At each solve ``count`` control sequences drawn uniformly in the (finite) control box join
the guesses; the planner solves every guess with iLQR and keeps the cheapest solution per
problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from latentrl.errors import UserError
from latentrl.field_rules import check_fields, checked
from latentrl.planning.mpc import into_box
from latentrl.planning.options.kinds import Resources, Solve
from latentrl.planning.options.registry import OptionSpec, register


@dataclass(frozen=True)
class RestartsConfig:
    """``[plan.options.restarts]``."""

    count: int = checked(2, int, low=1)
    """Extra random control sequences solved at each solve."""

    def __post_init__(self) -> None:
        check_fields(self, "plan.options.restarts")


class Restarts:
    """Uniform random restarts (:class:`~.kinds.Initialiser`); draws from the planner's
    generator."""

    def __init__(self, config: RestartsConfig) -> None:
        self.config = config

    def reset(self) -> None:
        """Nothing to forget."""

    def guesses(self, solve: Solve, guesses: Tensor) -> Tensor:
        """``guesses (G, B, T, m)`` and ``count`` uniform random sequences: ``(G + count, B, T,
        m)``."""
        low, high = solve.low, solve.high
        if not bool(torch.isfinite(low).all() & torch.isfinite(high).all()):
            raise UserError("restarts draw controls uniformly in the box: give finite bounds")
        shape = (self.config.count, solve.z.shape[0], solve.horizon, solve.m)
        unit = torch.rand(*shape, generator=solve.generator)
        return torch.cat([guesses, into_box(unit.to(solve.z), low[:, None], high[:, None])])


def _build(config: RestartsConfig, resources: Resources) -> Restarts:
    return Restarts(config)


register(
    OptionSpec(
        name="restarts",
        kind="initialiser",
        order=2,
        config=RestartsConfig,
        build=_build,
    )
)
