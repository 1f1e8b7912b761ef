"""The agent registry: names, which agents depend on the model, builders, settings."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latentrl.agents import OracleMPCAgent, RandomAgent
from latentrl.agents.registry import (
    AGENT_NAMES,
    REGISTRY,
    AgentContext,
    agent_entry,
    in_registry_order,
    model_free_agents,
)
from latentrl.config import AGENTS, EvalConfig, PlanConfig
from latentrl.envs import make_env, require_control_env
from latentrl.errors import UserError
from latentrl.pipeline import experiment_config


def test_names_and_which_agents_depend_on_the_model() -> None:
    assert AGENT_NAMES == ("latent", "oracle", "random") == AGENTS
    assert model_free_agents() == ("oracle", "random")
    assert [e.films for e in REGISTRY.values()] == [True, False, False]
    assert in_registry_order(["random", "mine", "latent"]) == ["latent", "random", "mine"]
    with pytest.raises(UserError, match="unknown agent 'expert'; choose from latent, oracle"):
        agent_entry("expert")


def test_the_registry_imports_without_torch() -> None:
    code = (
        "import sys; import latentrl.agents.registry as r; "
        "print(r.AGENT_NAMES, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "('latent', 'oracle', 'random') False"


def test_settings_each_agent_depends_on() -> None:
    ev = {"seed": 3, "oracle_horizon": 40, "episodes": 9, "gifs": 1}
    plan = json.loads(json.dumps(dataclasses.asdict(PlanConfig())))
    assert agent_entry("random").settings(ev, plan) == {"seed": 3}
    assert agent_entry("oracle").settings(ev, plan) == {"seed": 3, "oracle_horizon": 40}
    newest = list(plan)[-1]  # a plan written before this field existed ran with its default
    older = {k: v for k, v in plan.items() if k != newest}
    assert agent_entry("latent").settings(ev, older) == {"seed": 3, "plan": plan}
    changed = agent_entry("latent").settings(ev, plan | {"horizon": 7})
    assert changed["plan"]["horizon"] == 7


def test_builders_make_the_model_free_agents(tmp_path: Path) -> None:
    config = experiment_config("pendulum", "debug")
    config = dataclasses.replace(config, eval=EvalConfig(seed=5, oracle_horizon=12))
    env = make_env("latentrl/Pendulum-v0")
    context = AgentContext(tmp_path, config, env, require_control_env(env))
    oracle = agent_entry("oracle").build(context)
    random = agent_entry("random").build(context)
    assert isinstance(oracle, OracleMPCAgent) and isinstance(random, RandomAgent)
    assert random.seed == 5 and oracle.planner.horizon == 12
    random.reset(np.zeros((2, 48, 48), np.uint8), 2)
    first = random.act(np.zeros((2, 2, 48, 48), np.uint8), np.zeros((2, 2)))
    expected = np.random.default_rng(5).uniform(-2.0, 2.0, size=(2, 1)).astype(np.float32)
    np.testing.assert_array_equal(first, expected)
    with pytest.raises(UserError, match="is not a latentrl run directory"):
        agent_entry("latent").build(context)
    env.close()
