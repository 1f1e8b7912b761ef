"""The experiment commands (`latentrl run`, `latentrl experiments`, every --help) and the
studies in experiments/studies/."""

from __future__ import annotations

import argparse
import json
import runpy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from latentrl import compare, pipeline
from latentrl.cli import build_parser, main
from latentrl.config import save_config
from latentrl.envs.planar import PC3_LAYOUT
from latentrl.pipeline import experiment_config

ROOT = Path(__file__).resolve().parents[1]


def test_every_subcommands_help_names_every_option_with_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(commands.choices) >= {"collect", "check-env", "train", "run", "experiments"}
    for name, sub in commands.choices.items():
        assert main([name, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        for action in sub._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.option_strings[-1] in text, (name, action.dest)
            assert "default" in sub.formatter_class("x")._get_help_string(action), (name, action)


def test_experiments_lists_the_files_with_their_env_ids(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["experiments"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"experiment files in {ROOT / 'experiments'}")
    rows = [line.split() for line in lines[1:]]
    assert rows == [
        ["cartpole", "latentrl/CartpoleSwingup-v0", "debug,", "full*"],
        ["mujoco_pendulum", "latentrl/PendulumSwingup-v0", "debug,", "full*"],
        ["pc3_cartpole", "latentrl/CartpoleSwingup-v0", "debug,", "full*,", "close"],
        ["pc3_pendulum_balance", "latentrl/Pendulum-v0", "debug,", "full*,", "pc3"],
        ["pc3_pendulum_swingup", "latentrl/Pendulum-v0", "debug,", "full*,", "pc3"],
        ["pc3_planar", "latentrl/Planar-v0", "debug,", "full*,", "pc3,", "pcc"],
        ["pendulum", "latentrl/Pendulum-v0", "debug,", "full*"],
        ["planar", "latentrl/Planar-v0", "debug,", "full*"],
    ]


def fake_run_dirs(root: Path, experiment: str, seeds: list[int]) -> list[Path]:
    """Run directories with a config and no evaluation."""
    dirs = []
    for seed in seeds:
        run = root / f"{experiment}__{seed}"
        run.mkdir(parents=True)
        save_config(experiment_config(experiment, "debug"), run / "config.json")
        dirs.append(run)
    return dirs


def test_run_trains_every_seed_then_compares_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict[str, Any] = {}
    runs = fake_run_dirs(tmp_path / "runs", "planar", [4, 5])

    def run_experiment(*args: Any, **kwargs: Any) -> list[SimpleNamespace]:
        calls["run"] = (args, kwargs)
        return [SimpleNamespace(train=SimpleNamespace(run_dir=d), evaluation=None) for d in runs]

    monkeypatch.setattr(pipeline, "run_experiment", run_experiment)
    monkeypatch.setattr(compare, "compare_runs", lambda d, out: calls.__setitem__("cmp", (d, out)))
    argv = ["run", "planar", "--preset", "debug", "--seeds", "4", "5", "--set", "train.epochs=1"]
    argv += ["--runs-root", str(tmp_path / "runs"), "--wandb", "disabled"]
    assert main(argv) == 0
    args, kwargs = calls["run"]
    assert args == (ROOT / "experiments" / "planar.toml", "debug", [4, 5], ["train.epochs=1"])
    assert kwargs == {
        "runs_root": tmp_path / "runs",
        "data_root": Path("data"),
        "wandb_mode": "disabled",
        "evaluate": True,
    }
    assert calls["cmp"] == (runs, tmp_path / "runs" / "planar__debug__train.epochs_1__compare.png")
    # without --preset: the file's default preset names the comparison
    assert main(["run", "planar", "--runs-root", str(tmp_path / "runs")]) == 0
    assert calls["run"][0][1] is None
    assert calls["cmp"] == (runs, tmp_path / "runs" / "planar__full__compare.png")


def test_run_exits_2_with_one_line_when_a_run_has_no_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = fake_run_dirs(tmp_path, "cartpole", [0])
    monkeypatch.setattr(
        pipeline,
        "run_experiment",
        lambda *a, **k: [SimpleNamespace(train=SimpleNamespace(run_dir=runs[0]), evaluation=None)],
    )
    assert main(["run", "cartpole", "--out", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("first\n")
    assert f"error: {runs[0]} has no evaluation yet" in err
    assert not (tmp_path / "c.png").exists()
    assert main(["run", "pendulun"]) == 2
    assert "unknown experiment 'pendulun'; choose one of cartpole" in capsys.readouterr().err


def test_circle_jumps_find_the_cut_of_a_torn_circle() -> None:
    tears = runpy.run_path(str(ROOT / "experiments" / "studies" / "pendulum_tears.py"))
    observe = lambda states: states  # noqa: E731  (the 'image' is the state)

    def smooth(states: Any) -> Any:  # the circle, evenly: every step the same length
        return np.stack([np.cos(states[:, 0]), np.sin(states[:, 0])], axis=1)

    def torn(states: Any) -> Any:  # cut open at theta = 1 rad: a jump of 5
        z = smooth(states)
        z[:, 0] += 5.0 * (states[:, 0] > 1.0)
        return z

    ratio, _ = tears["circle_jumps"](smooth, observe, velocity=0.0)
    assert ratio == pytest.approx(1.0, rel=1e-6)
    ratio, angle = tears["circle_jumps"](torn, observe, velocity=2.0)
    assert ratio > 100 and angle == pytest.approx(57.0, abs=1.0)  # the step across 1 rad


def test_planar_ceiling_bounds_the_preset_starts_and_refuses_other_envs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = runpy.run_path(str(ROOT / "experiments" / "studies" / "planar_ceiling.py"))
    assert script["ceiling"](np.array([0, 1, 10, 40]), 40).tolist() == [1.0, 1.0, 0.775, 0.025]
    assert script["main"]([]) == 0
    out = capsys.readouterr().out
    assert "bound on steps in goal: 0.7603" in out  # the preset's 100 starts; README quotes it
    other = tmp_path / "run" / "eval"
    other.mkdir(parents=True)
    (other / "results.json").write_text('{"env_id": "latentrl/Pendulum-v0"}')
    assert script["main"]([str(tmp_path / "run")]) == 2
    assert "not latentrl/Planar-v0" in capsys.readouterr().err
    # a run evaluated on another number of starts gets the bound of its own starts
    wider = tmp_path / "wider" / "eval"
    wider.mkdir(parents=True)
    starts = [[36.0, 36.0], [36.0, 20.0], [20.0, 20.0]]  # 0, 7 and 8 steps at 2 px per axis
    agents = {"latent": {"aggregate": {"steps_in_goal": {"mean": 0.5}}}}
    results = {"env_id": "latentrl/Planar-v0", "start_states": starts, "agents": agents}
    (wider / "results.json").write_text(json.dumps(results))
    assert script["main"]([str(tmp_path / "wider")]) == 0
    out = capsys.readouterr().out
    assert "was evaluated on other starts" in out
    bound = (40 + 34 + 33) / 3 / 40
    assert f"latent 0.500 ({0.5 / bound:.0%}) of the bound {bound:.4f}" in out


def test_planar_latent_map_finds_minima_ranks_distances_and_refuses_other_envs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from latentrl.envs import make_env

    script = runpy.run_path(str(ROOT / "experiments" / "studies" / "planar_latent_map.py"))
    task = make_env("latentrl/Planar-v0").unwrapped  # goal (36, 36), radius 2
    ticks, states = script["field_grid"]()
    assert (ticks[0], ticks[-1], len(states)) == (1.5, 38.5, len(ticks) ** 2)
    # a bowl around the goal with a second dip at (10, 20) and a blocked cell beside it
    x, y = states[:, 0].reshape(len(ticks), -1), states[:, 1].reshape(len(ticks), -1)
    bowl = np.hypot(x - 36, y - 36) - 5.0 * np.exp(-((x - 10) ** 2 + (y - 20) ** 2) / 0.25)
    bowl[(x == 10.5) & (y == 20)] = np.nan
    assert script["spurious_minima"](bowl, ticks, task).tolist() == [[10.0, 20.0]]  # not the goal
    true_distance = np.hypot(x - 36, y - 36)
    true_distance[~script["planar_is_free"](states).reshape(x.shape)] = np.nan
    assert len(script["spurious_minima"](true_distance, ticks, task)) == 0  # around disc obstacles
    rng = np.random.default_rng(0)
    flat = rng.normal(size=(50, 2))  # a plane in 3-D keeps its distances on its principal axes
    lifted = (
        np.concatenate([flat, np.zeros((50, 1))], axis=1) @ np.linalg.qr(rng.normal(size=(3, 3)))[0]
    )
    plane = script["principal_plane"](lifted)
    assert plane.shape == (50, 2)
    np.testing.assert_allclose(
        np.linalg.norm(plane[:, None] - plane[None], axis=-1),
        np.linalg.norm(flat[:, None] - flat[None], axis=-1),
        atol=1e-10,
    )
    assert script["principal_plane"](flat) is flat
    # where an evaluated run's failed episodes ended, and whether at a minimum
    evaluated = tmp_path / "evaluated"
    (evaluated / "eval").mkdir(parents=True)
    assert script["failed_ends"](evaluated, task) is None  # not evaluated
    states = np.zeros((3, 41, 2))
    states[:, -1] = [[35.5, 35.0], [10.0, 21.0], [1.5, 16.0]]  # in goal, failed, failed
    np.savez(evaluated / "eval" / "trajectories.npz", **{"latent/states": states})
    ends = script["failed_ends"](evaluated, task)
    np.testing.assert_array_equal(ends, [[10.0, 21.0], [1.5, 16.0]])
    near = script["near_any"](ends, np.array([[10.0, 20.0], [30.0, 30.0]]), 2.0)
    assert near.tolist() == [True, False]
    assert script["near_any"](ends, np.zeros((0, 2)), 2.0).tolist() == [False, False]
    (evaluated / "eval" / "trajectories.npz").write_bytes(b"garbage")
    with pytest.raises(script["UserError"], match="evaluate the run again"):
        script["failed_ends"](evaluated, task)
    # a run of PC3's protocol is mapped on its own obstacles, goal (37, 37) and radius
    pc3_run = tmp_path / "pc3_run"
    pc3_run.mkdir()
    save_config(experiment_config("pc3_planar", "debug"), pc3_run / "config.json")
    pc3_task = script["planar_task"](pc3_run)
    assert pc3_task.layout is PC3_LAYOUT and pc3_task.goal_state().tolist() == [37.0, 37.0]
    np.savez(evaluated / "eval" / "trajectories.npz", **{"latent/states": states})
    assert len(script["failed_ends"](evaluated, pc3_task)) == 3  # (35.5, 35) is 2.5 px off
    run = tmp_path / "pendulum_run"
    run.mkdir()
    save_config(experiment_config("pendulum", "debug"), run / "config.json")
    assert script["main"]([str(run)]) == 2
    assert "is a run of latentrl/Pendulum-v0, not of latentrl/Planar-v0" in capsys.readouterr().err
    assert script["main"]([str(tmp_path / "missing")]) == 2
    assert "not a latentrl run directory" in capsys.readouterr().err


@pytest.mark.slow
def test_planar_latent_map_adds_the_roadmaps_cost_to_go(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import torch
    from PIL import Image

    from latentrl.checkpoint import TrainerState, save_checkpoint
    from latentrl.collect import collect
    from latentrl.models import E2C
    from latentrl.run_directory import RUN_FILE

    script = runpy.run_path(str(ROOT / "experiments" / "studies" / "planar_latent_map.py"))
    config = experiment_config("planar", "debug")
    run = tmp_path / "planar_run"
    run.mkdir()
    save_config(config, run / "config.json")
    torch.manual_seed(0)
    model = E2C(config.model)
    save_checkpoint(
        run, model, torch.optim.AdamW(model.parameters()), torch.Generator(), TrainerState(0, 0)
    )
    out = tmp_path / "map.png"
    assert script["main"]([str(run), "--roadmap", "--out", str(out)]) == 2
    assert "plan.options.roadmap needs the run's training data" in capsys.readouterr().err

    data = collect("latentrl/Planar-v0", 2000, tmp_path / "data", seed=0, progress=False)
    (run / RUN_FILE).write_text(json.dumps({"dataset": str(data)}))
    assert script["main"]([str(run), "--roadmap", "--out", str(out)]) == 0
    assert "  roadmap cost-to-go: rank correlation " in capsys.readouterr().out
    with Image.open(out) as image:  # four panels a row: the roadmap's map is the second
        width, height = image.size
    assert width > 3.5 * height


def give_untrained_model_and_data(run: Path, data_dir: Path) -> None:
    """An untrained model of ``run``'s config as its checkpoint, and a 600-transition
    Pendulum-v0 dataset in ``data_dir`` as its dataset."""
    import torch

    from latentrl.checkpoint import TrainerState, save_checkpoint
    from latentrl.collect import collect
    from latentrl.config import load_config
    from latentrl.models import E2C
    from latentrl.run_directory import RUN_FILE

    torch.manual_seed(0)
    model = E2C(load_config(run / "config.json").model)
    save_checkpoint(
        run, model, torch.optim.AdamW(model.parameters()), torch.Generator(), TrainerState(0, 0)
    )
    data = collect("latentrl/Pendulum-v0", 600, data_dir, seed=0, progress=False)
    (run / RUN_FILE).write_text(json.dumps({"dataset": str(data)}))


def test_cartpole_goal_distance_reads_a_run_and_refuses_other_envs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from latentrl.checkpoint import TrainerState, save_checkpoint
    from latentrl.models import E2C

    script = runpy.run_path(str(ROOT / "experiments" / "studies" / "cartpole_goal_distance.py"))
    states = script["rest_states"]()
    assert states.shape == (16, 4) and not states[:, 2:].any()  # at rest
    costs = script["task_costs"](states)
    assert costs[0] == 0.0 and costs[3] == pytest.approx(0.1 * 1.0**2)  # upright, x = 0 and 1
    assert costs[12] == pytest.approx(np.pi**2)  # hanging under a centred cart

    run = tmp_path / "cartpole_run"
    run.mkdir()
    config = experiment_config("cartpole", "debug", overrides=["model.hidden_sizes=[16]"])
    save_config(config, run / "config.json")
    torch.manual_seed(0)
    model = E2C(config.model)
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(run, model, optimizer, torch.Generator(), TrainerState(0, 0))
    distances, kind = script["latent_goal_distances"](run, states)
    assert kind == "e2c" and distances.shape == (16,)
    assert distances[0] < 1e-9 < distances[1:].min()  # the goal image's own frames
    assert script["main"]([str(run)]) == 0
    out = capsys.readouterr().out
    assert "rank correlation with the task's cost" in out and "θ =    π" in out
    pendulum = tmp_path / "pendulum_run"
    pendulum.mkdir()
    save_config(experiment_config("pendulum", "debug"), pendulum / "config.json")
    give_untrained_model_and_data(pendulum, tmp_path / "data")
    assert script["main"]([str(pendulum)]) == 2
    assert "not of the cart-pole" in capsys.readouterr().err


@pytest.mark.slow  # a one-off study: trains a probe and evaluates a run (about 17 s)
def test_near_goal_draws_states_reads_angle_errors_and_measures_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from latentrl.envs import make_env, require_control_env

    script = runpy.run_path(str(ROOT / "experiments" / "studies" / "near_goal.py"))
    task = require_control_env(make_env("latentrl/Pendulum-v0"))

    class Echo:  # returns the states it reads as its actions
        def reset(self, goal_obs: np.ndarray, batch_size: int) -> None:
            pass

        def act(self, obs: np.ndarray, states: np.ndarray) -> np.ndarray:
            return states

    inner = np.tile([[0.5, 1.0]], (20_000, 1))
    exact = script["NoisyStateAgent"](Echo(), task, np.zeros(2))
    np.testing.assert_allclose(exact.act(None, inner), inner, atol=1e-8)
    noisy = script["NoisyStateAgent"](Echo(), task, np.array([0.1, 0.3])).act(None, inner)
    np.testing.assert_allclose((noisy - inner).std(0), [0.1, 0.3], rtol=0.03)

    config = experiment_config("pendulum", "debug")
    run = tmp_path / "pendulum_run"
    run.mkdir()
    save_config(config, run / "config.json")
    assert script["main"]([str(run)]) == 2  # no checkpoint yet
    assert "checkpoint" in capsys.readouterr().err
    assert script["main"]([str(run), "--oracle-noise", "1", "--episodes", "0"]) == 2
    assert "--episodes must be at least 1" in capsys.readouterr().err
    give_untrained_model_and_data(run, tmp_path / "data")
    args = [str(run), "--states", "16", "--oracle-noise", "0", "--episodes", "2"]
    assert script["main"](args) == 0
    report = json.loads((run / "near_goal.json").read_text())
    assert set(report["open_loop_error/near goal"]) == {"1", "5", "10", "20", "40"}
    assert set(report["probe_rmse"]["near goal"]) == {"theta", "theta_dot"}
    (oracle,) = report["oracle_noise"]
    assert oracle["std"] == [0.0, 0.0] and oracle["success"][0] == 1.0  # the plain oracle
    assert "| near goal |" in capsys.readouterr().out


@pytest.mark.slow
def test_observation_readout_reads_the_pendulum_state_from_its_pixels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    main = runpy.run_path(str(ROOT / "experiments" / "studies" / "observation_readout.py"))["main"]
    out = tmp_path / "readout.json"
    args = ["latentrl/Pendulum-v0", "--states", "2400", "--near-states", "1200", "--epochs", "5"]
    assert main([*args, "--out", str(out)]) == 0
    rms = json.loads(out.read_text())["envs"]["latentrl/Pendulum-v0"]["rms"]
    # uniform over the box, theta and theta_dot spread by 1.81 rad and 4.62 rad/s (std); near
    # the goal by 0.36 and 0.92: the readout must do far better than the spread
    assert rms["state box"]["theta"] < 0.1 and rms["state box"]["theta_dot"] < 1.2
    assert rms["near goal"]["theta"] < 0.03 and rms["near goal"]["theta_dot"] < 0.3
    assert "| near goal |" in capsys.readouterr().out
    assert main(["latentrl/Pendulum-v0", "--states", "3"]) == 2
    assert "need at least 6 states" in capsys.readouterr().err
    assert main(["latentrl/NoSuchEnv-v0"]) == 2
    assert "unknown environment" in capsys.readouterr().err


def test_conv_collapse_study_measures_a_training_and_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """experiments/studies/conv_collapse.py (docs/results/cartpole.md): its KL per dimension is
    the prior's KL, and a short run writes one measurement per ``--every`` steps."""
    import torch

    from latentrl.collect import collect
    from latentrl.losses.gaussian_kl import kl_diag_gaussian_std_normal

    script = runpy.run_path(str(ROOT / "experiments" / "studies" / "conv_collapse.py"))
    mean, logvar = torch.randn(5, 3), torch.randn(5, 3)
    torch.testing.assert_close(
        script["kl_per_dim"](mean, logvar).sum(-1), kl_diag_gaussian_std_normal(mean, logvar)
    )
    data = collect("latentrl/Pendulum-v0", 160, tmp_path / "data", chain_length=16, progress=False)
    out = tmp_path / "study.json"
    tiny = ["model.hidden_sizes=[16]", "model.conv_channels=[4, 8]", "train.batch_size=32"]
    tiny.append("train.probe_steps=50")
    argv = [str(data), "--experiment", "pendulum", "--preset", "debug", "--steps", "4"]
    argv += ["--every", "2", "--out", str(out), "--set", "model.encoder=conv"]
    argv += ["--set", "model.init=he", *(a for s in tiny for a in ("--set", s))]
    assert script["main"](argv) == 0
    records = json.loads(out.read_text())
    assert [r["step"] for r in records] == [0, 2, 4]
    first = records[0]
    assert len(first["kl_per_dim"]) == 3 and first["kl_total"] == pytest.approx(
        sum(first["kl_per_dim"])
    )
    assert first["nll_floor"] < first["nll_mean_image"]
    assert set(first["layers"]) >= {"encoder.features.0.0", "decoder.body.0.0"}
    assert set(records[-1]["probe_r2"]) == {"cos_theta", "sin_theta", "theta_dot"}
    assert "step 4" in capsys.readouterr().out
    assert script["main"]([str(tmp_path / "none")]) == 2
    assert "conv_collapse: error:" in capsys.readouterr().err


def test_one_step_predictability_fits_a_known_function_and_scores_in_units_of_spread() -> None:
    import torch

    script = runpy.run_path(str(ROOT / "experiments" / "studies" / "one_step_predictability.py"))
    target = torch.tensor([[0.0, 2.0], [2.0, 0.0]])
    errors = script["normalised_rmse"](torch.zeros(2, 2), target, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(errors, torch.tensor([2.0**0.5, 2.0**0.5 / 2]))
    g = torch.Generator().manual_seed(0)
    inputs = torch.rand(3000, 2, generator=g) * 4 - 2
    targets = torch.stack([torch.sin(inputs[:, 0]), inputs[:, 0] * inputs[:, 1]], 1)
    train, test = torch.arange(2500), torch.arange(2500, 3000)
    spread = targets[train].std(0)
    net = script["fit_regressor"](inputs, targets, train, spread, 1500, 0)
    with torch.no_grad():
        fitted = script["normalised_rmse"](net(inputs[test]), targets[test], spread)
    assert (fitted < 0.1).all(), fitted  # a constant predictor scores 1.0


@pytest.mark.slow  # encodes a dataset and fits three MLPs (about 10 s)
def test_one_step_predictability_measures_a_run_and_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    main = runpy.run_path(str(ROOT / "experiments" / "studies" / "one_step_predictability.py"))[
        "main"
    ]
    config = experiment_config("pendulum", "debug")
    run = tmp_path / "pendulum_run"
    run.mkdir()
    save_config(config, run / "config.json")
    assert main([str(run)]) == 2  # no checkpoint yet
    assert "checkpoint" in capsys.readouterr().err
    assert main([str(run), "--fit-steps", "0"]) == 2
    assert "--fit-steps must be at least 1" in capsys.readouterr().err
    give_untrained_model_and_data(run, tmp_path / "data")
    assert main([str(run), "--fit-steps", "300"]) == 0
    report = json.loads((run / "one_step_predictability.json").read_text())["normalised_rmse"]
    names = ["no move", "transition", "refit (z, u)", "true state (s, u)", "true next state"]
    assert list(report) == names
    assert all(len(errors) == config.model.latent_dim for errors in report.values())
    # the encoding is a function of the next state: it predicts better than a constant (1.0);
    # an untrained transition is far off, and a fit to its own inputs beats it
    assert max(report["true next state"]) < 1.0
    assert max(report["refit (z, u)"]) < 1.5 < min(report["transition"])
    assert "| true next state |" in capsys.readouterr().out
