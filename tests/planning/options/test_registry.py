"""The registry of planner options: every option module found, parsed by name, built in order."""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import latentrl.planning.options as options_package
from latentrl.config import PlanConfig
from latentrl.errors import UserError
from latentrl.planning.options import registry
from latentrl.planning.options.blocked_pushes import BlockedPushes, BlockedPushesConfig
from latentrl.planning.options.kinds import Resources
from latentrl.planning.options.recorded_moves import RecordedMoves, RecordedMovesConfig
from latentrl.planning.options.restarts import Restarts
from latentrl.planning.options.shooting import Shooting, ShootingConfig
from latentrl.planning.options.warm_start import WarmStart


def test_every_module_of_the_package_is_an_option_found_by_its_name() -> None:
    folder = Path(options_package.__file__).parent
    modules = {m.name for m in pkgutil.iter_modules([str(folder)])} - {"kinds", "registry"}
    specs = registry.option_specs()
    assert set(specs) == modules == {
        "warm_start", "shooting", "restarts", "blocked_pushes", "recorded_moves", "roadmap"
    }  # fmt: skip
    kinds = {name: spec.kind for name, spec in specs.items()}
    assert kinds == {
        "warm_start": "initialiser", "shooting": "initialiser", "restarts": "initialiser",
        "blocked_pushes": "dynamics", "recorded_moves": "dynamics", "roadmap": "goal",
    }  # fmt: skip


def test_options_are_built_in_their_fixed_order_whatever_order_they_are_listed_in() -> None:
    frames = object()
    resources = Resources(frames=frames)  # type: ignore[arg-type]
    listed = {"blocked_pushes": {}, "roadmap": {}, "recorded_moves": {}}
    reversed_listing = dict(reversed(list(listed.items())))
    for options in (listed, reversed_listing):
        parsed = PlanConfig(options=options).options
        modifiers = registry.build_options(parsed, "dynamics", resources)
        assert [type(m) for m in modifiers] == [RecordedMoves, BlockedPushes]  # inside first
    parsed = PlanConfig(options={"restarts": {"count": 3}, "shooting": {}}).options
    initialisers = registry.build_options(parsed, "initialiser", resources)
    assert [type(i) for i in initialisers] == [WarmStart, Shooting, Restarts]  # warm start: on
    assert initialisers[2].config.count == 3  # type: ignore[attr-defined]
    assert registry.needs_frames(PlanConfig(options={"roadmap": {}}).options)
    assert not registry.needs_frames(parsed)


def test_sections_are_parsed_into_configs_and_bad_ones_refused() -> None:
    plan = PlanConfig(options={"shooting": {"count": 8}, "blocked_pushes": None})
    assert plan.options == {"shooting": ShootingConfig(count=8)}  # defaults filled, null gone
    assert list(PlanConfig(options={"shooting": {}, "blocked_pushes": {}}).options) == [
        "blocked_pushes", "shooting"
    ]  # fmt: skip
    kept = BlockedPushesConfig(ratio=0.25)
    assert PlanConfig(options={"blocked_pushes": kept}).options["blocked_pushes"] is kept
    with pytest.raises(UserError, match=r"unknown plan option 'shoting'; known: blocked_pushes, "):
        PlanConfig(options={"shoting": {}})
    with pytest.raises(UserError, match=r"plan\.options\.shooting has no field\(s\) \['cnt'\]"):
        PlanConfig(options={"shooting": {"cnt": 8}})
    with pytest.raises(UserError, match=r"plan\.options\.shooting\.count must be int, got 8\.5"):
        PlanConfig(options={"shooting": {"count": 8.5}})
    with pytest.raises(UserError, match=r"plan\.options\.shooting must be a section"):
        PlanConfig(options={"shooting": 8})
    with pytest.raises(UserError, match=r"plan\.options must be sections by option name"):
        PlanConfig(options=["shooting"])  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"recorded_moves needs plan\.options\.roadmap"):
        PlanConfig(options={"recorded_moves": RecordedMovesConfig()})


def test_a_name_is_registered_once() -> None:
    @dataclass(frozen=True)
    class Other:
        count: int = 1

    spec = registry.option_spec("restarts")
    with pytest.raises(ValueError, match="two planner options are called 'restarts'"):
        registry.register(registry.OptionSpec("restarts", "initialiser", 9, Other, spec.build))
    assert registry.register(spec) is spec  # the same option again (a module reloaded): fine
    with pytest.raises(TypeError, match="must be a dataclass"):
        registry.register(registry.OptionSpec("new_one", "goal", 0, int, spec.build))
    assert "new_one" not in registry.option_specs()
