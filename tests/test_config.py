"""Experiment configs: the built-in presets, overrides, old config files, and impossible
combinations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from latentrl.config import (
    DataConfig,
    apply_overrides,
    load_config,
    save_config,
    to_dict,
)
from latentrl.envs import make_env, require_control_env
from latentrl.errors import UserError
from latentrl.pipeline import dataset_dir, experiment_config

EXPERIMENTS = ("pendulum", "planar", "mujoco_pendulum", "cartpole")


def test_presets_train_the_multi_step_term_on_chained_data() -> None:
    for experiment, name in [
        ("pendulum", "debug"),
        ("pendulum", "full"),
        ("mujoco_pendulum", "full"),
        ("planar", "full"),
        ("cartpole", "full"),
    ]:
        config = experiment_config(experiment, name)
        assert config.data.chain_length >= config.train.multi_step_horizon > 1


def test_presets_film_every_episode_and_bad_gif_counts_are_refused() -> None:
    assert experiment_config("planar", "full").eval.gifs is None
    assert experiment_config("pendulum", "debug").eval.gifs is None
    assert apply_overrides(experiment_config("pendulum"), ["eval.gifs=2"]).eval.gifs == 2
    for bad in ("-1", "true", "1.5"):
        with pytest.raises(UserError, match=r"gifs"):
            apply_overrides(experiment_config("pendulum"), [f"eval.gifs={bad}"])


def test_recorded_moves_need_the_roadmap_and_a_count() -> None:
    assert experiment_config("planar", "full").plan.recorded_moves == 32
    assert experiment_config("planar", "debug").plan.recorded_moves == 32
    assert experiment_config("pendulum", "full").plan.recorded_moves == 0
    with pytest.raises(UserError, match=r"plan\.roadmap_lookahead > 0 as well"):
        apply_overrides(experiment_config("pendulum"), ["plan.recorded_moves=8"])
    with pytest.raises(UserError, match=r"recorded_moves"):
        apply_overrides(experiment_config("planar"), ["plan.recorded_moves=-1"])


def test_a_multi_step_horizon_longer_than_the_chains_is_refused() -> None:
    with pytest.raises(UserError, match=r"data\.chain_length=16 or more"):
        apply_overrides(
            experiment_config("pendulum"), ["train.multi_step_horizon=16", "data.chain_length=8"]
        )
    with pytest.raises(UserError, match=r"or train\.multi_step_horizon=1"):
        apply_overrides(experiment_config("pendulum"), ["data.chain_length=1"])
    unchained = ["data.chain_length=1", "train.multi_step_horizon=1"]
    plain = apply_overrides(experiment_config("pendulum"), unchained)
    assert plain.data.chain_length == 1
    with pytest.raises(UserError, match="uniform mode only"):
        DataConfig(mode="rollout", chain_length=4)
    with pytest.raises(UserError, match="multi_step_horizon must be >= 1"):
        apply_overrides(experiment_config("planar"), ["train.multi_step_horizon=0"])


def test_a_config_written_before_chains_still_loads(tmp_path: Path) -> None:
    unchained = apply_overrides(
        experiment_config("cartpole"), ["data.chain_length=1", "train.multi_step_horizon=1"]
    )
    data = to_dict(unchained)
    del data["data"]["chain_length"], data["train"]["multi_step_horizon"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert load_config(tmp_path / "config.json") == unchained
    save_config(experiment_config("pendulum"), tmp_path / "again.json")
    assert load_config(tmp_path / "again.json") == experiment_config("pendulum")


def test_a_config_from_another_version_names_the_file_the_field_and_the_way_out(
    tmp_path: Path,
) -> None:
    data = to_dict(experiment_config("planar"))
    data["plan"]["stuck_lookahead"] = 1.0
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError) as refused:
        load_config(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: unknown field(s) plan.stuck_lookahead; allowed in plan:")
    assert "Another version of latentrl wrote them" in message
    del data["plan"]["stuck_lookahead"]
    path.write_text(json.dumps(data))
    assert load_config(path) == experiment_config("planar")
    data["train"]["epochs"] = "many"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"config\.json: train\.epochs must be int"):
        load_config(path)


def test_chained_datasets_get_their_own_directory() -> None:
    root = Path("data")
    plain = dataset_dir(DataConfig(), root)
    chained = dataset_dir(DataConfig(chain_length=16), root)
    assert plain == root / "Pendulum-v0__uniform__20000__seed0"
    assert chained == root / "Pendulum-v0__uniform__20000__seed0__chain16"
    near = dataset_dir(DataConfig(chain_length=16, near_goal_share=0.25), root)
    assert near == root / "Pendulum-v0__uniform__20000__seed0__chain16__near0.25"
    kwargs = dataset_dir(DataConfig(env_kwargs={"b": 2, "a": [1]}), root)
    assert kwargs.name.startswith("Pendulum-v0__uniform__20000__seed0__kwargs")
    assert len(kwargs.name) == len(plain.name) + len("__kwargs") + 8
    assert kwargs == dataset_dir(DataConfig(env_kwargs={"a": [1], "b": 2}), root)
    assert kwargs != dataset_dir(DataConfig(env_kwargs={"a": [1], "b": 3}), root)
    with pytest.raises(UserError, match=r"data\.env_kwargs must be a JSON object"):
        apply_overrides(experiment_config("pendulum"), ["data.env_kwargs=[1]"])
    with pytest.raises(UserError, match="near_goal_share must lie in"):
        apply_overrides(experiment_config("cartpole"), ["data.near_goal_share=-0.1"])


def test_optional_fields_are_type_checked() -> None:
    assert apply_overrides(experiment_config("planar"), ["eval.horizon=null"]).eval.horizon is None
    assert apply_overrides(experiment_config("planar"), ["eval.horizon=30"]).eval.horizon == 30
    with pytest.raises(UserError, match=r"eval\.horizon must be int"):
        apply_overrides(experiment_config("planar"), ["eval.horizon=thirty"])


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        (
            "train.multi_step_encoder_gradient=1.5",
            r"multi_step_encoder_gradient must be in \[0, 1\]",
        ),
        (
            "train.multi_step_encoder_gradient=-0.1",
            r"multi_step_encoder_gradient must be in \[0, 1\]",
        ),
        ("plan.shooting_steps=0", "shooting_steps must be >= 1 or null"),
        ("plan.shooting_steps=true", "shooting_steps"),
        ("plan.shooting_beyond=-0.5", "shooting_beyond must be >= 0"),
        ("plan.shooting_beyond=NaN", "shooting_beyond must be >= 0"),
        ("plan.r=NaN", "need q >= 0, q_f >= 0, r > 0"),
        ("plan.shooting_beyond=half", "plan.shooting_beyond must be a number, got 'half'"),
        ("plan.blocked_ratio=1.5", r"blocked_ratio must be in \[0, 1\], got 1.5"),
        ("plan.blocked_ratio=NaN", r"blocked_ratio must be in \[0, 1\]"),
        ("plan.roadmap_lookahead=-1", "roadmap_lookahead must be finite and >= 0, got -1"),
        ("plan.roadmap_lookahead=NaN", "roadmap_lookahead must be finite and >= 0"),
        ("plan.roadmap_lookahead=2", "roadmap_lookahead and plan.shooting do not combine"),
        ("train.curvature_radius=0", "curvature_radius must be > 0, got 0"),
        ("train.curvature_radius=NaN", "curvature_radius must be > 0"),
        ("train.move_gate_blocked_share=1", r"move_gate_blocked_share must lie in \(0, 1\)"),
        ("train.move_gate_blocked_share=NaN", "move_gate_blocked_share must lie in"),
        ("loss.move_gate=10", "the model has none; set model.move_gate=true, or loss.move_gate=0"),
    ],
)
def test_impossible_multi_step_and_shooting_settings_are_refused(
    assignment: str, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        apply_overrides(experiment_config("pendulum"), [assignment])
    fine = [
        "train.multi_step_encoder_gradient=0",
        "plan.shooting_steps=60",
        "plan.shooting=64",
        "plan.shooting_beyond=0.5",
    ]
    config = apply_overrides(experiment_config("pendulum"), fine)
    assert (config.train.multi_step_encoder_gradient, config.plan.shooting_steps) == (0.0, 60)
    assert config.plan.shooting_beyond == 0.5


@pytest.mark.parametrize("name", ["debug", "full"])
def test_only_planar_plans_with_blocked_pushes_and_a_roadmap_in_both_presets(name: str) -> None:
    plans = {experiment: experiment_config(experiment, name).plan for experiment in EXPERIMENTS}
    ratios = {experiment: plan.blocked_ratio for experiment, plan in plans.items()}
    assert ratios == {"pendulum": 0.0, "planar": 0.5, "mujoco_pendulum": 0.0, "cartpole": 0.0}
    lookaheads = {experiment: plan.roadmap_lookahead for experiment, plan in plans.items()}
    assert lookaheads == {"pendulum": 0.0, "planar": 2.0, "mujoco_pendulum": 0.0, "cartpole": 0.0}


def test_planar_full_evaluates_100_starts_whose_first_20_are_the_other_presets() -> None:
    episodes = {
        experiment: experiment_config(experiment).eval.episodes for experiment in EXPERIMENTS
    }
    assert episodes == {"pendulum": 20, "planar": 100, "mujoco_pendulum": 20, "cartpole": 20}
    task = require_control_env(make_env("latentrl/Planar-v0"))
    seed = experiment_config("planar").eval.seed
    hundred = task.sample_start_states(100, np.random.default_rng(seed))
    twenty = task.sample_start_states(20, np.random.default_rng(seed))
    np.testing.assert_array_equal(hundred[:20], twenty)  # earlier 20-start results stay comparable
    assert len(np.unique(hundred, axis=0)) == 100
