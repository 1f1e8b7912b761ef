"""Benchmark: stepping the envs of many evaluation episodes in worker processes.

Times ``EpisodeEnvs.step`` (:mod:`latentrl.episode_envs`) for ``--episodes`` copies of an env
(one per episode, as ``latentrl evaluate`` runs them) with each of ``--workers`` processes
(``eval.env_workers``), under the same random actions, and checks that every count gives the
same states as one process. The planner is not timed: this is the CPU's share of a control
step, the time a GPU planner would wait on.

Usage::

    python experiments/benchmarks/bench_env_workers.py [--env latentrl/CartpoleSwingup-v0]
        [--episodes 200] [--workers 1 2 4 8] [--steps 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from latentrl.envs import make_env
from latentrl.episode_envs import EpisodeEnvs


def time_steps(
    env_id: str, starts: np.ndarray, actions: np.ndarray, workers: int
) -> tuple[float, float, np.ndarray]:
    """Seconds to start the workers, ms per batched step, and the final states."""
    begin = time.perf_counter()
    with EpisodeEnvs(env_id, {}, len(starts), workers) as envs:
        envs.reset_to(starts)
        started = time.perf_counter() - begin
        begin = time.perf_counter()
        for u in actions:
            step = envs.step(u)
        per_step = (time.perf_counter() - begin) / len(actions) * 1e3
    return started, per_step, step.states


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="latentrl/CartpoleSwingup-v0")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, default=20)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    env = make_env(args.env)
    task = env.unwrapped
    rng = np.random.default_rng(0)
    starts = task.sample_start_states(args.episodes, rng)
    space = env.action_space
    actions = rng.uniform(space.low, space.high, (args.steps, args.episodes, *space.shape))
    actions = actions.astype(space.dtype)
    env.close()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {args.env}, "
        f"{args.episodes} episodes, {args.steps} steps of random actions"
    )
    reference, first_ms = None, None
    for workers in args.workers:
        started, ms, states = time_steps(args.env, starts, actions, workers)
        if reference is None:
            reference, first_ms = states, ms
        same = np.array_equal(states, reference)
        print(
            f"  {workers:>3} worker(s): {ms:9.1f} ms per step ({first_ms / ms:4.2f}x the first), "
            f"started in {started:5.1f} s, states {'the same' if same else 'DIFFER'}",
            flush=True,
        )
        if not same:
            raise SystemExit("the states depend on the number of workers")


if __name__ == "__main__":
    main()
