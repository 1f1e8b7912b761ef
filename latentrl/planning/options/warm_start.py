"""Warm start: each solve starts from the previous plan, shifted by the steps executed since.

The tail the shift opens is filled by repeating the last control (``fill = "repeat"``) or
with zeros (``"zero"``), clamped into the control box; ``"none"`` starts every solve from
zeros (or the ``u_init`` given to the planner's reset). On by default: a planner without a
configured ``plan.options.warm_start`` repeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from latentrl.field_rules import check_fields, checked
from latentrl.planning.options.kinds import Resources, Solve
from latentrl.planning.options.registry import OptionSpec, register

Fill = Literal["repeat", "zero", "none"]


@dataclass(frozen=True)
class WarmStartConfig:
    """``[plan.options.warm_start]``."""

    fill: Fill = checked("repeat", str, choices=("repeat", "zero", "none"))
    """How the shifted plan's tail is filled: "repeat" the last control, "zero", or "none"
    (no warm start: zeros)."""

    def __post_init__(self) -> None:
        check_fields(self, "plan.options.warm_start")


class WarmStart:
    """The shifted previous plan as the first guess (:class:`~.kinds.Initialiser`)."""

    def __init__(self, config: WarmStartConfig | None = None) -> None:
        self.config = config or WarmStartConfig()

    def reset(self) -> None:
        """Nothing to forget: the planner holds the previous plan."""

    def guesses(self, solve: Solve, guesses: Tensor) -> Tensor:
        """``guesses (G, B, T, m)`` with the warm start ``(B, T, m)`` appended."""
        z, previous, batch, T, m = solve.z, solve.previous, solve.z.shape[0], solve.horizon, solve.m
        if previous is None or self.config.fill == "none":
            u = solve.u_init if solve.u_init is not None else z.new_zeros(batch, T, m)
        else:
            s = solve.executed
            kept = previous.u[:, s:]
            if self.config.fill == "repeat":
                tail = kept[:, -1:].expand(batch, s, m)
            else:
                tail = z.new_zeros(batch, s, m)
            u = torch.cat([kept, tail], dim=1)
        u = torch.clamp(u.to(z), solve.low.unsqueeze(1), solve.high.unsqueeze(1))
        return torch.cat([guesses, u[None]])


def _build(config: WarmStartConfig, resources: Resources) -> WarmStart:
    return WarmStart(config)


register(
    OptionSpec(
        name="warm_start",
        kind="initialiser",
        order=0,
        config=WarmStartConfig,
        build=_build,
        default_on=True,
    )
)
