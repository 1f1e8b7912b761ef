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
from latentrl.planning.options.restarts import RestartsConfig
from latentrl.planning.options.roadmap import RoadmapConfig
from latentrl.planning.options.shooting import ShootingConfig

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
        assert config.data.chain_length >= config.loss.multi_step.horizon > 1


def test_presets_film_every_episode_and_bad_gif_counts_are_refused() -> None:
    assert experiment_config("planar", "full").eval.gifs is None
    assert experiment_config("pendulum", "debug").eval.gifs is None
    assert apply_overrides(experiment_config("pendulum"), ["eval.gifs=2"]).eval.gifs == 2
    for bad in ("-1", "true", "1.5"):
        with pytest.raises(UserError, match=r"gifs"):
            apply_overrides(experiment_config("pendulum"), [f"eval.gifs={bad}"])


def test_recorded_moves_need_the_roadmap_and_a_count() -> None:
    assert experiment_config("planar", "full").plan.options["recorded_moves"].count == 32
    assert experiment_config("planar", "debug").plan.options["recorded_moves"].count == 32
    assert "recorded_moves" not in experiment_config("pendulum", "full").plan.options
    with pytest.raises(UserError, match=r"recorded_moves needs plan\.options\.roadmap"):
        apply_overrides(experiment_config("pendulum"), ["plan.options.recorded_moves.count=8"])
    with pytest.raises(UserError, match=r"recorded_moves\.count must be an int >= 1"):
        apply_overrides(experiment_config("planar"), ["plan.options.recorded_moves.count=-1"])


def test_set_creates_an_option_section_with_its_defaults_and_null_removes_it() -> None:
    config = apply_overrides(
        experiment_config("cartpole", "debug"), ["plan.options.shooting.count=8"]
    )
    assert config.plan.options == {"shooting": ShootingConfig(count=8, steps=None, beyond=0.0)}
    both = apply_overrides(config, ["plan.options.restarts={}", "plan.options.shooting.steps=3"])
    assert both.plan.options == {
        "restarts": RestartsConfig(count=2), "shooting": ShootingConfig(count=8, steps=3)
    }  # fmt: skip
    removed = apply_overrides(both, ["plan.options.shooting=null", "plan.options.roadmap=null"])
    assert removed.plan.options == {"restarts": RestartsConfig(count=2)}
    whole = apply_overrides(removed, ['plan.options={"roadmap": {"lookahead": 3}}'])
    assert whole.plan.options == {"roadmap": RoadmapConfig(lookahead=3.0)}
    assert apply_overrides(whole, ["plan.options=null"]).plan.options == {}
    assert (
        experiment_config("pendulum", "full").plan
        == apply_overrides(
            experiment_config("pendulum", "full"), ["plan.options.shooting.count=1024"]
        ).plan
    )  # an override to the value it has changes nothing
    with pytest.raises(UserError, match=r"unknown plan option 'shoting'; known: "):
        apply_overrides(config, ["plan.options.shoting.count=8"])
    with pytest.raises(UserError, match=r"plan\.options\.shooting has no field\(s\) \['cnt'\]"):
        apply_overrides(config, ["plan.options.shooting.cnt=8"])  # a section it has
    with pytest.raises(UserError, match=r"plan\.options\.restarts has no field\(s\) \['cnt'\]"):
        apply_overrides(config, ["plan.options.restarts.cnt=8"])  # a section it creates
    known = r"known: \['belief', 'compile', 'horizon', "
    with pytest.raises(UserError, match=r"no field 'horizn'; " + known):
        apply_overrides(config, ["plan.horizn=8"])
    with pytest.raises(UserError, match=r"--set plan\.horizon\.x: no config section 'horizon'"):
        apply_overrides(config, ["plan.horizon.x=8"])
    with pytest.raises(UserError, match=r"no config section 'pln'"):
        apply_overrides(config, ["pln.options.shooting.count=8"])


