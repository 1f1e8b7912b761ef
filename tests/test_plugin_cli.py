"""The worked plug-in example (docs/examples/point_mass.py) end to end through the command
line: check-env, collect, train --data, evaluate, compare. No Python beyond the env module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from point_mass import ENV_ID

from latentrl.cli import main
from latentrl.envs import make_env

ENV_KWARGS = {"max_episode_steps": 60}  # gymnasium.make's time limit: the env's 50 steps fit
TINY = [
    "model.hidden_sizes=[32]",
    "model.transition_hidden_sizes=[8]",
    "train.epochs=1",
    "train.batch_size=50",
    "train.probe_steps=10",
    "eval.episodes=1",
    "eval.gifs=0",
    "eval.oracle_horizon=20",
    "plan.horizon=5",
    "plan.max_iterations=2",
]


def _sets(assignments: list[str]) -> list[str]:
    return [item for a in assignments for item in ("--set", a)]


def test_a_plug_in_env_goes_through_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-env", ENV_ID]) == 0
    assert "9 passed, 0 failed" in capsys.readouterr().out

    data, run = tmp_path / "data", tmp_path / "run"
    kwargs = json.dumps(ENV_KWARGS)
    collect = ["collect", ENV_ID, "--transitions", "300", "--out", str(data)]
    assert main([*collect, "--seed", "4", "--env-kwargs", kwargs]) == 0
    train = ["train", "--data", str(data), "--run-dir", str(run), "--wandb", "disabled"]
    assert main([*train, *_sets(TINY)]) == 0

    config = json.loads((run / "config.json").read_text())
    env = make_env(ENV_ID, **ENV_KWARGS)
    assert config["model"]["obs_shape"] == list(env.observation_space.shape) == [2, 32, 32]
    assert config["model"]["action_dim"] == env.action_space.shape[0] == 1
    assert env.spec is not None and env.spec.max_episode_steps == 60
    env.close()
    assert config["data"]["env_kwargs"] == ENV_KWARGS and config["data"]["env_id"] == ENV_ID
    assert (config["data"]["transitions"], config["data"]["seed"]) == (300, 4)  # the dataset's
    assert (config["name"], config["preset"]) == ("default", "default")

    # the kwargs reach evaluation: its env has the 60-step limit they set
    capsys.readouterr()
    assert main(["evaluate", str(run), "--set", "eval.horizon=61", "--agents", "random"]) == 2
    assert "time limit of 60 steps" in capsys.readouterr().err

    assert main(["evaluate", str(run), "--wandb", "disabled"]) == 0
    results = json.loads((run / "eval" / "results.json").read_text())
    assert list(results["agents"]) == ["latent", "oracle", "random"]
    assert (results["env_id"], results["episodes"], results["horizon"]) == (ENV_ID, 1, 50)
    oracle = results["agents"]["oracle"]["aggregate"]
    assert oracle["success"]["mean"] == 1.0

    out = tmp_path / "compare.png"
    assert main(["compare", str(run), "--out", str(out)]) == 0
    comparison = json.loads(out.with_suffix(".json").read_text())
    (group,) = comparison.values()
    assert group["runs"] == [str(run)] and group["seeds"] == [0]
    assert group["agents"]["oracle"]["success"]["mean"] == 1.0


def test_train_env_alone_uses_the_schema_defaults_and_refuses_a_mismatched_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert main(["collect", ENV_ID, "--transitions", "100", "--out", str(data)]) == 0
    capsys.readouterr()
    wrong = ["train", "--env", "latentrl/Pendulum-v0", "--data", str(data)]
    assert main(wrong) == 2
    err = capsys.readouterr().err
    assert f'is of env_id="{ENV_ID}", but --env latentrl/Pendulum-v0 trains on' in err
    kwargs = ["--env-kwargs", '{"max_episode_steps": 9}']
    assert main(["train", "--env", ENV_ID, *kwargs, "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert 'trains on env_kwargs={"max_episode_steps": 9}' in err
    assert "is of env_kwargs={}, but --env point_mass:PointMass-v0" in err
    assert main(["train", "--data", str(data), "--set", "data.transitions=5"]) == 2
    assert "--set data.transitions=5 conflicts with the dataset" in capsys.readouterr().err
    assert main(["train", "--env-kwargs", "{}"]) == 2
    assert "--env-kwargs goes with --env" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert "say what to train: --experiment NAME_OR_FILE" in capsys.readouterr().err


def test_train_env_collects_with_the_default_recipe_and_records_the_env_facts(
    tmp_path: Path,
) -> None:
    small = ["data.transitions=120", "data.chain_length=8", "loss.multi_step.horizon=4"]
    args = ["train", "--env", ENV_ID, "--env-kwargs", json.dumps(ENV_KWARGS)]
    roots = ["--data-root", str(tmp_path / "data"), "--runs-root", str(tmp_path / "runs")]
    assert main([*args, *roots, "--wandb", "disabled", *_sets([*small, *TINY])]) == 0

    (run,) = (tmp_path / "runs").iterdir()
    config = json.loads((run / "config.json").read_text())
    assert (config["name"], config["preset"]) == ("default", "default")
    assert config["model"]["obs_shape"] == [2, 32, 32] and config["model"]["action_dim"] == 1
    assert config["data"]["env_kwargs"] == ENV_KWARGS
    (dataset,) = (tmp_path / "data").iterdir()  # collected here, with the kwargs and chains
    metadata = json.loads((dataset / "metadata.json").read_text())
    assert metadata["env_kwargs"] == ENV_KWARGS
    assert (metadata["transitions"], metadata["chain_length"]) == (120, 8)
    assert json.loads((run / "run.json").read_text())["dataset"] == str(dataset)


def test_run_env_runs_the_default_recipe_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs, data = tmp_path / "runs", tmp_path / "data"
    command = ["run", "--env", ENV_ID, "--env-kwargs", json.dumps(ENV_KWARGS)]
    command += ["--runs-root", str(runs), "--data-root", str(data), "--wandb", "disabled"]
    sets = _sets([*TINY, "data.transitions=400"])
    assert main([*command, *sets]) == 0
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["chain_length"] == 16  # the recipe's chains
    assert config["model"]["latent_dim"] == 2  # the point mass's (x, y)
    assert config["data"]["env_kwargs"] == ENV_KWARGS
    (table,) = runs.glob("PointMass-v0__recipe__*compare.png")  # named after its settings too
    assert table.name.startswith("PointMass-v0__recipe__set_")
    capsys.readouterr()
    assert main(["run", "pendulum", "--env", ENV_ID]) == 2
    assert main(["run"]) == 2
    assert main(["run", "--env", ENV_ID, "--preset", "debug"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors[0].endswith("an experiment NAME_OR_FILE or --env ID, not both")
    assert len(errors) == 3 and "--preset applies to experiment files" in errors[2]
