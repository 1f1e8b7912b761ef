"""Does a cart-pole model's latent distance to the goal weigh the pole as the task does?

The latent planner's state cost is ``|z - z_goal|²``, the squared distance from the encoding of
the current frames to the encoding of the goal image (upright, at rest, cart centred). The
task's cost weighs the pole's angle ten times the cart's position (``state_weights`` of
``envs/mujoco_swingup.py``). This prints, for each run, ``|z - z_goal|²`` of the frames of
states at rest on a grid of cart positions x and pole angles θ (the initial belief's mean;
``z_goal`` as the latent agent encodes it), beside the task's cost of the same states, and the
Spearman rank correlation of the two over the grid (1: the latent cost orders the states as
the task's cost does).

    python experiments/studies/cartpole_goal_distance.py runs/CartpoleSwingup-v0__default__0__*
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from latentrl.checkpoint import load_model
from latentrl.diagnostics.ranks import rank_correlation
from latentrl.envs import goal_observation, make_env, require_control_env
from latentrl.errors import UserError
from latentrl.evaluate import evaluation_env_kwargs

POSITIONS = (0.0, 0.25, 0.5, 1.0)
"""Cart positions x of the grid, m (the rail: ±1.5 m)."""
ANGLES = (0.0, np.pi / 6, np.pi / 2, np.pi)
"""Pole angles θ of the grid, rad from upright (π/6: the goal region's edge; π: hanging)."""
ANGLE_NAMES = ("0", "π/6", "π/2", "π")


def rest_states() -> np.ndarray:
    """The grid's states ``(len(ANGLES) * len(POSITIONS), 4)``: (x, θ, 0, 0), θ-major."""
    return np.array([[x, theta, 0.0, 0.0] for theta in ANGLES for x in POSITIONS])


@torch.no_grad()
def latent_goal_distances(run_dir: Path, states: np.ndarray) -> tuple[np.ndarray, str]:
    """``|z - z_goal|²`` ``(n,)`` of the frames of ``states`` under the run's model, and the
    model's kind."""
    model, config = load_model(run_dir)
    model.eval()
    if config.data.env_id.split("/")[-1] not in ("CartpoleSwingup-v0", "CartpoleSwingupGap2-v0"):
        raise UserError(f"{run_dir} is a run of {config.data.env_id}, not of the cart-pole")
    env = make_env(config.data.env_id, **evaluation_env_kwargs(config))
    try:
        task = require_control_env(env.unwrapped)
        goal = model.initial_belief(torch.as_tensor(goal_observation(task)[None])).mean[0]
        z = model.initial_belief(torch.as_tensor(task.observe(states))).mean
    finally:
        env.close()
    return ((z - goal) ** 2).sum(-1).numpy(), config.model.kind


def task_costs(states: np.ndarray) -> np.ndarray:
    """The cart-pole's own state cost of ``states`` (no action)."""
    env = make_env("latentrl/CartpoleSwingup-v0")
    try:
        task = require_control_env(env.unwrapped)
        return task.cost(states, np.zeros((len(states), 1)))
    finally:
        env.close()


def table(values: np.ndarray) -> list[str]:
    """Rows ``θ | value per x`` of a grid's values."""
    grid = values.reshape(len(ANGLES), len(POSITIONS))
    return [
        f"  θ = {name:>4}  " + "  ".join(f"{v:7.2f}" for v in row)
        for name, row in zip(ANGLE_NAMES, grid, strict=True)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="trained cart-pole run directories")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    states = rest_states()
    costs = task_costs(states)
    header = "  x (m)      " + "  ".join(f"{x:7.2f}" for x in POSITIONS)
    print("the task's cost at rest")
    print("\n".join([header, *table(costs)]))
    try:
        for run in args.runs:
            distances, kind = latent_goal_distances(run, states)
            print(f"\n{run} ({kind}): |z - z_goal|² at rest")
            print("\n".join([header, *table(distances)]))
            print(
                f"  rank correlation with the task's cost: {rank_correlation(distances, costs):.2f}"
            )
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
