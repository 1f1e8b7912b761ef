"""Experiment files: the built-in ones, one clear error per bad file, and configs resolved from
the env (its spaces) and from a dataset's metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latentrl.config import save_config, to_dict
from latentrl.data import FORMAT, FORMAT_VERSION, METADATA_FILE
from latentrl.errors import UserError
from latentrl.experiment_files import (
    EXPERIMENTS_DIR,
    builtin_experiments,
    experiment_path,
    read_experiment,
)
from latentrl.losses import LossConfig
from latentrl.pipeline import config_file_dict, defaults_config, experiment_config, resolve

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = {
    "cartpole": ("latentrl/CartpoleSwingup-v0", [2, 64, 64], 1),
    "mujoco_pendulum": ("latentrl/PendulumSwingup-v0", [2, 48, 48], 1),
    "pc3_cartpole": ("latentrl/CartpoleSwingup-v0", [2, 80, 80], 1),
    "pc3_pendulum_balance": ("latentrl/Pendulum-v0", [2, 48, 48], 1),
    "pc3_pendulum_swingup": ("latentrl/Pendulum-v0", [2, 48, 48], 1),
    "pc3_planar": ("latentrl/Planar-v0", [1, 40, 40], 2),
    "pendulum": ("latentrl/Pendulum-v0", [2, 48, 48], 1),
    "planar": ("latentrl/Planar-v0", [1, 40, 40], 2),
}
"""Built-in experiments: env, observation shape, action size. The pc3_* ones make their env
with the PC3 paper's protocol as env kwargs (tests/test_pc3_protocols.py checks them)."""


def test_the_built_in_experiments_are_the_files_of_the_checkout() -> None:
    assert EXPERIMENTS_DIR == ROOT / "experiments"
    assert list(builtin_experiments()) == sorted(BUILTIN)
    assert experiment_path("planar") == ROOT / "experiments" / "planar.toml"
    with pytest.raises(UserError, match="unknown experiment 'pendulun'; choose one of cartpole, "):
        experiment_path("pendulun")
    with pytest.raises(UserError, match=r"no experiment file at nowhere/x\.toml"):
        experiment_path("nowhere/x.toml")


@pytest.mark.parametrize("name", sorted(BUILTIN))
@pytest.mark.parametrize("preset", ["debug", "full"])
def test_every_built_in_preset_resolves_with_the_envs_facts(name: str, preset: str) -> None:
    env_id, obs_shape, action_dim = BUILTIN[name]
    raw = read_experiment(experiment_path(name), preset)
    assert "obs_shape" not in raw["model"] and "action_dim" not in raw["model"]
    config = experiment_config(name, preset, seed=5)
    assert (config.name, config.preset, config.data.env_id) == (name, preset, env_id)
    assert (list(config.model.obs_shape), config.model.action_dim) == (obs_shape, action_dim)
    assert config.train.seed == 5 and bool(config.data.env_kwargs) == name.startswith("pc3_")
    full = 40_000 if name == "pc3_cartpole" else 20_000  # the recipe: 10,000 per state dim
    assert config.data.transitions == {"debug": 2_000, "full": full}[preset]
    assert experiment_config(name, seed=5) == experiment_config(name, "full", seed=5)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


GOOD = """
default_preset = "small"
[data]
env_id = "latentrl/Pendulum-v0"
[train]
epochs = 7
[presets.small.train]
epochs = 2
[presets.big.data]
transitions = 500
"""


def test_a_file_of_shared_tables_and_preset_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    small = experiment_config(path)
    assert (small.name, small.preset, small.train.epochs) == ("mine", "small", 2)
    big = experiment_config(str(path), "big", overrides=["train.batch_size=32"])
    assert (big.preset, big.train.epochs, big.data.transitions) == ("big", 7, 500)
    assert big.train.batch_size == 32 and big.model.latent_dim == 3  # the schema's default
    plain = experiment_config(write(tmp_path, '[data]\nenv_id = "latentrl/Planar-v0"\n'))
    assert plain.preset == "default" and plain.model.obs_shape == (1, 40, 40)


@pytest.mark.parametrize(
    ("text", "preset", "message"),
    [
        (GOOD + "[trian]\nepochs = 3\n", None, "unknown field trian; allowed here: data, "),
        (GOOD + "[plan]\nhorizn = 3\n", None, r"unknown field plan\.horizn; allowed in \[plan\]: "),
        (
            GOOD + "[presets.big.eval]\nepisods = 3\n",
            "small",
            r"unknown field presets\.big\.eval\.episods; allowed in \[eval\]: episodes, ",
        ),
        (GOOD.replace("epochs = 7", 'epochs = "7"'), "big", "train.epochs must be int, got '7'"),
        (
            GOOD + "[plan.options.blocked_pushes]\nratio = 1.5\n",
            None,
            r"plan\.options\.blocked_pushes\.ratio must be a finite number in \(0, 1\]",
        ),
        (
            GOOD + '[presets.small.data]\nmode = "sideways"\n',
            None,
            r"data\.mode must be one of \['uniform'",
        ),
        (GOOD, "huge", "unknown preset 'huge'; choose one of small, big"),
        (GOOD + "[train\nepochs = 3\n", None, "is not valid TOML"),
        (GOOD + "[model]\nobs_shape = [1, 8, 8]\n", None, r"model\.obs_shape comes from the env"),
        ("loss = 3\n" + GOOD, None, r"loss must be a table \(\[loss\]\), got 3"),
    ],
)
def test_a_bad_file_gets_one_error_naming_the_file_and_the_field(
    tmp_path: Path, text: str, preset: str | None, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UserError, match=message) as refused:
        experiment_config(path, preset)
    assert str(refused.value).startswith(str(path))
    assert "\n" not in str(refused.value)


