"""Model kinds end to end: the config checks, training, checkpoints and the agent's belief."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from point_mass import ENV_ID as POINT_MASS_ID

from latentrl.agents import LatentMPCAgent
from latentrl.checkpoint import load_model
from latentrl.collect import collect
from latentrl.config import DataConfig, ExperimentConfig, TrainConfig
from latentrl.envs import goal_observation, make_env
from latentrl.errors import UserError
from latentrl.kinds import MODEL_KINDS, build_model, model_kind
from latentrl.logging import read_metrics
from latentrl.losses import FilterLossConfig, LossConfig, MultiStepConfig
from latentrl.models import E2C, ModelConfig
from latentrl.models.filtering import FilteringE2C
from latentrl.pipeline import experiment_config
from latentrl.planning.plan_config import PlanConfig
from latentrl.train import train


def filter_config(epochs: int = 3, window: int = 4) -> ExperimentConfig:
    return ExperimentConfig(
        name="point_mass",
        preset="test",
        data=DataConfig(env_id=POINT_MASS_ID, transitions=1_200, chain_length=8),
        model=ModelConfig(
            obs_shape=(2, 32, 32),
            action_dim=1,
            latent_dim=2,
            kind="filter",
            hidden_sizes=(64,),
            transition_hidden_sizes=(16,),
        ),
        loss=LossConfig(filter=FilterLossConfig(window=window)),
        train=TrainConfig(
            epochs=epochs, batch_size=48, learning_rate=3e-3, image_every=2, probe_steps=100
        ),
    )


def test_every_kind_builds_its_own_model_class() -> None:
    base = filter_config().model
    for name, kind in MODEL_KINDS.items():
        model = build_model(dataclasses.replace(base, kind=name))
        assert type(model) is kind.model_class and isinstance(model, E2C)
    with pytest.raises(UserError, match=r"model.kind='vae' is not a model kind; use one of e2c"):
        model_kind("vae")


def test_a_loss_section_the_kind_does_not_read_is_refused() -> None:
    config = filter_config()
    e2c_model = dataclasses.replace(config.model, kind="e2c")
    with pytest.raises(UserError, match=r"loss.filter is read by model.kind=filter, but"):
        dataclasses.replace(config, model=e2c_model)
    with pytest.raises(UserError, match=r"loss.multi_step is read by model.kind=e2c, but"):
        dataclasses.replace(config, loss=LossConfig(multi_step=MultiStepConfig(horizon=2)))
    with pytest.raises(UserError, match=r"loss.filter.window=9 needs chains of at least 9"):
        dataclasses.replace(config, loss=LossConfig(filter=FilterLossConfig(window=9)))


def test_switching_kind_on_the_command_line_drops_the_files_settings_for_e2c() -> None:
    e2c = experiment_config("pendulum", "debug")
    assert e2c.loss.multi_step.horizon == 8
    config = experiment_config("pendulum", "debug", overrides=["model.kind=filter"])
    assert config.model.kind == "filter"
    assert config.loss == LossConfig()  # the file's multi-step settings were E2C's
    assert config.plan == e2c.plan and config.train == e2c.train and config.data == e2c.data
    with pytest.raises(UserError, match=r"loss.multi_step is read by model.kind=e2c"):
        experiment_config(
            "pendulum", "debug", overrides=["model.kind=filter", "loss.multi_step.horizon=4"]
        )


@pytest.fixture(scope="module")
def chained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "chained"
    return collect(POINT_MASS_ID, 1_200, out, seed=0, chain_length=8, progress=False)


@pytest.fixture(scope="module")
def filter_run(chained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "filter"
    train(filter_config(), run_dir, chained, wandb_mode="disabled")
    return run_dir


def test_the_filtering_kind_trains_on_whole_windows(filter_run: Path) -> None:
    rows = [r for r in read_metrics(filter_run) if "val/loss/total" in r]
    assert [r["epoch"] for r in rows] == [1.0, 2.0, 3.0]
    for term in ("total", "reconstruction"):
        assert rows[-1][f"val/loss/{term}"] < 0.9 * rows[0][f"val/loss/{term}"], term
    assert rows[-1]["val/state_loss"] == rows[-1]["val/loss/reconstruction"]
    assert np.isfinite(rows[-1]["val/next_state_loss"])
    # 48 transitions a step in windows of 4: 12 windows, as many steps as E2C takes
    steps = [r["step"] for r in read_metrics(filter_run) if "epoch" in r]
    assert steps[0] == 1_080 // 48  # 1,080 training transitions (90% of 1,200)
    model, config = load_model(filter_run)
    assert isinstance(model, FilteringE2C) and config.model.kind == "filter"


def test_the_agent_keeps_its_belief_over_an_episode(filter_run: Path) -> None:
    env = make_env(POINT_MASS_ID)
    try:
        plan = PlanConfig(horizon=5, max_iterations=3)
        agent = LatentMPCAgent.from_run(filter_run, env, plan=plan)
        obs, _ = env.reset(seed=0)
        agent.reset(goal_observation(env.unwrapped), batch_size=1)
        agent.act(obs[None])
        first = agent.belief
        assert first is not None
        x = torch.as_tensor(obs[None])
        torch.testing.assert_close(first.mean, agent.model.initial_belief(x).mean)
        agent.act(obs[None])  # the same image again: the belief now carries the history
        second = agent.belief
        assert second is not None and not torch.allclose(second.var, first.var)
        assert (second.var < agent.model.encode(x).var).all()  # two looks beat one
        agent.reset(goal_observation(env.unwrapped), batch_size=1)
        assert agent.belief is None
    finally:
        env.close()
