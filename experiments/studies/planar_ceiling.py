"""How many of the planar task's steps could any controller spend in the goal region?

From each start the agent needs at least ``k`` steps to reach the goal disc, 2 px per axis per
step with no obstacle in the way (:func:`latentrl.envs.planar.planar_min_steps`); it can then
be in the region for at most ``T - k + 1`` of the ``T`` counted steps. The mean over the
evaluation's starts bounds the "% of steps in goal" of every agent on them, the oracle's too.
Given evaluated runs, each agent's score is printed beside it as a fraction of that bound.

    python experiments/studies/planar_ceiling.py                       # the full preset's starts
    python experiments/studies/planar_ceiling.py runs/Planar-v0__planar__0__*
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from latentrl.envs import make_env, require_control_env
from latentrl.envs.planar import planar_min_steps
from latentrl.errors import UserError
from latentrl.pipeline import experiment_config

ENV_ID = "latentrl/Planar-v0"


def ceiling(min_steps: np.ndarray, horizon: int) -> np.ndarray:
    """Most steps in goal per episode, as a fraction of ``horizon``, from ``min_steps (n,)``."""
    return np.minimum(horizon - min_steps + 1, horizon) / horizon


def _evaluated_starts(run_dir: Path) -> tuple[np.ndarray, dict[str, float]]:
    path = run_dir / "eval" / "results.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(
            f"cannot read {path} ({exc}); run `latentrl evaluate {run_dir}` first"
        ) from None
    if results.get("env_id") != ENV_ID:
        raise UserError(f"{path} evaluates {results.get('env_id')!r}, not {ENV_ID}")
    try:
        scores = {
            name: float(agent["aggregate"]["steps_in_goal"]["mean"])
            for name, agent in results["agents"].items()
        }
        return np.asarray(results["start_states"], dtype=np.float64).reshape(-1, 2), scores
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UserError(
            f"{path} lacks per-agent steps_in_goal or start_states; evaluate the run again "
            f"with `latentrl evaluate {run_dir} --overwrite`"
        ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="evaluated planar run directories")
    args = parser.parse_args(argv)
    try:
        task = require_control_env(make_env(ENV_ID))
        ev = experiment_config("planar", "full").eval
        starts = task.sample_start_states(ev.episodes, np.random.default_rng(ev.seed))
        evaluated = [(run, *_evaluated_starts(run)) for run in args.runs]
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for run, run_starts, _ in evaluated:
        if run_starts.shape != starts.shape or not np.allclose(run_starts, starts):
            print(f"note: {run} was evaluated on other starts; its bound is its own")
    steps = planar_min_steps(starts, task.goal_radius)
    bound = ceiling(steps, task.horizon)
    print(f"{ENV_ID}: {len(starts)} starts (eval seed {ev.seed}), horizon {task.horizon}")
    print(f"fewest steps to the goal region: {steps.tolist()}")
    print(f"bound on steps in goal: {bound.mean():.4f} (mean over starts)")
    for run, run_starts, scores in evaluated:
        run_bound = ceiling(planar_min_steps(run_starts, task.goal_radius), task.horizon).mean()
        shares = ", ".join(f"{n} {s:.3f} ({s / run_bound:.0%})" for n, s in scores.items())
        print(f"{run.name}: {shares} of the bound {run_bound:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
