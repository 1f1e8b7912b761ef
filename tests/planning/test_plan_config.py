"""PlanConfig: its core fields, its option sections, and the flat plans of older runs."""

from __future__ import annotations

import pytest

from latentrl.config import from_dict, to_dict
from latentrl.errors import UserError
from latentrl.planning.options.shooting import ShootingConfig
from latentrl.planning.plan_config import PlanConfig, upgrade_legacy_plan

CORE = {"horizon": 20, "q": 1.0, "r": 0.01, "q_f": 100.0, "state_scale": "unit",
        "replan_every": 1,
        "max_iterations": 10, "jacobian": "exact"}  # fmt: skip
OFF = {"restarts": 0, "shooting": 0, "shooting_steps": None, "shooting_beyond": 0.0,
       "blocked_ratio": 0.0, "roadmap_lookahead": 0.0, "recorded_moves": 0}  # fmt: skip


def test_old_flat_plans_become_option_sections() -> None:
    assert upgrade_legacy_plan(CORE | OFF) == CORE | {"options": {}}
    pendulum = CORE | OFF | {"shooting": 1024, "shooting_beyond": 0.5, "restarts": 2}
    assert upgrade_legacy_plan(pendulum) == CORE | {
        "options": {
            "shooting": {"count": 1024, "steps": None, "beyond": 0.5},
            "restarts": {"count": 2},
        }
    }
    planar = CORE | OFF | {"blocked_ratio": 0.5, "roadmap_lookahead": 2.0, "recorded_moves": 32}
    assert upgrade_legacy_plan(planar)["options"] == {
        "blocked_pushes": {"ratio": 0.5},
        "roadmap": {"lookahead": 2.0},
        "recorded_moves": {"count": 32},
    }
    # settings of an option that was off change nothing; a plan from before a field existed
    assert upgrade_legacy_plan(CORE | {"shooting_steps": 60})["options"] == {}
    assert upgrade_legacy_plan({"shooting": 8}) == {
        "options": {"shooting": {"count": 8, "steps": None, "beyond": 0.0}}
    }


def test_a_new_plan_is_left_as_it_is_and_the_input_is_not_changed() -> None:
    new = CORE | {"options": {"roadmap": {"lookahead": 2.0}}}
    assert upgrade_legacy_plan(new) == new and upgrade_legacy_plan(new) is not new
    old = CORE | OFF | {"shooting": 64}
    copy = dict(old)
    upgrade_legacy_plan(old)
    assert old == copy
    mixed = CORE | {"shooting": 64, "options": {"restarts": {"count": 1}}}
    assert set(upgrade_legacy_plan(mixed)["options"]) == {"restarts", "shooting"}
    with pytest.raises(UserError, match=r"plan sets \['shooting'\] both as old flat fields"):
        upgrade_legacy_plan(CORE | {"shooting": 64, "options": {"shooting": {"count": 8}}})


def test_an_upgraded_plan_loads_and_writes_back_as_sections() -> None:
    pendulum = CORE | OFF | {"shooting": 1024, "shooting_beyond": 0.5}
    plan = from_dict(PlanConfig, upgrade_legacy_plan(pendulum))
    assert plan == PlanConfig(
        horizon=20, max_iterations=10, options={"shooting": ShootingConfig(1024, None, 0.5)}
    )
    assert to_dict(plan) == CORE | {
        "belief": "filtered",  # fields newer than the flat plans: their defaults
        "q_speed": 0.0,
        "compile": "auto",
        "options": {
            "shooting": {
                "count": 1024,
                "steps": None,
                "beyond": 0.5,
                "terminal_weight": None,
                "lookahead": None,
                "score": "cost",
            }
        },
    }
    with pytest.raises(UserError, match=r"unknown field\(s\) blocked_ratio, recorded_moves, "):
        from_dict(PlanConfig, pendulum)  # not upgraded: the old fields are unknown


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"horizon": 0}, "plan.horizon must be an int >= 1"),
        ({"replan_every": 50}, "replan_every must be <= plan.horizon"),
        ({"r": 0.0}, "r > 0"),
        ({"max_iterations": 0}, r"plan\.max_iterations must be an int >= 1"),
        ({"jacobian": "numeric"}, "plan.jacobian must be one of 'exact', 'e2c'"),
    ],
)
def test_impossible_core_fields_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        PlanConfig(**fields)
