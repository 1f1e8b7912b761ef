"""Which latent-planning choices matter: one trained run, one set of starts, many planners.

Evaluates :class:`latentrl.agents.LatentMPCAgent` of a trained run with each variant of its
``plan`` config (horizon, terminal weight, restarts, E2C's own Jacobians, ...) on the same
seeded start states of the run's task, and prints a Markdown table: fraction of steps in the
goal region (mean ± s.e. over episodes), success, trajectory cost and wall time per batched
control step. Results go to ``RUN/plan_ablation.json`` as well.

    python experiments/studies/plan_ablation.py runs/RUN --episodes 10 --steps 200
    python experiments/studies/plan_ablation.py runs/RUN --only default horizon=60

A variant is a name and ``plan.*`` assignments; ``--set`` changes every variant (e.g. the
baseline horizon). Each variant costs ``steps`` batched iLQR solves: about 1-2 s each for 10
episodes at horizon 40 on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from latentrl.agents import LatentMPCAgent, roadmap_of_run
from latentrl.agents.latent import check_run_env
from latentrl.checkpoint import load_model
from latentrl.config import apply_overrides, to_dict
from latentrl.envs import make_env, require_control_env
from latentrl.episodes import mean_and_se, rollout_metrics, run_episodes
from latentrl.errors import UserError
from latentrl.planning.options import needs_frames

VARIANTS: dict[str, tuple[str, ...]] = {
    "default": (),
    "horizon=20": ("plan.horizon=20",),
    "horizon=30": ("plan.horizon=30",),
    "horizon=60": ("plan.horizon=60",),
    "q_f=q": ("plan.q_f=1.0",),
    "q_f=10q": ("plan.q_f=10.0",),
    "q_f=100q": ("plan.q_f=100.0",),
    # shooting scored with 10 q, iLQR refining with q
    "q_f=q,shooting_q_f=10q": (
        "plan.q_f=1.0",
        "plan.options.shooting.count=1024",
        "plan.options.shooting.terminal_weight=10.0",
    ),
    "restarts=2": ("plan.options.restarts.count=2",),
    "jacobian=e2c": ("plan.jacobian=e2c",),
    "replan_every=4": ("plan.replan_every=4",),
    "r=0.01": ("plan.r=0.01",),
    "r=0.001": ("plan.r=0.001",),
    "no_shooting": ("plan.options.shooting=null",),
    "shooting_always": ("plan.options.shooting.count=1024", "plan.options.shooting.beyond=0"),
    "shooting_far": ("plan.options.shooting.count=1024", "plan.options.shooting.beyond=0.5"),
    "blocked=0.5": ("plan.options.blocked_pushes.ratio=0.5",),
    "blocked=0.25": ("plan.options.blocked_pushes.ratio=0.25",),
    # the recorded moves read the roadmap's frames: without the roadmap, without them too
    "no_roadmap": ("plan.options.roadmap=null", "plan.options.recorded_moves=null"),
    "roadmap=1": ("plan.options.roadmap.lookahead=1",),
    "roadmap=1.5": ("plan.options.roadmap.lookahead=1.5",),
    "roadmap=2": ("plan.options.roadmap.lookahead=2",),
    "roadmap=3": ("plan.options.roadmap.lookahead=3",),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=None, help="default: the task's horizon")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start states")
    parser.add_argument("--only", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--set", action="append", default=[], metavar="plan.FIELD=VALUE")
    args = parser.parse_args(argv)
    try:
        rows = ablate(args.run_dir, args.only, args.set, args.episodes, args.steps, args.seed)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    (args.run_dir / "plan_ablation.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def ablate(
    run_dir: Path,
    names: list[str],
    common: list[str],
    episodes: int,
    steps: int | None,
    seed: int,
) -> list[dict[str, object]]:
    if any(not a.startswith("plan.") for a in common):
        raise UserError("--set changes plan.* settings only")
    model, config = load_model(run_dir, "cpu")  # once: each variant plans with this model
    env = make_env(config.data.env_id, **config.data.env_kwargs)
    try:
        check_run_env(config, env, run_dir)
        task = require_control_env(env)
        steps = steps or task.horizon
        starts = task.sample_start_states(episodes, np.random.default_rng(seed))
        torch.set_num_threads(1)  # tiny tensors: extra threads only synchronise
        print(f"{run_dir.name}: {episodes} episodes of {steps} steps, common {common or 'none'}")
        print("| variant | steps in goal | success | cost | ms/step |\n|---|---|---|---|---|")
        rows = []
        roadmap = None  # built once, for the first variant that plans with it
        for name in names:
            plan = apply_overrides(config, [*common, *VARIANTS[name]]).plan
            if needs_frames(plan.options) and roadmap is None:
                roadmap = roadmap_of_run(run_dir, model)
            space = env.action_space
            agent = LatentMPCAgent(model, space.low, space.high, plan, seed, roadmap)
            start = time.perf_counter()
            rollout = run_episodes(
                config.data.env_id, task, agent, starts, steps, env_kwargs=config.data.env_kwargs
            )
            row = {"variant": name, "plan": to_dict(plan), "seconds": time.perf_counter() - start}
            for key, values in rollout_metrics(task, rollout).items():
                row[key] = mean_and_se(values)
            row["ms_per_step"] = 1_000 * float(np.median(rollout.act_seconds))
            rows.append(row)
            (m, se), (s, _), (c, _) = row["steps_in_goal"], row["success"], row["cost"]
            print(f"| {name} | {m:.3f} ± {se:.3f} | {s:.2f} | {c:.0f} | {row['ms_per_step']:.0f} |")
    finally:
        env.close()
    return rows


if __name__ == "__main__":
    sys.exit(main())
