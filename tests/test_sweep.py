"""``latentrl sweep``: a W&B sweep file whose every trial is a ``latentrl run`` that works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from latentrl.cli import build_parser, main
from latentrl.errors import UserError
from latentrl.experiment_cli import json_settings
from latentrl.logging import run_group
from latentrl.pipeline import defaults_config, experiment_config, resolve
from latentrl.sweep import (
    Parameter,
    expand_command,
    grid_trials,
    parse_parameter,
    read_sweep_file,
    sweep_config,
)

TINY = [
    "data.transitions=300",
    "model.hidden_sizes=[32]",
    "model.transition_hidden_sizes=[8]",
    "train.epochs=1",
    "train.batch_size=50",
    "train.probe_steps=5",
    "eval.episodes=1",
    "eval.horizon=5",
    "eval.gifs=0",
    'eval.agents=["latent"]',
    "plan.max_iterations=2",
]
"""Fixed settings that make a pendulum debug trial take seconds."""


def test_parameters_from_the_command_line() -> None:
    assert parse_parameter("plan.horizon=20,30") == Parameter("plan.horizon", values=(20, 30))
    kinds = parse_parameter("model.kind=e2c,filter")
    assert kinds.to_wandb() == {"values": ["e2c", "filter"]}
    sizes = parse_parameter("model.hidden_sizes=[[32], [64, 64]]")
    assert sizes.values == ([32], [64, 64])
    rate = parse_parameter("train.learning_rate=log_uniform_values:1e-4:1e-2")
    assert rate.to_wandb() == {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}
    assert parse_parameter("plan.horizon=int_uniform:10:40").probes() == (10, 40)
    for bad, message in [
        ("horizon=3", "section.field="),
        ("plan.horizon=uniform:3", "uniform:MIN:MAX"),
        ("plan.horizon=int_uniform:1.5:3", "needs integers"),
        ("train.learning_rate=log_uniform_values:0:1", "min > 0"),
        ("train.learning_rate=uniform:2:1", "below max"),
        ("plan.horizon=5,5", "given twice"),
    ]:
        with pytest.raises(UserError, match=message):
            parse_parameter(bad)


def test_a_sweep_file_gives_method_metric_and_parameters(tmp_path: Path) -> None:
    path = tmp_path / "sweep.toml"
    path.write_text(
        'method = "bayes"\nmetric = "eval/latent/success"\n[parameters]\n'
        '"plan.horizon" = [20, 30]\n'
        '"train.learning_rate" = { distribution = "uniform", min = 0.001, max = 0.01 }\n'
    )
    settings = read_sweep_file(path)
    assert settings["method"] == "bayes" and settings["metric"] == "eval/latent/success"
    assert settings["parameters"]["train.learning_rate"].high == 0.01
    path.write_text('[parameters]\n"plan.horizon" = { min = 1 }\n')
    with pytest.raises(UserError, match="must be a list of values"):
        read_sweep_file(path)


def test_the_config_says_what_wandb_needs_and_refuses_what_it_cannot_run() -> None:
    params = {"plan.horizon": parse_parameter("plan.horizon=10,20")}
    config = sweep_config("pendulum", "debug", "grid", params, fixed=["train.epochs=1"])
    assert config["metric"] == {"name": "eval/latent/steps_in_goal", "goal": "maximize"}
    assert config["command"] == [
        "${env}", "latentrl", "run", "pendulum", "--preset", "debug",
        "--set", "train.epochs=1", "--set-json", "${args_json}",
    ]  # fmt: skip
    rate = {"train.learning_rate": parse_parameter("train.learning_rate=uniform:0.1:1")}
    with pytest.raises(UserError, match="grid needs lists of values"):
        sweep_config("pendulum", None, "grid", rate)
    with pytest.raises(UserError, match="eval/AGENT/NAME"):
        sweep_config("pendulum", None, "bayes", rate, metric="val/loss/total")
    with pytest.raises(UserError, match="NAME must be one of"):
        sweep_config("pendulum", None, "bayes", rate, metric="eval/latent/steps")


def _write_grid(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "grid.yaml"
    fixed = [word for item in TINY for word in ("--set", item)]
    args = ["sweep", "pendulum", "--preset", "debug", "--param", "plan.horizon=4,6"]
    args += ["--param", "model.kind=e2c,filter", "--seeds", "0", "1", *fixed, "--out", str(out)]
    assert main([*args, *extra]) == 0
    return yaml.safe_load(out.read_text())


def test_every_trial_of_the_written_grid_parses_and_resolves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    config = _write_grid(tmp_path)
    assert "8 trials (8 configs checked)" in capsys.readouterr().out
    assert config["method"] == "grid" and config["project"] == "latentrl"
    assert config["parameters"]["train.seed"] == {"values": [0, 1]}
    trials = list(grid_trials(config))
    assert len(trials) == 8
    parser = build_parser()
    for values in trials:
        # the words `wandb agent` substitutes for ${args_json}, from wandb's own code
        words = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
        (as_json,) = words["args_json"]
        argv = expand_command(config["command"], json.loads(as_json))
        assert argv[0] == "latentrl"
        args = parser.parse_args(argv[1:])
        seeds, overrides = json_settings(args.set_json, args.seeds, args.set)
        resolved = experiment_config(args.experiment, args.preset, seeds[0], overrides)
        assert resolved.plan.horizon == values["plan.horizon"]
        assert resolved.model.kind == values["model.kind"]
        assert resolved.train.seed == values["train.seed"] and resolved.train.epochs == 1


def test_the_file_passes_wandbs_sweep_schema(tmp_path: Path) -> None:
    config_module = pytest.importorskip("sweeps.config")  # wandb[sweeps]
    config = _write_grid(tmp_path)
    assert config_module.schema_violations_from_proposed_config(config) == []


def test_a_trial_that_would_fail_is_refused_before_the_file_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bad.yaml"
    args = ["sweep", "pendulum", "--param", "plan.horizon=5,0", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "the trial plan.horizon=0 would fail: plan.horizon must be an int >= 1" in err
    assert not out.exists()


def test_one_trial_end_to_end_as_the_agent_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _write_grid(tmp_path)
    values = {"plan.horizon": 4, "model.kind": "e2c", "train.seed": 1}
    monkeypatch.chdir(tmp_path)  # the agent runs the command where it was started
    argv = expand_command(config["command"], values)
    assert main([*argv[1:], "--wandb", "disabled"]) == 0
    (run_dir,) = (tmp_path / "runs").glob("Pendulum-v0__pendulum__1__*")
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["plan"]["horizon"] == 4 and saved["train"]["seed"] == 1
    summary = json.loads((run_dir / "eval" / "summary.json").read_text())
    assert 0.0 <= summary["eval/latent/steps_in_goal"] <= 1.0  # the sweep's metric


def test_set_json_gives_the_seed_once() -> None:
    assert json_settings({"train.seed": 3, "plan.horizon": 5}, None, ["a.b=1"]) == (
        [3],
        ["a.b=1", "plan.horizon=5"],
    )
    assert json_settings({}, None, []) == ([0], [])
    with pytest.raises(UserError, match="drop --seeds"):
        json_settings({"train.seed": 3}, [0, 1], [])


def test_the_seeds_of_one_setting_share_a_wandb_group() -> None:
    base = experiment_config("pendulum", "debug", 0)
    other_seed = experiment_config("pendulum", "debug", 4)
    other_setting = experiment_config("pendulum", "debug", 0, ["plan.horizon=7"])
    elsewhere = experiment_config(
        "pendulum", "debug", 0, ["train.device=cpu", "plan.compile=on", "eval.gifs=0"]
    )
    from latentrl.config import to_dict

    configs = (base, other_seed, other_setting, elsewhere)
    groups = [run_group(c.name, c.preset, to_dict(c)) for c in configs]
    assert groups[0] == groups[1] == groups[3] != groups[2]
    assert groups[0].startswith("pendulum/debug/")
    recipe = resolve(defaults_config("latentrl/Planar-v0"))  # `latentrl run --env ID`
    assert run_group(recipe.name, recipe.preset, to_dict(recipe)).startswith(
        "latentrl/Planar-v0/recipe/"
    )


def test_a_field_added_later_at_its_default_moves_no_wandb_group() -> None:
    """A run written before a field existed (its config lacks it) groups with a new run whose
    config has the field at its default; a value other than the default, or an option turned
    on at its defaults, is another group."""
    from latentrl.config import to_dict

    new = to_dict(experiment_config("pendulum", "full", 0))
    old = to_dict(experiment_config("pendulum", "full", 1))
    del old["plan"]["q_speed"], old["plan"]["options"]["shooting"]["lookahead"]
    del old["model"]["batch_norm"]

    def group(settings: dict) -> str:  # type: ignore[type-arg]
        return run_group("pendulum", "full", settings)

    assert group(old) == group(new)
    changed = json.loads(json.dumps(new))
    changed["plan"]["q_speed"] = 10.0
    assert group(changed) != group(new)
    with_option = json.loads(json.dumps(new))
    with_option["plan"]["options"]["restarts"] = {"count": 4}
    at_defaults = json.loads(json.dumps(with_option))
    at_defaults["plan"]["options"]["restarts"] = {}
    assert len({group(new), group(with_option), group(at_defaults)}) == 3
