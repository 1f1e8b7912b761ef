"""Evaluation: metric functions on hand-made trajectories, artifacts of a tiny trained run, CLI."""

from __future__ import annotations

import json
import math
import runpy
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from latentrl import episodes
from latentrl.cli import main
from latentrl.collect import collect
from latentrl.compare import IGNORED_SETTINGS, compare_runs
from latentrl.config import (
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    PlanConfig,
    TrainConfig,
    to_dict,
)
from latentrl.earlier_agents import agent_settings
from latentrl.envs import make_env
from latentrl.episodes import episode_metrics, final_steps, mean_and_se
from latentrl.errors import UserError
from latentrl.evaluate import evaluate_run
from latentrl.logging import read_metrics
from latentrl.models import ModelConfig
from latentrl.results import EvalHeader
from latentrl.train import train

PENDULUM = "latentrl/Pendulum-v0"
FAST = [
    "eval.episodes=2",
    "eval.horizon=20",
    "eval.oracle_horizon=20",
    "plan.horizon=8",
    "plan.max_iterations=3",
]


# --- metrics --------------------------------------------------------------------------------


def test_fractions_success_and_cost_of_hand_made_episodes() -> None:
    r = 1.0
    distances = np.array(
        [
            [2.0] * 10 + [0.4] * 10,  # 10 of 20 in the goal, 10 within r/2, ends inside
            [0.4] * 18 + [2.0, 0.4],  # 19 in (and within r/2), out at step 19 of the final 2
            [0.6] * 20,  # all in the goal, none within r/2
            [2.0] * 18 + [1.0, 1.0],  # exactly on the radius counts as inside
        ]
    )
    costs = np.arange(80, dtype=np.float64).reshape(4, 20)
    m = episode_metrics(distances, costs, r)
    np.testing.assert_array_equal(m["steps_in_goal"], [0.5, 0.95, 1.0, 0.1])
    np.testing.assert_array_equal(m["steps_in_goal_half_radius"], [0.5, 0.95, 0.0, 0.0])
    np.testing.assert_array_equal(m["success"], [1.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(m["cost"], costs.sum(axis=1))


def test_final_steps_and_standard_error() -> None:
    assert [final_steps(t) for t in (200, 30, 20, 9, 1)] == [20, 3, 2, 1, 1]
    mean, se = mean_and_se(np.array([1.0, 2.0, 3.0, 6.0]))
    assert mean == 3.0
    assert se == pytest.approx(math.sqrt(14 / 3) / 2)  # sample std / sqrt(n)
    assert math.isnan(mean_and_se(np.array([5.0]))[1])


# --- a tiny trained run -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval")
    data = collect(PENDULUM, 600, root / "data", seed=0, progress=False)
    config = ExperimentConfig(
        name="pendulum",
        preset="test",
        data=DataConfig(env_id=PENDULUM, transitions=600),
        model=ModelConfig(
            (2, 48, 48), 1, latent_dim=3, hidden_sizes=(64,), transition_hidden_sizes=(16,)
        ),
        train=TrainConfig(epochs=1, batch_size=50, image_every=1, probe_steps=20),
    )
    return train(config, root / "run", data, wandb_mode="disabled").run_dir


def test_evaluation_writes_results_plot_gifs_and_logs(trained_run: Path) -> None:
    result = evaluate_run(trained_run, FAST, wandb_mode="disabled", echo=lambda _: None)
    out = trained_run / "eval"
    assert result.eval_dir == out
    results = json.loads((out / "results.json").read_text())
    assert results == result.results.to_json()
    assert results["env_id"] == PENDULUM and results["horizon"] == 20
    assert results["episodes"] == 2 and results["final_steps"] == 2
    assert results["goal_radius"] == pytest.approx(np.pi / 6)
    assert results["state_names"] == ["theta", "theta_dot"]
    assert list(results["agents"]) == ["latent", "oracle", "random"]
    starts = np.array(results["start_states"])
    assert starts.shape == (2, 2) and np.all(np.abs(np.abs(starts[:, 0]) - np.pi) <= 0.2)
    np.testing.assert_array_equal(starts[:, 1], 0.0)
    assert results["plan"]["horizon"] == 8 and results["eval"]["episodes"] == 2

    trajectories = np.load(out / "trajectories.npz")
    env = make_env(PENDULUM)
    task = env.unwrapped
    for agent, block in results["agents"].items():
        states = trajectories[f"{agent}/states"]
        actions = trajectories[f"{agent}/actions"]
        assert states.shape == (2, 21, 2) and actions.shape == (2, 20, 1)
        np.testing.assert_array_equal(states[:, 0], starts)  # the same starts for every agent
        # the recorded states are the true dynamics under the recorded actions
        for t in range(20):
            np.testing.assert_allclose(
                states[:, t + 1], task.next_states(states[:, t], actions[:, t]), atol=1e-12
            )
        inside = task.goal_distance(states[:, 1:].reshape(-1, 2)).reshape(2, 20) <= np.pi / 6
        costs = trajectories[f"{agent}/costs"]
        np.testing.assert_allclose(costs[:, 0], task.cost(states[:, 0], actions[:, 0]))
        for i, episode in enumerate(block["episodes"]):
            assert episode["start_state"] == results["start_states"][i]
            assert episode["steps_in_goal"] == inside[i].mean()
            assert episode["cost"] == pytest.approx(costs[i].sum())
        aggregate = block["aggregate"]
        assert set(aggregate) == {
            "steps_in_goal",
            "steps_in_goal_half_radius",
            "success",
            "cost",
            "ms_per_step",
        }
        assert aggregate["cost"]["mean"] == pytest.approx(costs.sum(axis=1).mean())
        assert aggregate["cost"]["se"] == pytest.approx(costs.sum(axis=1).std(ddof=1) / 2**0.5)
        assert aggregate["ms_per_step"]["mean"] > 0
    env.close()
    # 20 steps from hanging: nobody is up yet, and the oracle is already cheaper than random
    oracle, random = results["agents"]["oracle"], results["agents"]["random"]
    assert oracle["aggregate"]["cost"]["mean"] < random["aggregate"]["cost"]["mean"]

    plot = np.asarray(Image.open(out / "states.png"))
    assert plot.ndim == 3 and plot.shape[0] > 300 and plot.shape[1] > 600  # 3 rows, 3 columns
    gifs = sorted(p.name for p in (out / "videos").iterdir())
    assert gifs == ["latent_episode_00.gif", "latent_episode_01.gif"]  # by default one each
    frames = iio.imread(out / "videos" / gifs[0])
    panels = len(results["gif_panels"])
    assert results["gif_panels"][:2] == ["observation", "decoded latent"] and panels == 6
    assert frames.shape[:3] == (20, 96, panels * 96 + (panels - 1) * 2)

    rows = read_metrics(out)
    assert [row["step"] for row in rows] == list(range(1, 21))
    assert 0 <= rows[-1]["eval/oracle/in_goal"] <= 1
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["eval/latent/steps_in_goal"]
        == results["agents"]["latent"]["aggregate"]["steps_in_goal"]["mean"]
    )
    assert {"eval/oracle/success", "eval/random/cost_se", "eval/latent/ms_per_step"} <= set(summary)

    with pytest.raises(UserError, match="already holds an evaluation; pass --overwrite"):
        evaluate_run(trained_run, FAST, wandb_mode="disabled")


def test_bad_settings_are_refused(trained_run: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"only eval\.\* and plan\.\* settings"):
        evaluate_run(trained_run, ["model.latent_dim=4"], overwrite=True)
    with pytest.raises(UserError, match=r"longer than latentrl/Pendulum-v0's time limit of 200"):
        evaluate_run(trained_run, ["eval.horizon=201"], overwrite=True)
    with pytest.raises(UserError, match=r"eval\.agents must name each of latent, oracle, random"):
        evaluate_run(trained_run, ['eval.agents=["oracle", "expert"]'], overwrite=True)
    with pytest.raises(UserError, match="not a latentrl run directory"):
        evaluate_run(tmp_path)
    with pytest.raises(UserError, match=r"plan\.horizon must be an int >= 1, got 0"):
        PlanConfig(horizon=0)
    with pytest.raises(UserError, match=r"eval\.episodes must be an int >= 1, got 0"):
        EvalConfig(episodes=0)


def test_eval_env_kwargs_set_another_task_on_the_env_the_model_trained_on(
    trained_run: Path,
) -> None:
    """PC3's balance on the swing-up's model: the same env with other start states."""
    start = ['eval.env_kwargs={"start_low": [0.1, 0.0], "start_high": [0.1, 0.0]}']
    agents = ['eval.agents=["oracle", "random"]']
    result = evaluate_run(
        trained_run,
        [*FAST, *agents, *start],
        overwrite=True,
        wandb_mode="disabled",
        echo=lambda _: None,
    )
    header = result.results.header
    assert header.start_states == ((0.1, 0.0), (0.1, 0.0))
    assert header.env_kwargs == {"start_low": [0.1, 0.0], "start_high": [0.1, 0.0]}
    oracle = result.results.agents["oracle"]
    assert oracle.aggregate["steps_in_goal"].mean == pytest.approx(1.0)  # starts 0.1 from upright

    before = (trained_run / "eval" / "results.json").read_bytes()
    with pytest.raises(UserError, match=r"observations \(3, 48, 48\) and 1 actions, but the model"):
        evaluate_run(trained_run, [*FAST, "eval.env_kwargs.frames=3"], overwrite=True)
    assert (trained_run / "eval" / "results.json").read_bytes() == before
    with pytest.raises(UserError, match=r"eval\.env_kwargs must be a JSON object"):
        evaluate_run(trained_run, [*FAST, "eval.env_kwargs=[1]"], overwrite=True)


def test_a_run_from_before_the_plan_and_eval_sections_still_evaluates(
    trained_run: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old_run"
    shutil.copytree(trained_run, old, ignore=shutil.ignore_patterns("eval"))
    config = json.loads((old / "config.json").read_text())
    del config["plan"], config["eval"]
    (old / "config.json").write_text(json.dumps(config))
    result = evaluate_run(
        old,
        ["eval.episodes=1", "eval.horizon=5", 'eval.agents=["random"]'],
        wandb_mode="disabled",
        echo=lambda _: None,
    )
    assert result.results.header.plan == to_dict(PlanConfig())
    assert list(result.results.agents) == ["random"]


def test_cli_evaluate_prints_the_table(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "cli_run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("eval"))
    args = [
        "evaluate",
        str(run),
        "--episodes",
        "2",
        "--agents",
        "oracle",
        "random",
        "--wandb",
        "disabled",
        "--set",
        "eval.horizon=10",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "latentrl/Pendulum-v0: 2 episodes of 10 steps" in printed
    header = next(line for line in printed.splitlines() if line.startswith("agent"))
    assert header.split() == [
        "agent",
        "steps",
        "in",
        "goal",
        "in",
        "goal",
        "r/2",
        "success",
        "cost",
        "ms/step",
    ]
    assert any(line.startswith("oracle ") and "±" in line for line in printed.splitlines())
    assert f"wrote {run / 'eval'}" in printed
    assert list(json.loads((run / "eval" / "results.json").read_text())["agents"]) == [
        "oracle",
        "random",
    ]

    assert main(args) == 2  # evaluated already
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0

    other = tmp_path / "cli_other"
    shutil.copytree(trained_run, other, ignore=shutil.ignore_patterns("eval"))
    assert main([*args[:1], str(other), *args[2:], "--baselines-from", str(run)]) == 0
    assert f"took oracle, random from {run}" in capsys.readouterr().out
    # an evaluation written with --out serves as well
    elsewhere = tmp_path / "studies" / "baselines"
    assert main([*args[:1], str(other), *args[2:], "--out", str(elsewhere)]) == 0
    capsys.readouterr()
    beside = [*args[:1], str(other), *args[2:], "--out", str(tmp_path / "studies" / "again")]
    assert main([*beside, "--baselines-from", str(elsewhere)]) == 0
    assert f"took oracle, random from {elsewhere}" in capsys.readouterr().out
    assert main([*args, "--overwrite", "--baselines-from", str(tmp_path)]) == 2
    assert "holds no evaluation" in capsys.readouterr().err

    (run / "checkpoint").rename(run / "elsewhere")
    assert main(["evaluate", str(run), "--overwrite", "--wandb", "disabled"]) == 2
    assert "has no checkpoint yet; train it" in capsys.readouterr().err


def test_evaluating_again_keeps_the_agents_it_does_not_run_where_their_settings_hold(
    trained_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "again"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("eval"))
    out = run / "eval"
    messages: list[str] = []

    def again(*changes: str) -> dict:
        messages.clear()
        result = evaluate_run(
            run, [*FAST, *changes], wandb_mode="disabled", overwrite=True, echo=messages.append
        )
        return result.results.to_json()

    first = again()
    first_arrays = dict(np.load(out / "trajectories.npz"))
    # the latent agent alone, with another plan: the oracle and random agents do not plan
    second = again('eval.agents=["latent"]', "plan.max_iterations=2")
    assert list(second["agents"]) == ["latent", "oracle", "random"]
    assert second["eval"]["agents"] == ["latent", "oracle", "random"]
    assert second["plan"]["max_iterations"] == 2
    assert second["agents"]["oracle"] == first["agents"]["oracle"]
    assert second["agents"]["random"] == first["agents"]["random"]
    assert "kept the earlier results of oracle, random (same episodes and settings)" in messages
    assert json.loads((out / "results.json").read_text()) == second
    arrays = dict(np.load(out / "trajectories.npz"))
    assert list(arrays) == list(first_arrays)
    for key in ("oracle/states", "random/actions", "random/costs"):
        np.testing.assert_array_equal(arrays[key], first_arrays[key])
    assert sorted(p.name for p in (out / "videos").iterdir()) == [
        "latent_episode_00.gif",
        "latent_episode_01.gif",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval/oracle/cost"] == first["agents"]["oracle"]["aggregate"]["cost"]["mean"]

    # the oracle alone with the first plan: the latent agent planned otherwise, so it goes
    third = again('eval.agents=["oracle"]')
    assert list(third["agents"]) == ["oracle", "random"]
    assert any("dropped the earlier results of latent" in m for m in messages)
    assert not (out / "videos").exists() or not any((out / "videos").iterdir())

    # other start states: nothing earlier holds
    fourth = again('eval.agents=["random"]', "eval.seed=5")
    assert list(fourth["agents"]) == ["random"]
    assert any("dropped the earlier results of oracle" in m for m in messages)

    # an unreadable earlier evaluation is replaced whole, with one line saying so
    (out / "trajectories.npz").write_bytes(b"not a zip file")
    fifth = again('eval.agents=["oracle"]', "eval.seed=5")
    assert list(fifth["agents"]) == ["oracle"]
    assert any("is unreadable" in m and "nothing is kept" in m for m in messages)


def test_baselines_are_taken_from_another_run_where_their_episodes_and_settings_hold(
    trained_run: Path, tmp_path: Path
) -> None:
    runs = {}
    for name in ("a", "b", "c"):
        runs[name] = tmp_path / name
        shutil.copytree(trained_run, runs[name], ignore=shutil.ignore_patterns("eval"))
    messages: list[str] = []

    def evaluate(run: str, *changes: str, source: str | None = None) -> dict:
        messages.clear()
        result = evaluate_run(
            runs[run],
            [*FAST, *changes],
            wandb_mode="disabled",
            overwrite=True,
            baselines_from=None if source is None else runs[source],
            echo=messages.append,
        )
        return result.results.to_json()

    with pytest.raises(UserError, match=r"holds no evaluation.*evaluate it first"):
        evaluate("b", source="a")
    first = evaluate("a")
    assert "baselines_from" not in first

    with pytest.raises(UserError, match=r"runs only latent: leave --agents out"):
        evaluate("b", 'eval.agents=["latent"]', source="a")
    second = evaluate("b", source="a")
    assert f"took oracle, random from {runs['a']} (same episodes and settings)" in messages
    assert not any(m.startswith(("evaluating oracle", "evaluating random")) for m in messages)
    assert "evaluating latent: 2 episodes of 20 steps" in messages
    assert list(second["agents"]) == ["latent", "oracle", "random"]
    assert second["agents"]["oracle"] == first["agents"]["oracle"]
    assert second["agents"]["random"] == first["agents"]["random"]
    assert second["baselines_from"] == {"oracle": str(runs["a"]), "random": str(runs["a"])}
    a_arrays, b_arrays = (dict(np.load(runs[r] / "eval" / "trajectories.npz")) for r in "ab")
    assert list(b_arrays) == list(a_arrays)
    np.testing.assert_array_equal(b_arrays["oracle/states"], a_arrays["oracle/states"])
    assert json.loads((runs["b"] / "eval" / "results.json").read_text()) == second

    # taken again from b, they still name the run they ran in; so does an evaluation again
    # of the latent agent alone, which keeps them
    assert evaluate("c", source="b")["baselines_from"]["oracle"] == str(runs["a"])
    kept = evaluate("c", 'eval.agents=["latent"]')
    assert kept["baselines_from"] == {"oracle": str(runs["a"]), "random": str(runs["a"])}

    # other start states: they run again, and nothing names another run
    other = evaluate("b", "eval.seed=5", source="a")
    assert any("dropped the earlier results of oracle, random" in m for m in messages)
    assert "evaluating oracle: 2 episodes of 20 steps" in messages
    assert "baselines_from" not in other
    assert other["agents"]["oracle"] != first["agents"]["oracle"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_an_evaluation_into_a_folder_of_its_own_leaves_the_run_and_compares_like_one(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("eval"))
    first = evaluate_run(run, FAST, wandb_mode="disabled", echo=lambda _: None).results
    before = _files(run)

    other = tmp_path / "studies" / "two_iterations"
    result = evaluate_run(
        run,
        [*FAST, "plan.max_iterations=2"],
        out=other,
        wandb_mode="disabled",
        baselines_from=run,
        echo=lambda _: None,
    )
    assert result.eval_dir == other
    assert _files(run) == before  # the run and its own evaluation are untouched
    written = json.loads((other / "results.json").read_text())
    assert written["run_dir"] == str(run.resolve())
    assert written["plan"]["max_iterations"] == 2
    assert written["agents"]["oracle"] == first.to_json()["agents"]["oracle"]
    assert {"trajectories.npz", "states.png", "summary.json"} <= {p.name for p in other.iterdir()}

    # compare reads the folder as that run evaluated otherwise: a group of its own
    comparison = compare_runs([run, other], tmp_path / "cmp.png", echo=lambda _: None)
    assert len(comparison.groups) == 2
    by_iterations = {g.differs["plan.max_iterations"]: g for g in comparison.groups}
    latent = written["agents"]["latent"]["aggregate"]["steps_in_goal"]["mean"]
    assert by_iterations[2].agents["latent"]["steps_in_goal"].mean == pytest.approx(latent)
    assert by_iterations[2].runs[0].seed == 0

    # refused, each in one line, before anything is written
    for out, says in (
        (run, "is the run directory or its checkpoint"),
        (run / "checkpoint" / "eval", "is the run directory or its checkpoint"),
        (run / "config.json", "is a file, not a directory"),
        (other, "already holds an evaluation; pass --overwrite"),
    ):
        with pytest.raises(UserError, match=says):
            evaluate_run(run, FAST, out=out, wandb_mode="disabled", echo=lambda _: None)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    with pytest.raises(UserError, match="holds files that are not an evaluation's"):
        evaluate_run(run, FAST, out=notes, wandb_mode="disabled", echo=lambda _: None)
    assert (notes / "todo.txt").read_text() == "mine"
    assert _files(run) == before

    # the command line: --out, and compare of a folder whose run is gone
    args = ["evaluate", str(run), "--agents", "random", "--wandb", "disabled"]
    assert main([*args, *(f"--set={a}" for a in FAST), "--out", str(tmp_path / "cli")]) == 0
    assert f"wrote {tmp_path / 'cli'}" in capsys.readouterr().out
    shutil.rmtree(run)
    with pytest.raises(UserError, match=r"names the run .* which is not a run directory"):
        compare_runs([other], tmp_path / "cmp.png", echo=lambda _: None)


def test_a_plan_written_before_a_field_existed_ran_with_its_default() -> None:
    plan = to_dict(PlanConfig())
    older = {key: value for key, value in plan.items() if key != "max_iterations"}

    def results(plan: dict) -> EvalHeader:
        ev = {"seed": 0, "oracle_horizon": None}
        return EvalHeader("latentrl/Pendulum-v0", 1, 10, 0.5, 1, eval=ev, plan=plan)

    assert agent_settings(results(older), "latent") == agent_settings(results(plan), "latent")
    other = older | {"horizon": plan["horizon"] + 1}
    assert agent_settings(results(other), "latent") != agent_settings(results(plan), "latent")
    roadmap = plan | {"options": {"roadmap": {}}}  # a section's missing fields: its defaults
    assert agent_settings(results(roadmap), "latent")["plan"]["options"] == {
        "roadmap": {"lookahead": 2.0}
    }
    assert agent_settings(results(older), "latent") != agent_settings(results(roadmap), "latent")


def test_a_flat_plan_of_older_versions_is_the_same_setting_as_its_options() -> None:
    """results.json of older runs wrote the options as flat plan fields: an agent evaluated
    then is kept for the same settings written as sections."""
    flat = {key: value for key, value in to_dict(PlanConfig()).items() if key != "options"} | {
        "restarts": 0, "shooting": 0, "shooting_steps": None, "shooting_beyond": 0.0,
        "blocked_ratio": 0.5, "roadmap_lookahead": 2.0, "recorded_moves": 32,
    }  # fmt: skip
    sections = {"blocked_pushes": {}, "roadmap": {"lookahead": 2}, "recorded_moves": {}}
    nested = to_dict(PlanConfig(options=sections))

    def results(plan: dict) -> EvalHeader:
        ev = {"seed": 0, "oracle_horizon": None}
        return EvalHeader("latentrl/Pendulum-v0", 1, 10, 0.5, 1, eval=ev, plan=plan)

    assert agent_settings(results(flat), "latent") == agent_settings(results(nested), "latent")
    fewer = flat | {"recorded_moves": 16}
    assert agent_settings(results(fewer), "latent") != agent_settings(results(nested), "latent")


def test_plan_ablation_script_scores_each_variant_on_the_same_starts(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = Path(__file__).resolve().parents[1] / "experiments" / "studies" / "plan_ablation.py"
    ablation = runpy.run_path(str(script))
    argv = [str(trained_run), "--episodes", "2", "--steps", "6", "--set", "plan.horizon=5"]
    assert ablation["main"]([*argv, "--only", "default", "q_f=q"]) == 0
    rows = json.loads((trained_run / "plan_ablation.json").read_text())
    assert [r["variant"] for r in rows] == ["default", "q_f=q"]
    assert [r["plan"]["q_f"] for r in rows] == [100.0, 1.0]
    assert all(r["plan"]["horizon"] == 5 for r in rows)
    for row in rows:
        mean, se = row["steps_in_goal"]
        assert 0.0 <= mean <= 1.0 and math.isfinite(se)
    table = capsys.readouterr().out
    assert "| default |" in table and "| q_f=q |" in table
    assert ablation["main"]([str(trained_run), "--set", "train.epochs=2"]) == 2


def test_env_workers_reach_the_episodes_and_change_no_number(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``eval.env_workers`` reaches the episodes' envs, which step in worker processes: the
    same trajectories and results as in the evaluating process (the latent agent's episodes
    in workers are tested in tests/test_episode_envs.py), and compare groups them together."""
    asked: list[int] = []

    class RecordingEnvs(episodes.EpisodeEnvs):
        def __init__(self, *args, **kwargs) -> None:
            asked.append(args[3])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(episodes, "EpisodeEnvs", RecordingEnvs)
    outcomes = []
    for workers in (1, 2):
        run = tmp_path / f"workers{workers}"
        shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("eval"))
        changes = [*FAST, 'eval.agents=["random"]', f"eval.env_workers={workers}"]
        result = evaluate_run(run, changes, wandb_mode="disabled", echo=lambda _: None)
        assert result.results.to_json()["eval"]["env_workers"] == workers
        random = result.results.to_json()["agents"]["random"]["aggregate"]
        outcomes.append(({k: v for k, v in random.items() if k != "ms_per_step"}, run))
    assert asked == [1, 2]
    (numbers_1, run_1), (numbers_2, run_2) = outcomes
    assert numbers_1 == numbers_2 and len(numbers_1) >= 4
    arrays_1, arrays_2 = (dict(np.load(r / "eval" / "trajectories.npz")) for r in (run_1, run_2))
    assert list(arrays_1) == list(arrays_2) == ["random/states", "random/actions", "random/costs"]
    for key in arrays_1:
        np.testing.assert_array_equal(arrays_1[key], arrays_2[key])
    assert "eval.env_workers" in IGNORED_SETTINGS
