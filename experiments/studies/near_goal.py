"""How well a trained model knows and predicts the states near the goal, and what the oracle
would score if it knew the state only that well.

A swing-up is won or lost in the last steps: the planner has to read the velocities near the
goal well enough to brake. For one trained run this measures, on states drawn near the goal
(:func:`latentrl.envs.contract.sample_near_goal_states`) and on states drawn from the whole
state box:

* the model's open-loop error after 1, 5, 10, 20 and 40 random-action steps
  (:func:`latentrl.latent_diagnostics.open_loop_error`: 1.0 is as far off as a random latent);
* how precisely the latent holds each state coordinate: the RMS error of a probe (an MLP
  fitted on the run's training latents and true states) on fresh rendered states;
* with ``--oracle-noise S ...``: the true-state oracle's score on the task's starts when it
  reads the state with Gaussian noise of S times the probe's near-goal RMS error per
  coordinate (S = 0: the plain oracle). The noise is drawn afresh at every step, where a
  latent's error is mostly systematic, so this says how precise a state estimate the planner
  needs, not what the latent agent will score.

    python experiments/studies/near_goal.py runs/RUN
    python experiments/studies/near_goal.py runs/RUN --oracle-noise 0 0.5 1 --episodes 10

Prints Markdown tables and writes ``RUN/near_goal.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentrl.agents import OracleMPCAgent
from latentrl.agents.latent import check_run_env
from latentrl.checkpoint import load_model
from latentrl.data import load_transitions
from latentrl.envs import make_env, require_control_env
from latentrl.envs.contract import (
    NEAR_GOAL_FRACTION,
    ControlEnv,
    sample_near_goal_states,
    wrap_angle,
)
from latentrl.episodes import mean_and_se, rollout_metrics, run_episodes
from latentrl.errors import UserError
from latentrl.latent_diagnostics import (
    encode_rollouts,
    encoder_means,
    open_loop_error,
    random_rollouts,
)
from latentrl.probe import state_errors, state_features, train_probe
from latentrl.run_directory import dataset_of_run

ERROR_STEPS = (1, 5, 10, 20, 40)


class NoisyStateAgent:
    """An agent that reads the true state with Gaussian noise of std ``std (d,)`` per step
    (angles wrapped, clipped into the state box)."""

    def __init__(self, agent: Any, task: ControlEnv, std: np.ndarray, seed: int = 0) -> None:
        self.agent, self.task = agent, task
        self.std = np.asarray(std, dtype=np.float64)
        self.rng = np.random.default_rng(seed)

    def reset(self, goal_obs: np.ndarray, batch_size: int) -> None:
        self.agent.reset(goal_obs, batch_size)

    def act(self, obs: np.ndarray, states: np.ndarray) -> np.ndarray:
        noisy = states + self.rng.normal(size=states.shape) * self.std
        for dim in self.task.angle_dims:
            noisy[:, dim] = wrap_angle(noisy[:, dim])
        box = self.task.state_space  # type: ignore[attr-defined]
        # strictly inside: an angle of exactly pi wraps to -pi, and the box is closed
        inside = np.clip(noisy, box.low + 1e-9, box.high - 1e-9)
        return self.agent.act(obs, inside)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--states", type=int, default=256, help="states per set (default 256)")
    parser.add_argument("--oracle-noise", type=float, nargs="*", default=[], metavar="S")
    parser.add_argument("--episodes", type=int, default=10, help="oracle episodes per S")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        report = measure(args.run_dir, args.states, args.oracle_noise, args.episodes, args.seed)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    (args.run_dir / "near_goal.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


def measure(
    run_dir: Path, count: int, noise_scales: list[float], episodes: int, seed: int
) -> dict[str, Any]:
    if count < 2:
        raise UserError(f"--states must be at least 2, got {count}")
    if noise_scales and episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {episodes}")
    if any(s < 0 for s in noise_scales):
        raise UserError(f"--oracle-noise scales must be >= 0, got {noise_scales}")
    torch.set_num_threads(1)  # the rollouts' tensors are small; the probe's fit is too
    model, config = load_model(run_dir, "cpu")
    env = make_env(config.data.env_id, **config.data.env_kwargs)
    try:
        check_run_env(config, env, run_dir)
        task = require_control_env(env)
        rng = np.random.default_rng(seed)
        sets = {"near goal": sample_near_goal_states(task, count, rng), "state box": None}
        report: dict[str, Any] = {"run": str(run_dir), "near_fraction": NEAR_GOAL_FRACTION}
        print(
            f"{run_dir.name}: {count} states per set, near goal = within {NEAR_GOAL_FRACTION} of "
            "the state box's half-width"
        )
        print("\n| starts | open-loop error " + " | ".join(f"@{k}" for k in ERROR_STEPS) + " |")
        print("|---|" + "---|" * len(ERROR_STEPS))
        for name, starts in sets.items():
            rollouts = random_rollouts(
                task, episodes=count, steps=max(ERROR_STEPS), seed=seed, starts=starts
            )
            error = open_loop_error(
                model, encode_rollouts(model, rollouts.observations), rollouts.actions
            )
            values = {k: float(error[k - 1]) for k in ERROR_STEPS}
            report[f"open_loop_error/{name}"] = values
            print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values.values()) + " |")
        rmse = probe_errors(model, run_dir, config, task, sets["near goal"], rng)
        report["probe_rmse"] = rmse
        names = list(task.state_names)
        print("\n| states | probe RMS error: " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for name, values in rmse.items():
            print(f"| {name} | " + " | ".join(f"{values[n]:.3f}" for n in names) + " |")
        if noise_scales:
            report["oracle_noise"] = noisy_oracle(
                config.data.env_id, task, rmse["near goal"], noise_scales, episodes, seed
            )
    finally:
        env.close()
    return report


def probe_errors(
    model: Any,
    run_dir: Path,
    config: Any,
    task: ControlEnv,
    near: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, dict[str, float]]:
    """RMS error per state coordinate of a probe fitted on the run's training data, on the
    ``near`` states and on as many drawn from the whole box."""
    data = load_transitions(
        dataset_of_run(run_dir),
        {"obs_shape": config.model.obs_shape, "action_dim": config.model.action_dim},
    )
    names, angles = list(task.state_names), list(task.angle_dims)
    z = encoder_means(model, data.obs)
    targets, _ = state_features(data.state, names, angles)
    probe = train_probe(z, targets, steps=3_000, hidden=128)
    out = {}
    for name, states in (("near goal", near), ("state box", task.sample_states(len(near), rng))):
        latent = encoder_means(model, torch.as_tensor(task.observe(states)))
        errors = state_errors(probe(latent).double().numpy(), states, angles)
        rms = np.sqrt(np.mean(errors**2, axis=0))
        out[name] = {n: float(v) for n, v in zip(names, rms, strict=True)}
    return out


def noisy_oracle(
    env_id: str,
    task: ControlEnv,
    rmse: dict[str, float],
    scales: list[float],
    episodes: int,
    seed: int,
) -> list[dict[str, Any]]:
    """The oracle's metrics on ``episodes`` task starts for each noise scale."""
    starts = task.sample_start_states(episodes, np.random.default_rng(seed))
    std = np.array([rmse[n] for n in task.state_names])
    print(
        f"\noracle reading the state with noise S x {np.round(std, 3).tolist()} "
        f"({', '.join(task.state_names)}), {episodes} task starts:"
    )
    print("| S | steps in goal | success | cost | s |\n|---|---|---|---|---|")
    rows = []
    for scale in scales:
        agent = NoisyStateAgent(OracleMPCAgent(task, seed=seed), task, scale * std, seed)
        start = time.perf_counter()
        rollout = run_episodes(env_id, task, agent, starts, task.horizon)
        row: dict[str, Any] = {"scale": scale, "std": (scale * std).tolist()}
        row |= {k: mean_and_se(v) for k, v in rollout_metrics(task, rollout).items()}
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        (m, se), (s, _), (c, _) = row["steps_in_goal"], row["success"], row["cost"]
        print(
            f"| {scale:g} | {m:.3f} ± {se:.3f} | {s:.2f} | {c:.0f} | {row['seconds']:.0f} |",
            flush=True,
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())
