"""The PC3 paper's protocols as experiments (experiments/pc3_*.toml): the default recipe on
envs set up with PC3's torque limits, episode lengths, start distributions and goal regions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentrl.agents.oracle import true_dynamics
from latentrl.agents.random_agent import RandomAgent
from latentrl.config import to_dict
from latentrl.env_check import check_environment
from latentrl.envs import make_env
from latentrl.episodes import rollout_metrics, run_episodes
from latentrl.evaluate import evaluation_env_kwargs
from latentrl.losses.pc3 import PC3LossConfig
from latentrl.losses.pcc import PCCLossConfig
from latentrl.pipeline import build_config, dataset_dir, defaults_config, experiment_config

# experiment -> (env id, horizon, goal radius, |u| bound, start box low, high, PC3's latent size)
PROTOCOLS = {
    "pc3_planar": ("latentrl/Planar-v0", 40, 2.0, 3.0, [3, 3], [7, 7], 2),
    "pc3_pendulum_swingup": (
        "latentrl/Pendulum-v0", 100, np.pi / 6, 0.65, [0.9 * np.pi, 0], [0.95 * np.pi, 0], 3
    ),
    "pc3_pendulum_balance": ("latentrl/Pendulum-v0", 100, np.pi / 6, 0.65, [0, 0], [0, 0], 3),
    "pc3_cartpole": (
        "latentrl/CartpoleSwingup-v0", 50, np.pi / 10, 10.0,
        [0, -np.pi / 8, 0, 0], [0, np.pi / 8, 0, 0], 8,
    ),
}  # fmt: skip
RECIPE_FIELDS = {"data.workers", "model.latent_dim"}
"""What the full presets may change in the recipe of their env beyond the eval section:
collection processes (speed only) and PC3's latent size."""


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "env_kwargs":
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("name", PROTOCOLS)
def test_each_protocol_sets_up_the_env_as_pc3_does(name: str) -> None:
    env_id, horizon, radius, top, low, high, latent = PROTOCOLS[name]
    for preset in ("debug", "full"):
        config = experiment_config(name, preset)
        assert config.data.env_id == env_id and config.model.latent_dim == latent
        assert config.model.kind == "e2c" and set(config.plan.options) <= {
            "shooting",
            "blocked_pushes",
        }
        assert config.eval.horizon == horizon
    env = make_env(env_id, **evaluation_env_kwargs(config))
    try:
        task = env.unwrapped
        assert task.horizon == horizon and task.goal_radius == pytest.approx(radius, rel=1e-15)
        assert np.all(env.action_space.high == np.float32(top))
        assert np.all(env.action_space.low == -env.action_space.high)
        starts = task.sample_start_states(300, np.random.default_rng(0))
        assert np.all(starts >= np.array(low) - 1e-12) and np.all(starts <= np.array(high) + 1e-12)
        assert np.ptp(starts, axis=0) == pytest.approx(np.subtract(high, low), abs=0.1)
    finally:
        env.close()


@pytest.mark.parametrize("name", PROTOCOLS)
def test_the_full_preset_is_the_default_recipe(name: str) -> None:
    config = experiment_config(name, "full")
    ours = flat(to_dict(config))
    data = config.data
    recipe = flat(to_dict(build_config(defaults_config(data.env_id, data.env_kwargs))))
    changed = {key for key in ours if ours[key] != recipe[key]} - {"name", "preset"}
    assert {key for key in changed if not key.startswith("eval.")} <= RECIPE_FIELDS


@pytest.mark.parametrize("name", PROTOCOLS)
def test_check_env_passes_on_each_protocol(name: str) -> None:
    config = experiment_config(name, "debug")
    results = check_environment(config.data.env_id, **evaluation_env_kwargs(config))
    assert [r.name for r in results if not r.passed] == []
    assert len(results) == 9


def test_balance_trains_the_swing_ups_model_and_evaluates_it_from_upright() -> None:
    """PC3 trains one pendulum model for both tasks: the same dataset, model and training."""
    for preset in ("full", "pc3"):
        balance = experiment_config("pc3_pendulum_balance", preset)
        swing_up = experiment_config("pc3_pendulum_swingup", preset)
        assert dataset_dir(balance.data) == dataset_dir(swing_up.data)
        assert (balance.data, balance.model, balance.loss, balance.train) == (
            swing_up.data, swing_up.model, swing_up.loss, swing_up.train,
        )  # fmt: skip
        assert balance.eval.env_kwargs == {"start_low": [0.0, 0.0], "start_high": [0.0, 0.0]}
        assert swing_up.eval.env_kwargs == {}


@pytest.mark.parametrize("name", ["pc3_planar", "pc3_pendulum_swingup", "pc3_pendulum_balance"])
def test_the_pc3_preset_trains_the_pc3_kind_as_its_authors_do(name: str) -> None:
    """train_pc3.py's defaults: batch 256, a constant learning rate of 5e-4, L2 1e-3."""
    config = experiment_config(name, "pc3")
    train = config.train
    assert config.model.kind == "pc3" and config.model.transition_rank == config.model.latent_dim
    assert (train.batch_size, train.learning_rate, train.final_learning_rate) == (256, 5e-4, 5e-4)
    assert train.weight_decay == 1e-3
    assert to_dict(config.loss.pc3) == to_dict(PC3LossConfig())  # the kind's: the authors'
    assert config.loss.multi_step.horizon == 1  # the recipe's E2C term, not read, left out


