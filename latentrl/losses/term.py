"""What every loss term shares: the check of its weight and the form of its result.

A term is a function ``term(fp, config) -> (values, metrics)`` of the shared
:class:`latentrl.losses.forward.ForwardPass` and its config section: ``values`` ``(B,)`` per
transition, unweighted (the objective weighs and averages them), ``metrics`` detached scalars
keyed ``loss/<name>`` (the batch mean of ``values``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from latentrl.field_rules import checked

TermResult = tuple[Tensor, dict[str, Tensor]]
"""``(values (B,), metrics)`` of one term."""


def weight_field(default: float) -> Any:
    """The ``weight`` field of a term's config section: a finite number >= 0 (0: off, for
    an optional term); checked by :func:`latentrl.field_rules.check_fields`."""
    return checked(default, float, low=0)


def term_result(name: str, values: Tensor) -> TermResult:
    """``values (B,)`` and their detached batch mean as the metric ``loss/<name>``."""
    return values, {f"loss/{name}": values.detach().mean()}
