"""Runs trained by an earlier latentrl evaluate to the same numbers with this one.

``tests/fixtures/legacy_runs`` holds two tiny runs trained and evaluated by latentrl at commit
c8db581 (before the framework redesign): their config.json in that version's layout, the
model weights, and the results.json their evaluation wrote. Planar plans with the roadmap,
recorded moves and blocked pushes; the pendulum with shooting and restarts, so every planner
option takes part. Evaluating the same checkpoints again must give the same actions, hence
the same per-episode costs and metrics.

The same code gives other numbers on another kind of CPU: MKL and oneDNN pick their kernels by
the instruction set, the last bits of a float differ, and a planner's discrete choices
(shooting's best candidate, a blocked push) carry the difference into the actions. So each
run has one reference per CPU kind it was checked on, each written there by a version that
reproduces the others' references on theirs: ``NAME.expected_results.json`` (AMD EPYC, commit
c8db581) and ``NAME.expected_results.xeon_avx512.json`` (an Intel Xeon with AVX-512, by
commit 7b573b7, which reproduces the first on the AMD machines). An evaluation must match one
of them in every episode. On a new kind of CPU, evaluate the fixture runs with the landed
version there and add its results.json as ``NAME.expected_results.<cpu>.json``.
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


def references(name: str) -> dict[str, list[dict]]:
    """The expected latent episodes of fixture run ``name`` by reference file name."""
    return {
        path.name: json.loads(path.read_text())["agents"]["latent"]["episodes"]
        for path in sorted(FIXTURES.glob(f"{name}.expected_results*.json"))
    }


def mismatch(got: list[dict], expected: list[dict]) -> str | None:
    """The first episode metric where ``got`` differs from ``expected`` (None: they match)."""
    if len(got) != len(expected):
        return f"{len(got)} episodes, expected {len(expected)}"
    for i, (new, old) in enumerate(zip(got, expected, strict=True)):
        if new["start_state"] != old["start_state"]:
            return f"episode {i}: start state {new['start_state']} != {old['start_state']}"
        for metric in METRICS:
            if new[metric] != pytest.approx(old[metric], rel=1e-9, abs=1e-12):
                return f"episode {i}: {metric} {new[metric]!r} != {old[metric]!r}"
    return None


@pytest.mark.parametrize("name", sorted(EVALUATIONS))
def test_a_legacy_run_evaluates_to_the_same_numbers(name: str, tmp_path: Path) -> None:
    run = legacy_run(name, tmp_path)
    args = ["evaluate", str(run), *EVALUATIONS[name], "--wandb", "disabled"]
    assert cli.main(args) == 0
    got = json.loads((run / "eval" / "results.json").read_text())["agents"]["latent"]["episodes"]
    expected = references(name)
    assert len(expected) == 2 and all(len(episodes) == 2 for episodes in expected.values())
    misses = {file: mismatch(got, episodes) for file, episodes in expected.items()}
    assert None in misses.values(), f"matches no reference: {misses}"


def test_a_reference_is_missed_by_another_cpus_numbers() -> None:
    """The two references differ, so matching one of them is a test that can fail."""
    for name in EVALUATIONS:
        (first, a), (second, b) = references(name).items()
        assert mismatch(a, b) is not None, (name, first, second)
        assert mismatch(a, a) is None
        shifted = [{**episode, "cost": episode["cost"] * (1 + 1e-6)} for episode in a]
        assert mismatch(shifted, a) == f"episode 0: cost {shifted[0]['cost']!r} != {a[0]['cost']!r}"
