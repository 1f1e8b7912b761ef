"""The goal-cost term: its formula, its settings, the costs it reads from the env, and a
training run with it."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from point_mass import ENV_ID as POINT_MASS_ID

from latentrl.collect import collect
from latentrl.config import DataConfig, ExperimentConfig, TrainConfig, from_dict
from latentrl.data import load_transitions
from latentrl.distributed import BatchObjective, World
from latentrl.envs import require_control_env
from latentrl.errors import UserError
from latentrl.kinds import MODEL_KINDS, build_model, check_loss_sections
from latentrl.logging import read_metrics
from latentrl.losses import GoalCostConfig, GoalCostTarget, LossConfig, goal_cost_values
from latentrl.models import ModelConfig
from latentrl.train import _checked_data, goal_cost_target, train


def test_the_values_follow_the_formula() -> None:
    z = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    z_goal = torch.tensor([1.0, 0.0], dtype=torch.float64)
    cost = torch.tensor([4.0, 0.5, -1.0], dtype=torch.float64)
    got = goal_cost_values(z, z_goal, cost, floor=0.01)
    # squared distances 4, 1, 4; the negative cost counts as 0
    want = [(math.log(4.01) - math.log(4.01)) ** 2, (math.log(1.01) - math.log(0.51)) ** 2]
    want.append((math.log(4.01) - math.log(0.01)) ** 2)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))


def test_the_scale_multiplies_the_cost_the_distance_is_asked_to_match() -> None:
    z_goal = torch.zeros(2, dtype=torch.float64)
    z = torch.tensor([[3.0, 4.0]], dtype=torch.float64)  # squared distance 25
    cost = torch.tensor([0.25], dtype=torch.float64)
    assert float(goal_cost_values(z, z_goal, cost, floor=0.01, scale=100.0)) == 0.0
    unscaled = goal_cost_values(z, z_goal, cost, floor=0.01)
    torch.testing.assert_close(
        unscaled, torch.log(torch.tensor([25.01 / 0.26], dtype=torch.float64)) ** 2
    )


def test_the_floor_bounds_the_term_at_the_goal() -> None:
    z_goal = torch.zeros(3)
    at_goal = goal_cost_values(torch.zeros(1, 3), z_goal, torch.zeros(1), floor=0.1)
    assert float(at_goal) == 0.0
    near = goal_cost_values(torch.full((1, 3), 1e-3), z_goal, torch.zeros(1), floor=0.1)
    assert 0 < float(near) < 1e-8


def test_the_term_reaches_the_encoder_and_reads_the_goal_image() -> None:
    images = torch.arange(3 * 4, dtype=torch.float32).view(3, 4)
    weight = torch.tensor([[1.0], [0.5], [0.0], [0.0]], requires_grad=True)
    target = GoalCostTarget(
        images[2:], torch.tensor([1.0, 2.0, 9.0]), GoalCostConfig(weight=1.0, floor=0.01)
    )
    value = target.term(lambda x: x @ weight, images[:2], torch.tensor([0, 1]))
    z = images @ weight.detach()
    want = goal_cost_values(z[:2], z[2], torch.tensor([1.0, 2.0]), 0.01).mean()
    torch.testing.assert_close(value, want)
    value.backward()
    assert weight.grad is not None and float(weight.grad.abs().sum()) > 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"weight": -1.0}, "loss.goal_cost.weight must be a finite number >= 0"),
        ({"floor": 0.0}, "loss.goal_cost.floor must be a finite number > 0"),
        ({"scale": -2.0}, "loss.goal_cost.scale must be a finite number > 0"),
    ],
)
def test_bad_settings_are_refused(fields: dict[str, float], message: str) -> None:
    with pytest.raises(UserError, match=message):
        from_dict(LossConfig, {"goal_cost": fields})


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_every_kind_reads_the_section(kind: str) -> None:
    check_loss_sections(kind, LossConfig(goal_cost=GoalCostConfig(weight=2.0)))
    assert "goal_cost" in MODEL_KINDS[kind].loss_sections()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "pm"
    return collect(POINT_MASS_ID, 1_200, out, seed=0, progress=False)


def test_the_rows_costs_are_the_envs_above_the_goal(dataset: Path) -> None:
    data = load_transitions(dataset)
    env = gym.make(POINT_MASS_ID)
    task = require_control_env(env)
    target = goal_cost_target(task, data, GoalCostConfig(weight=1.0))
    states = data.state.numpy()
    centre = (env.action_space.low + env.action_space.high) / 2
    want = task.cost(states, np.tile(centre, (len(states), 1)))
    want = want - task.cost(task.goal_state()[None], centre[None])[0]
    np.testing.assert_allclose(target.row_costs.numpy(), want, rtol=1e-12)
    assert target.row_costs.min() >= 0 and target.row_costs.max() > 0
    np.testing.assert_array_equal(
        target.goal_image[0].numpy(), task.observe(task.goal_state()[None])[0]
    )
    env.close()


def test_non_finite_costs_are_refused(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_transitions(dataset)
    env = gym.make(POINT_MASS_ID)
    task = require_control_env(env)
    monkeypatch.setattr(task, "cost", lambda s, u: np.full(len(s), np.nan))
    with pytest.raises(UserError, match="non-finite costs for 1200 training states"):
        goal_cost_target(task, data, GoalCostConfig(weight=1.0))
    env.close()


def shaped_config(weight: float, kind: str = "pc3") -> ExperimentConfig:
    return ExperimentConfig(
        name="point_mass",
        preset="test",
        data=DataConfig(env_id=POINT_MASS_ID, transitions=1_200),
        model=ModelConfig(
            kind=kind,
            obs_shape=(2, 32, 32),
            action_dim=1,
            latent_dim=2,
            hidden_sizes=(64,),
            transition_hidden_sizes=(16,),
        ),
        train=TrainConfig(epochs=3, batch_size=50, learning_rate=3e-3, probe_steps=100),
        loss=LossConfig(goal_cost=GoalCostConfig(weight=weight)),
    )


def test_training_with_the_term_fits_the_distance_to_the_cost(
    dataset: Path, tmp_path: Path
) -> None:
    rows = {}
    for weight in (0.0, 10.0):
        run = train(shaped_config(weight), tmp_path / f"w{weight}", dataset, wandb_mode="disabled")
        rows[weight] = [r for r in read_metrics(run.run_dir) if "train/loss/total" in r]
    plain, shaped = rows[0.0], rows[10.0]
    assert all("train/loss/goal_cost" not in r for r in plain)
    fitted = [r["train/loss/goal_cost"] for r in shaped]
    assert fitted[-1] < 0.5 * fitted[0], fitted


def test_the_objective_adds_the_weighted_term_to_the_kinds(dataset: Path) -> None:
    data = load_transitions(dataset)
    model = build_model(shaped_config(3.0).model)
    env = gym.make(POINT_MASS_ID)
    target = goal_cost_target(require_control_env(env), data, GoalCostConfig(weight=3.0))
    env.close()

    def kind_objective(*args: object) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return torch.tensor(2.0), {"loss/total": torch.tensor(2.0), "loss/cpc": torch.tensor(1.0)}

    rows = torch.arange(10)
    windows = (lambda rows: None, None)
    objective = BatchObjective(model, kind_objective, None, data, windows, World(), target)
    loss, metrics = objective(rows)
    z = model.encode(torch.cat([data.obs[rows], target.goal_image])).mean
    term = goal_cost_values(z[:-1], z[-1], target.row_costs[rows], 0.01).mean()
    torch.testing.assert_close(metrics["loss/goal_cost"], term.detach())
    torch.testing.assert_close(loss, 2.0 + 3.0 * term)
    assert metrics["loss/total"] == loss.detach() and metrics["loss/cpc"] == 1.0
    plain = BatchObjective(model, kind_objective, None, data, windows, World())
    assert plain(rows)[0] == 2.0 and "loss/goal_cost" not in plain(rows)[1]


def test_several_processes_are_refused(dataset: Path) -> None:
    config = shaped_config(1.0)
    with pytest.raises(UserError, match=r"loss\.goal_cost on 2 processes is not supported yet"):
        _checked_data(config, dataset, World(rank=0, size=2))
