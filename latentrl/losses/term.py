"""What every loss term shares: the check of its weight and the form of its result.

A term is a function ``term(fp, config) -> (values, metrics)`` of the shared
:class:`latentrl.losses.forward.ForwardPass` and its config section: ``values`` ``(B,)`` per
transition, unweighted (the objective weighs and averages them), ``metrics`` detached scalars
keyed ``loss/<name>`` (the batch mean of ``values``).
"""

from __future__ import annotations

import math

from torch import Tensor

from latentrl.errors import UserError

TermResult = tuple[Tensor, dict[str, Tensor]]
"""``(values (B,), metrics)`` of one term."""


def check_weight(term: str, weight: float) -> None:
    """UserError unless ``loss.<term>.weight`` is a finite number >= 0."""
    check_non_negative(f"loss.{term}.weight", weight)


def check_non_negative(key: str, value: float) -> None:
    """UserError unless the setting ``key`` (e.g. ``loss.pcc.lambda_p``) is a finite number
    >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{key} must be a number >= 0, got {value!r}")
    if not 0 <= value < math.inf:
        raise UserError(f"{key} must be finite and >= 0, got {value}")


def term_result(name: str, values: Tensor) -> TermResult:
    """``values (B,)`` and their detached batch mean as the metric ``loss/<name>``."""
    return values, {f"loss/{name}": values.detach().mean()}
