"""What a config field allows, declared beside the field and checked by one function.

A config dataclass declares a field's allowed values with :func:`checked`::

    @dataclass(frozen=True)
    class TrainConfig:
        epochs: int = checked(100, int, low=1)
        learning_rate: float = checked(1e-3, float, above=0)

        def __post_init__(self) -> None:
            check_fields(self, "train")

:func:`check_fields` reads each field's :class:`Allowed` from its metadata and raises one
:class:`~latentrl.errors.UserError` line naming the field, the value and what is allowed
(``train.epochs must be an int >= 1, got 0``). Numbers must be finite; an int is never a bool.
Checks that relate several fields stay in the dataclass's ``__post_init__``. The same rule
checks a command-line flag that sets the field (:func:`flag_type`), so a flag and its config
field allow the same values.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from latentrl.errors import UserError

RULE = "latentrl.allowed"
"""The key of a field's :class:`Allowed` in its dataclass metadata."""

SEED_MAX = 2**32 - 1
"""The largest seed: every generator (numpy, torch, Gymnasium) takes [0, 2**32)."""


@dataclass(frozen=True)
class Allowed:
    """The values a field allows: a type, for numbers a range, for strings a set of choices.

    ``low``/``high`` are inclusive bounds, ``above``/``below`` exclusive ones; ``optional``
    also allows None; ``items``: the value is a sequence and every item obeys the rule;
    ``extra(value)`` returns what is allowed when the value is not (None when it is), for
    rules a range cannot state (a device name)."""

    kind: type
    low: float | None = None
    high: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple[Any, ...] = ()
    optional: bool = False
    items: bool = False
    extra: Callable[[Any], str | None] | None = None

    def describe(self) -> str:
        """What is allowed, in words: ``"an int >= 1"``, ``"a finite number in (0, 1)"``."""
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = {int: "an int", float: "a finite number", bool: "true or false"}.get(
                self.kind, "a string" if self.kind is str else self.kind.__name__
            )
            text += self._range()
        if self.items:
            text = f"a list of which each item is {text}"
        return f"{text} or null" if self.optional else text

    def _range(self) -> str:
        lower = self.low if self.above is None else self.above
        upper = self.high if self.below is None else self.below
        if lower is not None and upper is not None:
            left = "[" if self.above is None else "("
            right = "]" if self.below is None else ")"
            return f" in {left}{_number(lower)}, {_number(upper)}{right}"
        if lower is not None:
            return f" {'>=' if self.above is None else '>'} {_number(lower)}"
        if upper is not None:
            return f" {'<=' if self.below is None else '<'} {_number(upper)}"
        return ""

    def problem(self, value: Any) -> str | None:
        """None when ``value`` is allowed, else what is allowed (:meth:`describe` or the
        ``extra`` check's words)."""
        if value is None:
            return None if self.optional else self.describe()
        if self.items:
            if isinstance(value, str | bytes) or not isinstance(value, Sequence):
                return self.describe()
            single = dataclasses.replace(self, items=False, optional=False)
            return self.describe() if any(single.problem(v) for v in value) else None
        if not self._fits(value):
            return self.describe()
        return None if self.extra is None else self.extra(value)

    def _fits(self, value: Any) -> bool:
        if self.kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return False
            if not math.isfinite(value):
                return False
        elif self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                return False
        elif type(value) is not self.kind:
            return False
        if self.choices and value not in self.choices:
            return False
        if self.kind is str and not self.choices and not value:
            return False
        return not (
            (self.low is not None and value < self.low)
            or (self.high is not None and value > self.high)
            or (self.above is not None and value <= self.above)
            or (self.below is not None and value >= self.below)
        )


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def checked(default: Any = dataclasses.MISSING, kind: type = int, **rule: Any) -> Any:
    """A dataclass field whose allowed values are ``Allowed(kind, **rule)``; ``default`` may
    be left out (a required field). A list default is stored as a tuple."""
    allowed = Allowed(kind, **rule)
    if isinstance(default, list):
        default = tuple(default)
    return dataclasses.field(default=default, metadata={RULE: allowed})


def rule_of(cls: type, name: str) -> Allowed | None:
    """The :class:`Allowed` declared for field ``name`` of dataclass ``cls`` (None: none)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get(RULE)
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def check_value(cls: type, name: str, value: Any, what: str | None = None) -> None:
    """UserError unless ``value`` is allowed in field ``name`` of dataclass ``cls``: for an
    argument that sets the field (``what`` names it; default ``name``)."""
    allowed = rule_of(cls, name)
    problem = None if allowed is None else allowed.problem(value)
    if problem is not None:
        raise UserError(f"{what or name} must be {problem}, got {_shown(value)}")


def check_fields(
    config: Any, section: str, error: type[UserError] = UserError, prefix: str = ""
) -> None:
    """Raise ``error`` for the first field of dataclass instance ``config`` whose value its
    rule does not allow: ``"{section}.{field} must be {what is allowed}, got {value}"``,
    after ``prefix`` (``section`` "": the top level, ``"{field} must be ..."``)."""
    for f in dataclasses.fields(config):
        allowed = f.metadata.get(RULE)
        if allowed is None:
            continue
        value = getattr(config, f.name)
        problem = allowed.problem(value)
        if problem is not None:
            where = f"{section}.{f.name}" if section else f.name
            raise error(f"{prefix}{where} must be {problem}, got {_shown(value)}")


def _shown(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, tuple):
        value = list(value)
    return repr(value)


def flag_type(allowed: Allowed) -> Callable[[str], Any]:
    """An argparse ``type`` that parses a flag's text as ``allowed.kind`` and checks it:
    argparse prints ``argument --seed: must be an int >= 0, got '-1'``."""

    def parse(text: str) -> Any:
        try:
            value = allowed.kind(text)
        except ValueError:
            what = allowed.describe()
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        problem = allowed.problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(f"must be {problem}, got {text!r}")
        return value

    parse.__name__ = allowed.describe()
    return parse
