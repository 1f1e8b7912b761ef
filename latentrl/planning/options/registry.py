"""Planner options by name: each module of this package registers one, with its config.

A module of :mod:`latentrl.planning.options` (all but :mod:`~.kinds` and this one) holds one
option: its frozen config dataclass, its class, and a :func:`register` call naming them. The
registry imports every such module on first use, so adding an option is adding its module.
``plan.options`` of a :class:`~latentrl.planning.plan_config.PlanConfig` maps option names to
configs (:func:`parse_options`); :func:`build_options` turns them into an agent's options of one
kind, in the fixed order of their ``order`` (never the order a user listed them in).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from latentrl.errors import UserError
from latentrl.planning.options.kinds import Kind, Resources

_INFRASTRUCTURE = frozenset({"kinds", "registry"})
"""Modules of the package that hold no option."""


@dataclass(frozen=True)
class OptionSpec:
    """One planner option.

    ``config``: its frozen config dataclass (every field with a default); ``build(config,
    resources)``: its object, of ``kind``; ``order``: its place among the options of its kind
    (initialisers run, and dynamics modifiers wrap, in increasing order: the lowest innermost);
    ``requires`` / ``excludes``: option name -> why it must / must not be configured too;
    ``needs_frames``: it reads the run's training frames (:class:`Resources`); ``default_on``:
    built with its default config where ``plan.options`` does not name it.
    """

    name: str
    kind: Kind
    order: int
    config: type
    build: Callable[[Any, Resources], Any]
    requires: Mapping[str, str] = field(default_factory=dict)
    excludes: Mapping[str, str] = field(default_factory=dict)
    needs_frames: bool = False
    default_on: bool = False


_REGISTRY: dict[str, OptionSpec] = {}
_discovered = False


def register(spec: OptionSpec) -> OptionSpec:
    """Add ``spec`` to the registry (at the import of its module); returns it."""
    known = _REGISTRY.get(spec.name)
    if known is not None and known.config is not spec.config:
        raise ValueError(f"two planner options are called {spec.name!r}")
    if not is_dataclass(spec.config):
        raise TypeError(f"the config of planner option {spec.name!r} must be a dataclass")
    _REGISTRY[spec.name] = spec
    return spec


def option_specs() -> dict[str, OptionSpec]:
    """Every registered option by name, after importing the option modules of the package."""
    global _discovered
    if not _discovered:
        package = __name__.rpartition(".")[0]
        for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
            if module.name not in _INFRASTRUCTURE and not module.name.startswith("_"):
                importlib.import_module(f"{package}.{module.name}")
        _discovered = True
    return dict(_REGISTRY)


def option_spec(name: str) -> OptionSpec:
    """The option called ``name``; UserError naming the known ones otherwise."""
    specs = option_specs()
    if name not in specs:
        raise UserError(
            f"unknown plan option {name!r}; known: {', '.join(sorted(specs))} "
            f"(plan.options.NAME.FIELD=VALUE)"
        )
    return specs[name]


def parse_option(name: str, value: Any) -> Any:
    """The config of option ``name`` from its config or a dict of its fields (missing ones
    take their defaults); UserError for unknown fields or bad values."""
    spec = option_spec(name)
    if isinstance(value, spec.config):
        return value
    if not isinstance(value, Mapping):
        raise UserError(
            f"plan.options.{name} must be a section of {spec.config.__name__} fields "
            f"(or null to remove it), got {value!r}"
        )
    known = [f.name for f in fields(spec.config)]
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise UserError(f"plan.options.{name} has no field(s) {unknown}; known: {', '.join(known)}")
    # latentrl.config imports this module (PlanConfig's options): its converter is read here,
    # when a config is parsed, not at import.
    from latentrl.config import from_dict

    return from_dict(spec.config, value, f"plan.options.{name}")


def parse_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``plan.options`` with every section parsed (:func:`parse_option`), null sections
    dropped, sorted by name; UserError where one option requires or excludes another."""
    parsed = {
        name: parse_option(name, value)
        for name, value in sorted((options or {}).items())
        if value is not None
    }
    for name in parsed:
        spec = option_spec(name)
        for other, why in spec.requires.items():
            if other not in parsed:
                raise UserError(
                    f"plan.options.{name} needs plan.options.{other} ({why}): configure "
                    f"{other} as well, or remove {name}"
                )
        for other, why in spec.excludes.items():
            if other in parsed:
                raise UserError(
                    f"plan.options.{name} and plan.options.{other} do not combine ({why}): "
                    "remove one of them"
                )
    return parsed


def active_specs(options: Mapping[str, Any], kind: Kind | None = None) -> list[OptionSpec]:
    """The specs of the configured ``options`` and the options on by default, of ``kind``
    (None: all), in their fixed order."""
    specs = option_specs().values()
    active = [s for s in specs if s.name in options or s.default_on]
    return sorted((s for s in active if kind in (None, s.kind)), key=lambda s: (s.order, s.name))


def build_options(options: Mapping[str, Any], kind: Kind, resources: Resources) -> list[Any]:
    """The option objects of ``kind`` for the parsed ``options``, in their fixed order."""
    return [
        spec.build(options.get(spec.name) or spec.config(), resources)
        for spec in active_specs(options, kind)
    ]


def needs_frames(options: Mapping[str, Any]) -> bool:
    """Whether one of the configured ``options`` reads the run's training frames."""
    return any(spec.needs_frames for spec in active_specs(options))
