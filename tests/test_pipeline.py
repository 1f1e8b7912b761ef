"""An experiment end to end: collect -> train -> evaluate, every artifact written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latentrl.checkpoint import load_model
from latentrl.cli import main
from latentrl.code_version import code_version
from latentrl.logging import read_metrics
from latentrl.pipeline import (
    dataset_dir,
    earlier_baselines_run,
    experiment_config,
    run_experiment,
)

TINY = [
    "data.transitions=400",
    "model.hidden_sizes=[32]",
    "model.transition_hidden_sizes=[8]",
    "train.epochs=1",
    "train.batch_size=50",
    "train.probe_steps=10",
    "eval.episodes=2",
    "eval.horizon=10",
    "eval.gifs=1",
    "eval.oracle_horizon=10",
    "plan.horizon=5",
    "plan.max_iterations=2",
]


def _assert_evaluated(
    run_dir: Path,
    episodes: int,
    horizon: int,
    agents: tuple[str, ...] = ("latent", "oracle", "random"),
) -> dict:
    for name in ("config.json", "metrics.jsonl", "summary.json", "checkpoint/model.safetensors"):
        assert (run_dir / name).exists(), name
    out = run_dir / "eval"
    for name in (
        "results.json",
        "trajectories.npz",
        "states.png",
        "metrics.jsonl",
        "summary.json",
        "videos/latent_episode_00.gif",
    ):
        assert (out / name).exists(), name
    results = json.loads((out / "results.json").read_text())
    assert list(results["agents"]) == list(agents)
    assert results["episodes"] == episodes and results["horizon"] == horizon
    return results


def test_run_experiment_collects_trains_and_evaluates(tmp_path: Path) -> None:
    results = run_experiment(
        "pendulum",
        "debug",
        seeds=(3,),
        overrides=TINY,
        runs_root=tmp_path / "runs",
        data_root=tmp_path / "data",
        wandb_mode="disabled",
    )
    assert len(results) == 1
    trained, evaluation = results[0].train, results[0].evaluation
    config = experiment_config("pendulum", "debug", 3, TINY)
    data = dataset_dir(config.data, tmp_path / "data")
    assert json.loads((data / "metadata.json").read_text())["complete"]
    assert trained.run_dir.parent == tmp_path / "runs" and trained.epochs == 1
    assert trained.run_dir.name.startswith("Pendulum-v0__pendulum__3__")
    _, saved = load_model(trained.run_dir)
    assert saved == config and saved.plan.horizon == 5 and saved.eval.episodes == 2
    assert evaluation is not None and evaluation.eval_dir == trained.run_dir / "eval"
    results_json = _assert_evaluated(trained.run_dir, episodes=2, horizon=10)
    assert not (trained.run_dir / "eval" / "videos" / "latent_episode_01.gif").exists()  # gifs=1
    assert results_json == evaluation.results.to_json()
    assert results_json["code"] == code_version()  # the code that evaluated, and trained:
    assert json.loads((trained.run_dir / "run.json").read_text())["code"] == [code_version()]
    summary = json.loads((trained.run_dir / "eval" / "summary.json").read_text())
    assert 0.0 <= summary["eval/oracle/steps_in_goal"] <= 1.0


def test_later_seeds_take_the_oracle_and_random_agents_from_the_first(tmp_path: Path) -> None:
    first, second = run_experiment(
        "pendulum",
        "debug",
        seeds=(3, 4),
        overrides=TINY,
        runs_root=tmp_path / "runs",
        data_root=tmp_path / "data",
        wandb_mode="disabled",
    )
    assert first.evaluation is not None and second.evaluation is not None
    assert "baselines_from" not in first.evaluation.results.to_json()
    results = _assert_evaluated(second.train.run_dir, episodes=2, horizon=10)
    origin = str(first.train.run_dir)
    assert results["baselines_from"] == {"oracle": origin, "random": origin}
    earlier = first.evaluation.results.to_json()
    assert results["agents"]["oracle"] == earlier["agents"]["oracle"]
    assert results["agents"]["latent"] != earlier["agents"]["latent"]


def test_a_later_invocation_takes_the_oracle_and_random_agents_from_an_earlier_run(
    tmp_path: Path,
) -> None:
    roots = {"runs_root": tmp_path / "runs", "data_root": tmp_path / "data"}
    (first,) = run_experiment("pendulum", "debug", (3,), TINY, **roots, wandb_mode="disabled")
    (second,) = run_experiment("pendulum", "debug", (4,), TINY, **roots, wandb_mode="disabled")
    assert first.evaluation is not None and second.evaluation is not None
    results = _assert_evaluated(second.train.run_dir, episodes=2, horizon=10)
    origin = str(first.train.run_dir)
    assert results["baselines_from"] == {"oracle": origin, "random": origin}
    earlier = first.evaluation.results.to_json()
    assert results["agents"]["oracle"] == earlier["agents"]["oracle"]

    runs = tmp_path / "runs"
    same = experiment_config("pendulum", "debug", 5, (*TINY, "eval.gifs=0", "eval.env_workers=2"))
    assert earlier_baselines_run(runs, same) in {first.train.run_dir, second.train.run_dir}
    for other in (
        "eval.episodes=3",
        "eval.seed=1",
        "eval.oracle_horizon=8",
        "eval.env_kwargs.goal_radius=0.3",
        "data.env_kwargs.gravity=9.0",
    ):
        changed = experiment_config("pendulum", "debug", 5, (*TINY, other))
        assert earlier_baselines_run(runs, changed) is None, other
    only_random = experiment_config("pendulum", "debug", 5, (*TINY, 'eval.agents=["random"]'))
    assert earlier_baselines_run(runs, only_random) is not None
    assert earlier_baselines_run(tmp_path / "elsewhere", same) is None


def _cli_run(tmp_path: Path, *args: str) -> int:
    argv = ["run", "pendulum", "--preset", "debug", "--wandb", "disabled"]
    argv += ["--runs-root", str(tmp_path / "runs"), "--data-root", str(tmp_path / "data")]
    for assignment in TINY:
        argv += ["--set", assignment]
    return main([*argv, *args])


def test_a_later_run_invocation_compares_the_earlier_seeds_of_its_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def tables() -> dict[str, list[list[int]]]:
        return {
            path.name: [group["seeds"] for group in json.loads(path.read_text()).values()]
            for path in (tmp_path / "runs").glob("*__compare.json")
        }

    assert _cli_run(tmp_path, "--seeds", "3") == 0
    ((name, seeds),) = tables().items()
    assert name.startswith("pendulum__debug__set_") and seeds == [[3]]  # TINY's --set, hashed
    assert "earlier run" not in capsys.readouterr().out
    assert _cli_run(tmp_path, "--seeds", "4", "3") == 0  # seed 3 again: the new run counts
    assert tables() == {name: [[4, 3]]}
    assert "earlier run" not in capsys.readouterr().out
    assert _cli_run(tmp_path, "--seeds", "5") == 0
    assert "compared with 2 earlier run(s) of the same settings" in capsys.readouterr().out
    assert sorted(tables()[name][0]) == [3, 4, 5]

    # other settings: a table of their own, and the first one left as it was
    assert _cli_run(tmp_path, "--seeds", "6", "--set", "plan.horizon=4") == 0
    other = tables()
    assert sorted(other.pop(name)[0]) == [3, 4, 5]
    assert list(other.values()) == [[[6]]]


def test_planar_debug_plans_through_a_roadmap_of_its_dataset(tmp_path: Path) -> None:
    """Planar's presets plan with blocked pushes and the roadmap, built from the run's dataset
    at evaluation (2,000 transitions: enough frames near the goal to link it). The latent
    agent alone: the oracle, which plans on planar's obstacle physics, took most of the time
    and is tested elsewhere."""
    overrides = [o for o in TINY if not o.startswith("data.")]
    overrides += ["data.transitions=2000", 'eval.agents=["latent"]']
    (result,) = run_experiment(
        "planar",
        "debug",
        overrides=overrides,
        runs_root=tmp_path / "runs",
        data_root=tmp_path / "data",
        wandb_mode="disabled",
    )
    results = _assert_evaluated(result.train.run_dir, episodes=2, horizon=10, agents=("latent",))
    options = results["plan"]["options"]
    assert options["roadmap"] == {"lookahead": 2.0} and options["blocked_pushes"] == {
        "ratio": 0.5,
        "one_sided": False,
        "least_move": 0.0,
    }
    episodes = results["agents"]["latent"]["episodes"]
    assert [len(e["start_state"]) for e in episodes] == [2, 2]
    assert all(0.0 <= e["steps_in_goal"] <= 1.0 for e in episodes)


def test_cli_run_without_evaluation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "run",
        "pendulum",
        "--preset",
        "debug",
        "--no-evaluate",
        "--wandb",
        "disabled",
        "--runs-root",
        str(tmp_path / "runs"),
        "--data-root",
        str(tmp_path / "data"),
    ]
    args += [item for pair in zip(["--set"] * len(TINY), TINY, strict=True) for item in pair]
    assert main(args) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert f"run: {run_dir}" in capsys.readouterr().out
    assert (run_dir / "checkpoint").exists() and not (run_dir / "eval").exists()


@pytest.mark.slow
def test_the_debug_preset_end_to_end(tmp_path: Path) -> None:
    """The debug preset as a user runs it (about a minute): the oracle swings up."""
    (result,) = run_experiment(
        "pendulum",
        "debug",
        runs_root=tmp_path / "runs",
        data_root=tmp_path / "data",
        wandb_mode="disabled",
    )
    results = _assert_evaluated(result.train.run_dir, episodes=4, horizon=200)
    videos = sorted((result.train.run_dir / "eval" / "videos").glob("latent_episode_*.gif"))
    assert len(videos) == 4  # one per episode
    assert any("train/loss/multi_step" in row for row in read_metrics(result.train.run_dir))
    oracle = results["agents"]["oracle"]["aggregate"]
    assert oracle["steps_in_goal"]["mean"] > 0.6 and oracle["success"]["mean"] == 1.0
    assert results["agents"]["random"]["aggregate"]["success"]["mean"] == 0.0


def test_later_seeds_of_a_latent_only_evaluation_take_nothing_from_the_first(
    tmp_path: Path,
) -> None:
    results = run_experiment(
        "pendulum",
        "debug",
        seeds=(3, 4),
        overrides=(*TINY, 'eval.agents=["latent"]'),
        runs_root=tmp_path / "runs",
        data_root=tmp_path / "data",
        wandb_mode="disabled",
    )
    for result in results:
        assert result.evaluation is not None
        written = result.evaluation.results.to_json()
        assert list(written["agents"]) == ["latent"] and "baselines_from" not in written