def test_a_config_json_with_the_flat_plan_of_older_versions_loads_as_options(
    tmp_path: Path,
) -> None:
    data = to_dict(experiment_config("planar", "debug"))
    data["plan"] = {key: value for key, value in data["plan"].items() if key != "options"} | {
        "restarts": 0, "shooting": 0, "shooting_steps": None, "shooting_beyond": 0.0,
        "blocked_ratio": 0.5, "roadmap_lookahead": 2.0, "recorded_moves": 32,
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert load_config(tmp_path / "config.json") == experiment_config("planar", "debug")


def test_a_multi_step_horizon_longer_than_the_chains_is_refused() -> None:
    with pytest.raises(UserError, match=r"data\.chain_length=16 or more"):
        apply_overrides(
            experiment_config("pendulum"), ["loss.multi_step.horizon=16", "data.chain_length=8"]
        )
    with pytest.raises(UserError, match=r"or loss\.multi_step\.horizon=1"):
        apply_overrides(experiment_config("pendulum"), ["data.chain_length=1"])
    unchained = ["data.chain_length=1", "loss.multi_step.horizon=1"]
    plain = apply_overrides(experiment_config("pendulum"), unchained)
    assert plain.data.chain_length == 1
    with pytest.raises(UserError, match="uniform mode only"):
        DataConfig(mode="rollout", chain_length=4)
    with pytest.raises(UserError, match=r"loss\.multi_step\.horizon must be an int >= 1, got 0"):
        apply_overrides(experiment_config("planar"), ["loss.multi_step.horizon=0"])


def test_a_config_written_before_chains_still_loads(tmp_path: Path) -> None:
    unchained = apply_overrides(
        experiment_config("cartpole"), ["data.chain_length=1", "loss.multi_step.horizon=1"]
    )
    data = to_dict(unchained)
    del data["data"]["chain_length"], data["loss"]["multi_step"]["horizon"]
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
    with pytest.raises(UserError, match="near_goal_share must be"):
        apply_overrides(experiment_config("cartpole"), ["data.near_goal_share=-0.1"])
    widths = DataConfig(chain_length=16, near_goal_share=1, near_goal_widths=[1, 0.1, 1, 0.63])
    assert widths.near_goal_widths == (1, 0.1, 1, 0.63)
    assert dataset_dir(widths, root).name.endswith("__chain16__near1_1_0.1_1_0.63")
    cartpole = experiment_config("cartpole")
    both = ["data.near_goal_share=1", "data.near_goal_widths=[1, 0.1, 1, 0.63]"]
    assert apply_overrides(cartpole, both).data.near_goal_widths == (1, 0.1, 1, 0.63)
    with pytest.raises(UserError, match="near_goal_share is 0"):
        apply_overrides(cartpole, both[1:])
    with pytest.raises(UserError, match=r"near_goal_widths must be a list of which each item"):
        apply_overrides(cartpole, ["data.near_goal_share=1", "data.near_goal_widths=[2]"])


def test_optional_fields_are_type_checked() -> None:
    assert apply_overrides(experiment_config("planar"), ["eval.horizon=null"]).eval.horizon is None
    assert apply_overrides(experiment_config("planar"), ["eval.horizon=30"]).eval.horizon == 30
    with pytest.raises(UserError, match=r"eval\.horizon must be int"):
        apply_overrides(experiment_config("planar"), ["eval.horizon=thirty"])


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        (
            "loss.multi_step.encoder_gradient=1.5",
            r"loss\.multi_step\.encoder_gradient must be a finite number in \[0, 1\]",
        ),
        (
            "loss.multi_step.encoder_gradient=-0.1",
            r"loss\.multi_step\.encoder_gradient must be a finite number in \[0, 1\]",
        ),
        ("plan.options.shooting.steps=0", r"shooting\.steps must be an int >= 1 or null"),
        (
            "plan.options.shooting.steps=true",
            r"plan\.options\.shooting\.steps must be int, got True",
        ),
        ("plan.options.shooting.beyond=-0.5", r"shooting\.beyond must be a finite number >= 0"),
        ("plan.options.shooting.beyond=NaN", r"shooting\.beyond must be a finite number >= 0"),
        ("plan.r=NaN", "plan.r must be a finite number > 0, got nan"),
        (
            "plan.options.shooting.beyond=half",
            r"plan\.options\.shooting\.beyond must be a number, got 'half'",
        ),
        (
            "plan.options.blocked_pushes.ratio=1.5",
            r"ratio must be a finite number in \(0, 1\], got 1.5",
        ),
        ("plan.options.blocked_pushes.ratio=NaN", r"ratio must be a finite number in \(0, 1\]"),
        ("plan.options.roadmap.lookahead=-1", r"lookahead must be a finite number > 0, got -1"),
        ("plan.options.roadmap.lookahead=NaN", r"lookahead must be a finite number > 0"),
        ("plan.options.roadmap.lookahead=2", r"roadmap and plan\.options\.shooting do not combine"),
        (
            "plan.options.shooting.lookahead=39",
            r"shooting\.lookahead=39 is shorter than plan\.horizon=40: .* at least 40 or to null",
        ),
        ("plan.max_iterations=0", r"plan\.max_iterations must be an int >= 1, got 0"),
        ("loss.curvature.radius=0", r"loss\.curvature\.radius must be a finite number > 0, got 0"),
        ("loss.curvature.radius=NaN", r"loss\.curvature\.radius must be a finite number > 0"),
        (
            "loss.curvature.weight=-1",
            r"loss\.curvature\.weight must be a finite number >= 0, got -1",
        ),
        ("loss.move_gate.weight=10", r"--set loss\.move_gate\.weight: no config section"),
        (
            "plan.shooting=64",
            r"^--set plan\.shooting: moved to plan\.options\.shooting\.count in latentrl 0\.2 ",
        ),
        ("plan.blocked_ratio=0.5", r"moved to plan\.options\.blocked_pushes\.ratio"),
        ("model.move_gate=true", r"^--set model\.move_gate: belonged to the move gate, an exp"),
        (
            "train.multi_step_horizon=4",
            r"^--set train\.multi_step_horizon: moved to loss\.multi_step\.horizon in "
            r"latentrl 0\.2$",
        ),
        (
            "loss.curvature=1",
            r"^--set loss\.curvature: a section since latentrl 0\.2: set loss\.curvature\.weight$",
        ),
    ],
)
def test_impossible_multi_step_and_shooting_settings_are_refused(
    assignment: str, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        apply_overrides(experiment_config("pendulum"), [assignment])
    fine = [
        "loss.multi_step.encoder_gradient=0",
        "plan.options.shooting.steps=60",
        "plan.options.shooting.count=64",
        "plan.options.shooting.beyond=0.5",
    ]
    config = apply_overrides(experiment_config("pendulum"), fine)
    shooting = config.plan.options["shooting"]
    assert (config.loss.multi_step.encoder_gradient, shooting.steps) == (0.0, 60)
    assert (shooting.count, shooting.beyond) == (64, 0.5)


@pytest.mark.parametrize("name", ["debug", "full"])
def test_only_planar_plans_with_a_roadmap_in_both_presets(name: str) -> None:
    plans = {experiment: experiment_config(experiment, name).plan for experiment in EXPERIMENTS}
    names = {experiment: sorted(plan.options) for experiment, plan in plans.items()}
    recipe = ["blocked_pushes", "shooting"]  # the pendulums: the recipe's, which name no task
    assert names == {
        "pendulum": recipe, "planar": ["blocked_pushes", "recorded_moves", "roadmap"],
        "mujoco_pendulum": recipe, "cartpole": [],
    }  # fmt: skip
    planar = plans["planar"].options
    assert (planar["blocked_pushes"].ratio, planar["roadmap"].lookahead) == (0.5, 2.0)
    assert plans["pendulum"].options["shooting"] == ShootingConfig(
        count=1024, beyond=0.5, terminal_weight=10.0
    )


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