def test_steps_in_goal_count_pc3s_goal_region_over_pc3s_episode() -> None:
    """An agent that pushes with the full torque from upright: the evaluation's share of steps
    in goal is the share of s_1 .. s_100 with |theta| <= pi/6 under PC3's physics."""
    config = experiment_config("pc3_pendulum_balance", "debug")
    kwargs = evaluation_env_kwargs(config)
    env = make_env(config.data.env_id, **kwargs)
    task = env.unwrapped
    push = RandomAgent(np.array([0.65]), np.array([0.65]))
    starts = task.sample_start_states(2, np.random.default_rng(0))
    rollout = run_episodes(config.data.env_id, task, push, starts, 100, env_kwargs=kwargs)
    metrics = rollout_metrics(task, rollout)
    state, inside = starts[:1], []
    for _ in range(100):
        state = task.next_states(state, np.array([[0.65]]))
        inside.append(abs(state[0, 0]) <= np.pi / 6)
    assert 0 < sum(inside) < 100  # it leaves the goal region, and not at once
    assert metrics["steps_in_goal"].tolist() == [sum(inside) / 100] * 2
    assert metrics["success"].tolist() == [float(all(inside[-10:]))] * 2
    idle = RandomAgent(np.array([0.0]), np.array([0.0]))
    still = rollout_metrics(task, run_episodes(config.data.env_id, task, idle, starts, 100,
                                               env_kwargs=kwargs))  # fmt: skip
    assert still["steps_in_goal"].tolist() == [1.0, 1.0] and still["success"].tolist() == [1, 1]
    env.close()


def test_the_oracle_plans_with_the_envs_own_pendulum_physics() -> None:
    config = experiment_config("pc3_pendulum_swingup", "debug")
    env = make_env(config.data.env_id, **config.data.env_kwargs)
    task = env.unwrapped
    rng = np.random.default_rng(0)
    states = task.sample_states(64, rng)
    u = rng.uniform(-1.0, 1.0, (64, 1))  # beyond the 0.65 N m bound, clipped by both
    planned = true_dynamics(task).step(torch.as_tensor(states), torch.as_tensor(u)).numpy()
    planned[:, 0] = np.angle(np.exp(1j * planned[:, 0]))
    np.testing.assert_allclose(planned, task.next_states(states, u), atol=1e-9)
    env.close()


def test_the_pcc_preset_is_the_recipe_with_pccs_planar_networks() -> None:
    """PCC-pytorch's planar networks: 300-300 encoder and decoder with BatchNorm, a 20-20
    dynamics network; the recipe's optimizer and the kind's loss weights (the authors')."""
    config = experiment_config("pc3_planar", "pcc")
    recipe = experiment_config("pc3_planar", "full")
    model = config.model
    assert (model.kind, model.hidden_sizes, model.batch_norm) == ("pcc", (300, 300), True)
    assert (model.transition_hidden_sizes, model.transition_rank) == ((20, 20), 2)
    assert not recipe.model.batch_norm
    assert (config.train, config.data, config.plan) == (recipe.train, recipe.data, recipe.plan)
    assert to_dict(config.loss.pcc) == to_dict(PCCLossConfig())


def test_the_close_cartpole_preset_is_the_recipe_near_upright_with_a_closer_view() -> None:
    """The close preset changes the data's start states, the camera and frame size (so the
    model's input), and the planner's state unit: nothing else of the model, its training or
    the task."""
    close = experiment_config("pc3_cartpole", "close")
    full = experiment_config("pc3_cartpole", "full")
    ours, recipe = flat(to_dict(close)), flat(to_dict(full))
    changed = {key for key in ours if ours[key] != recipe[key]} - {"name", "preset"}
    assert changed == {
        "data.near_goal_share", "data.near_goal_widths", "data.env_kwargs", "model.obs_shape",
        "plan.state_scale",
    }  # fmt: skip
    assert close.model.obs_shape == (2, 48, 48)
    assert close.data.near_goal_share == 1.0 and close.plan.state_scale == "cost"
    assert close.data.near_goal_widths == (0.6, 0.2, 0.6, 0.5)
    kwargs = dict(close.data.env_kwargs)
    assert (kwargs.pop("view_width"), kwargs.pop("image_size")) == (2.2, 48)
    assert kwargs == {k: v for k, v in full.data.env_kwargs.items() if k != "image_size"}
    assert dataset_dir(close.data) != dataset_dir(full.data)
    env = make_env(close.data.env_id, **evaluation_env_kwargs(close))
    try:
        task = env.unwrapped
        assert task.observation_space.shape == (2, 48, 48)
        assert task.model.cam_fovy.tolist() == [2.2]
        assert (task.horizon, task.goal_radius) == (50, pytest.approx(np.pi / 10))
    finally:
        env.close()
