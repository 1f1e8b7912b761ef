"""The agents ``latentrl evaluate`` knows, by name: how to build each, and what its numbers
depend on.

Light to import (no torch, no config): ``latentrl.config`` takes its list of agent names from
here, and each builder imports its agent only when called.

* ``uses_model``: whether the agent's episodes depend on the run's trained model. Those that
  do not (the oracle, random actions) can be taken from another run's evaluation of the same
  episodes (``--baselines-from``), and ``latentrl compare`` shows them for groups that did not
  evaluate them;
* ``films``: whether its episodes are filmed (GIFs of ``video_frames``);
* ``settings``: the settings of an evaluation its numbers depend on, beside the protocol (env,
  start states, horizon, goal region). An earlier result of the agent is kept only where
  these are equal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentrl.errors import UserError

if TYPE_CHECKING:
    import gymnasium as gym

    from latentrl.agents.agent import Agent
    from latentrl.config import ExperimentConfig
    from latentrl.envs import ControlEnv


@dataclass(frozen=True)
class AgentContext:
    """What a builder may use: the run, its config (with the evaluation's ``eval`` and
    ``plan`` sections), the env and its unwrapped control task."""

    run_dir: Path
    config: ExperimentConfig
    env: gym.Env
    task: ControlEnv


Settings = Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]]
"""``(eval section, plan section)`` of results.json (JSON objects) -> the settings, as JSON."""


@dataclass(frozen=True)
class AgentEntry:
    """One agent of the registry."""

    name: str
    uses_model: bool
    films: bool
    build: Callable[[AgentContext], Agent]
    settings: Settings


def _build_latent(ctx: AgentContext) -> Agent:
    from latentrl.agents.latent import LatentMPCAgent
    from latentrl.devices import resolve_device

    ev = ctx.config.eval
    device = resolve_device(ev.device, "eval.device")
    return LatentMPCAgent.from_run(ctx.run_dir, ctx.env, device, ctx.config.plan, ev.seed)


def _build_oracle(ctx: AgentContext) -> Agent:
    from latentrl.agents.oracle import OracleMPCAgent

    ev = ctx.config.eval
    return OracleMPCAgent(ctx.task, horizon=ev.oracle_horizon, seed=ev.seed)


def _build_random(ctx: AgentContext) -> Agent:
    from latentrl.agents.random_agent import RandomAgent

    return RandomAgent.for_env(ctx.task, seed=ctx.config.eval.seed)


def _latent_settings(ev: Mapping[str, Any], plan: Mapping[str, Any]) -> dict[str, Any]:
    """The eval seed and the plan; a plan written before a field existed ran with that
    field's default, one written with the flat option fields of older versions reads as
    their ``plan.options``."""
    from latentrl.config import PlanConfig, from_dict, to_dict, upgrade_legacy_plan

    return {"seed": ev["seed"], "plan": to_dict(from_dict(PlanConfig, upgrade_legacy_plan(plan)))}


def _oracle_settings(ev: Mapping[str, Any], plan: Mapping[str, Any]) -> dict[str, Any]:
    return {"seed": ev["seed"], "oracle_horizon": ev["oracle_horizon"]}


def _random_settings(ev: Mapping[str, Any], plan: Mapping[str, Any]) -> dict[str, Any]:
    return {"seed": ev["seed"]}


REGISTRY: dict[str, AgentEntry] = {
    entry.name: entry
    for entry in (
        AgentEntry("latent", True, True, _build_latent, _latent_settings),
        AgentEntry("oracle", False, False, _build_oracle, _oracle_settings),
        AgentEntry("random", False, False, _build_random, _random_settings),
    )
}
"""Agent name -> entry, in the order agents are run and listed."""

AGENT_NAMES: tuple[str, ...] = tuple(REGISTRY)


def agent_entry(name: str) -> AgentEntry:
    """The entry of agent ``name``; UserError for a name the registry does not know."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown agent {name!r}; choose from {', '.join(AGENT_NAMES)}") from None


def model_free_agents() -> tuple[str, ...]:
    """The agents whose episodes do not depend on the run's model, in registry order."""
    return tuple(name for name, entry in REGISTRY.items() if not entry.uses_model)


def in_registry_order(names: Mapping[str, Any] | tuple[str, ...] | list[str]) -> list[str]:
    """``names`` in registry order, names the registry does not know after, as given."""
    names = list(dict.fromkeys(names))
    return [a for a in AGENT_NAMES if a in names] + [a for a in names if a not in REGISTRY]
