"""Runs trained by an earlier latentrl evaluate to the same numbers with this one.

``tests/fixtures/legacy_runs`` holds two tiny runs trained and evaluated by latentrl at commit
c8db581 (before the framework redesign): their config.json in that version's layout, the
model weights, and the results.json their evaluation wrote. Planar plans with the roadmap,
recorded moves and blocked pushes; the pendulum with shooting and restarts, so every planner
option takes part. Evaluating the same checkpoints again must give the same actions, hence
the same per-episode costs and metrics.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from latentrl import cli

FIXTURES = Path(__file__).parent / "fixtures" / "legacy_runs"
METRICS = ("steps_in_goal", "steps_in_goal_half_radius", "success", "cost")

# The command-line settings each expected results.json was evaluated with.
EVALUATIONS = {
    "planar": [
        "--agents", "latent", "--episodes", "2", "--set", "eval.gifs=0",
        "--set", "eval.horizon=20",
    ],
    "pendulum": [
        "--agents", "latent", "--episodes", "2", "--set", "eval.gifs=0",
        "--set", "eval.horizon=30", "--set", "plan.r=0.001",
        "--set", "plan.options.shooting.count=32",
        "--set", "plan.options.shooting.beyond=0.5",
        "--set", "plan.options.restarts.count=2",
    ],
}  # fmt: skip


def legacy_run(name: str, tmp_path: Path) -> Path:
    """A copy of fixture run ``name`` whose run.json points at the copied planar dataset."""
    run = tmp_path / name
    shutil.copytree(FIXTURES / name, run)
    data = tmp_path / "planar_data"
    if not data.exists():
        shutil.copytree(FIXTURES / "planar_data", data)
    (run / "run.json").write_text(json.dumps({"dataset": str(data)}))
    return run


@pytest.mark.parametrize("name", sorted(EVALUATIONS))
def test_a_legacy_run_evaluates_to_the_same_numbers(name: str, tmp_path: Path) -> None:
    run = legacy_run(name, tmp_path)
    args = ["evaluate", str(run), *EVALUATIONS[name], "--wandb", "disabled"]
    assert cli.main(args) == 0
    got = json.loads((run / "eval" / "results.json").read_text())["agents"]["latent"]
    expected = json.loads((FIXTURES / f"{name}.expected_results.json").read_text())
    expected = expected["agents"]["latent"]
    assert len(got["episodes"]) == len(expected["episodes"]) == 2
    for new, old in zip(got["episodes"], expected["episodes"], strict=True):
        assert new["start_state"] == old["start_state"]
        for metric in METRICS:
            assert new[metric] == pytest.approx(old[metric], rel=1e-9, abs=1e-12), metric
