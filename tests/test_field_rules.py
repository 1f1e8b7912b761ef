"""The allowed values a config field declares: their words, their checks, their flags."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import pytest

from latentrl.errors import UserError
from latentrl.field_rules import Allowed, check_fields, check_value, checked, flag_type, rule_of


@dataclass(frozen=True)
class Section:
    count: int = checked(2, int, low=1)
    share: float = checked(0.5, float, above=0, high=1)
    steps: int | None = checked(None, int, low=1, optional=True)
    kind: str = checked("a", str, choices=("a", "b"))
    widths: tuple[int, ...] = checked([8, 8], int, low=1, items=True)
    free: float = 1.0

    def __post_init__(self) -> None:
        check_fields(self, "demo")


@pytest.mark.parametrize(
    ("allowed", "words"),
    [
        (Allowed(int, low=1), "an int >= 1"),
        (Allowed(int, low=0, high=9), "an int in [0, 9]"),
        (Allowed(float, above=0), "a finite number > 0"),
        (Allowed(float, above=0, below=1), "a finite number in (0, 1)"),
        (Allowed(float, low=0.5, below=1.5), "a finite number in [0.5, 1.5)"),
        (Allowed(float), "a finite number"),
        (Allowed(int, low=1, optional=True), "an int >= 1 or null"),
        (Allowed(str, choices=("x", "y")), "one of 'x', 'y'"),
        (Allowed(bool), "true or false"),
        (Allowed(int, low=1, items=True), "a list of which each item is an int >= 1"),
    ],
)
def test_a_rule_says_what_it_allows(allowed: Allowed, words: str) -> None:
    assert allowed.describe() == words


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"count": 0}, "demo.count must be an int >= 1, got 0"),
        ({"count": True}, "demo.count must be an int >= 1, got True"),
        ({"count": 2.0}, "demo.count must be an int >= 1, got 2.0"),
        ({"share": 0}, "demo.share must be a finite number in (0, 1], got 0"),
        ({"share": math.nan}, "demo.share must be a finite number in (0, 1], got nan"),
        ({"share": math.inf}, "demo.share must be a finite number in (0, 1], got inf"),
        ({"share": "1"}, "demo.share must be a finite number in (0, 1], got '1'"),
        ({"steps": 0}, "demo.steps must be an int >= 1 or null, got 0"),
        ({"kind": "c"}, "demo.kind must be one of 'a', 'b', got 'c'"),
        (
            {"widths": (8, 0)},
            "demo.widths must be a list of which each item is an int >= 1, got [8, 0]",
        ),
        ({"widths": "8"}, "demo.widths must be a list of which each item is an int >= 1, got '8'"),
    ],
)
def test_the_first_field_out_of_its_range_is_named_with_its_value(
    fields: dict, message: str
) -> None:
    with pytest.raises(UserError) as info:
        Section(**fields)
    assert str(info.value) == message


def test_allowed_values_pass_and_undeclared_fields_are_not_checked() -> None:
    section = Section(count=1, share=1, steps=None, kind="b", widths=[1], free=math.nan)
    assert section.widths == [1] and math.isnan(section.free)
    assert Section().widths == (8, 8)  # a list default is stored as a tuple
    assert rule_of(Section, "free") is None and rule_of(Section, "count") == Allowed(int, low=1)
    with pytest.raises(KeyError):
        rule_of(Section, "nope")
    check_value(Section, "count", 3)
    with pytest.raises(UserError, match=r"^--count must be an int >= 1, got -1$"):
        check_value(Section, "count", -1, "--count")


def test_a_flag_allows_what_its_field_allows() -> None:
    parse = flag_type(Allowed(float, low=0, high=1))
    assert parse("0.25") == 0.25
    for text, problem in (("1.5", "got '1.5'"), ("nan", "got 'nan'"), ("x", "got 'x'")):
        with pytest.raises(argparse.ArgumentTypeError, match=problem):
            parse(text)
    assert flag_type(Allowed(int, low=0))("7") == 7