def test_an_override_is_blamed_on_the_override_and_env_facts_cannot_be_set() -> None:
    with pytest.raises(UserError, match=r"^train\.epochs must be int") as refused:
        experiment_config("pendulum", "debug", overrides=["train.epochs=many"])
    assert "pendulum.toml" not in str(refused.value)
    with pytest.raises(UserError, match="comes from the env's spaces and cannot be set"):
        experiment_config("pendulum", "debug", overrides=["model.obs_shape=[1,8,8]"])


def test_an_env_without_a_file_gets_the_recipe_and_its_kwargs_reach_the_config(
    tmp_path: Path,
) -> None:
    config = resolve(defaults_config("latentrl/Planar-v0", {"max_episode_steps": 30}))
    assert (config.name, config.preset) == ("default", "default")
    assert config.data.env_kwargs == {"max_episode_steps": 30}
    assert (config.model.obs_shape, config.model.action_dim) == ((1, 40, 40), 2)
    bare = experiment_config(write(tmp_path, '[data]\nenv_id = "latentrl/Planar-v0"\n'))
    assert bare.train.epochs == 100  # a file without default_recipe: the schema's defaults
    assert to_dict(config.train) == to_dict(bare.train) | {"epochs": 50}  # the recipe's


def test_a_preset_of_another_kind_keeps_only_the_loss_settings_its_kind_reads(
    tmp_path: Path,
) -> None:
    """The recipe under the file sets E2C's multi-step term; a preset of the PC3 kind drops
    it (PC3 does not read it) and keeps its own loss.pc3 settings."""
    path = write(
        tmp_path,
        'default_recipe = true\n[data]\nenv_id = "latentrl/Pendulum-v0"\n'
        "[presets.e2c.train]\nepochs = 2\n"
        '[presets.pc3.model]\nkind = "pc3"\n[presets.pc3.loss.pc3]\nlambda_cur = 3.0\n',
    )
    e2c = experiment_config(path, "e2c")
    assert e2c.model.kind == "e2c" and e2c.loss.multi_step.horizon == 8  # the recipe's
    pc3 = experiment_config(path, "pc3")
    assert pc3.model.kind == "pc3" and pc3.loss.pc3.lambda_cur == 3.0
    assert to_dict(pc3.loss) == to_dict(LossConfig()) | {"pc3": to_dict(pc3.loss.pc3)}


def fake_dataset(tmp_path: Path, **meta: object) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    base = {"format": FORMAT, "format_version": FORMAT_VERSION, "complete": True, "env_kwargs": {}}
    (path / METADATA_FILE).write_text(json.dumps(base | meta))
    return path


def test_a_dataset_fixes_the_data_section_and_conflicts_are_refused(tmp_path: Path) -> None:
    data = fake_dataset(
        tmp_path,
        env_id="latentrl/Pendulum-v0",
        mode="uniform",
        transitions=1_234,
        seed=9,
        chain_length=12,
        near_goal_share=0.25,
        near_goal_widths=[0.1, 1.0],
    )
    config = experiment_config("pendulum", "debug", dataset=data)
    got = to_dict(config.data)
    keys = ("transitions", "seed", "chain_length", "near_goal_share", "near_goal_widths")
    assert {k: got[k] for k in keys} == {
        "transitions": 1_234,
        "seed": 9,
        "chain_length": 12,
        "near_goal_share": 0.25,
        "near_goal_widths": [0.1, 1.0],
    }
    assert config.train.epochs == 3  # the rest is the preset's
    same = experiment_config("pendulum", "debug", overrides=["data.seed=9"], dataset=data)
    assert same == config
    with pytest.raises(UserError, match=r"--set data\.seed=3 conflicts with the dataset"):
        experiment_config("pendulum", "debug", overrides=["data.seed=3"], dataset=data)
    wrong_env = r'is of env_id="latentrl/Pendulum-v0", but .*planar\.toml trains on env_id='
    with pytest.raises(UserError, match=wrong_env):
        experiment_config("planar", "debug", dataset=data)
    with pytest.raises(UserError, match="no dataset at"):
        experiment_config("pendulum", "debug", dataset=tmp_path / "missing")


def test_a_runs_config_json_trains_again_with_its_facts_read_from_the_env(tmp_path: Path) -> None:
    config = experiment_config("planar", "debug", seed=2, overrides=["train.epochs=1"])
    save_config(config, tmp_path / "config.json")
    again = config_file_dict(tmp_path / "config.json")
    assert "obs_shape" not in again["model"]
    assert resolve(again) == config
    assert resolve(again, ["train.epochs=4"], seed=3).train.epochs == 4
    with pytest.raises(UserError, match="--preset applies to experiment files"):
        config_file_dict(tmp_path / "config.json", "full")
