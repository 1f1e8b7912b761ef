"""An agent's episodes from given start states, and their metrics (pure functions).

:func:`run_episodes` runs all episodes at once, one env copy each
(:class:`~latentrl.episode_envs.EpisodeEnvs`, in this process or in worker processes);
:func:`episode_metrics` scores them: the fraction of steps in the goal region and in half of
it, success (in the goal region for each of the final ``ceil(T / 10)`` steps) and the
trajectory cost. :mod:`latentrl.evaluate` runs the protocol with them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from latentrl.agents.agent import Agent
from latentrl.envs import ControlEnv, goal_observation
from latentrl.episode_envs import EpisodeEnvs
from latentrl.errors import UserError

FINAL_FRACTION = 0.1
"""Success: in the goal region for each of the final ``ceil(FINAL_FRACTION · T)`` steps."""


# --- metrics: pure functions ------------------------------------------------------------------


def final_steps(horizon: int, fraction: float = FINAL_FRACTION) -> int:
    """Steps at the end of an episode that count for success: ``ceil(fraction · T)``, >= 1."""
    return max(1, math.ceil(fraction * horizon - 1e-9))  # 0.1 * 30 is 3.0000000000000004


def episode_metrics(
    distances: np.ndarray, costs: np.ndarray, radius: float
) -> dict[str, np.ndarray]:
    """Per-episode metrics ``(B,)`` from goal distances ``(B, T)`` of ``s_1 .. s_T`` and step
    costs ``(B, T)``: fractions of steps within ``radius`` and ``radius / 2``, success (0/1),
    trajectory cost."""
    inside = distances <= radius
    return {
        "steps_in_goal": inside.mean(axis=1),
        "steps_in_goal_half_radius": (distances <= radius / 2).mean(axis=1),
        "success": inside[:, -final_steps(distances.shape[1]) :].all(axis=1).astype(np.float64),
        "cost": costs.sum(axis=1),
    }


def goal_distances(task: ControlEnv, states: np.ndarray) -> np.ndarray:
    """``task.goal_distance`` of states ``(B, T, d)``: ``(B, T)``."""
    return task.goal_distance(states.reshape(-1, states.shape[-1])).reshape(states.shape[:-1])


def mean_and_se(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard error ``std(ddof=1) / sqrt(n)`` (NaN for fewer than 2 values)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    se = float(np.std(x, ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")
    return float(np.mean(x)), se


# --- rollouts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rollout:
    """Episodes of one agent: ``B`` episodes of ``T`` steps."""

    states: np.ndarray
    """True states ``(B, T + 1, d)``, ``s_0`` (the start) to ``s_T``."""
    actions: np.ndarray
    """Actions ``(B, T, m)``."""
    costs: np.ndarray
    """``env.cost(s_t, u_t)``, ``(B, T)``."""
    act_seconds: np.ndarray
    """Wall time of each batched ``agent.act`` call, ``(T,)``."""
    frames: np.ndarray | None
    """Video frames uint8 ``(b, T, H', W')`` of the first ``b`` episodes, if asked for."""


FrameFn = Callable[[np.ndarray], np.ndarray]
"""Observations uint8 ``(b, k, H, W)`` of the filmed episodes -> frames uint8 ``(b, H', W')``,
called right after ``act``."""


def run_episodes(
    env_id: str,
    task: ControlEnv,
    agent: Agent,
    starts: np.ndarray,
    horizon: int,
    filmed: int = 0,
    frame_fn: FrameFn | None = None,
    label: str = "",
    env_kwargs: Mapping[str, Any] | None = None,
    env_workers: int = 1,
) -> Rollout:
    """Run ``agent`` from each of ``starts (B, d)`` for ``horizon`` steps, one copy of
    ``env_id`` per episode; ``task`` (an unwrapped instance) supplies goal and cost. A
    progress bar named ``label`` counts the steps, with the share of episodes in the goal
    region; it is hidden when stderr is not a terminal (logs, CI). ``env_kwargs``: keyword
    arguments of every copy's ``make_env``; ``env_workers``: processes that step the copies
    (1: this one), the same episodes for any count."""
    batch = starts.shape[0]
    states = np.empty((batch, horizon + 1, starts.shape[1]))
    actions, costs, seconds, frames = [], [], np.empty(horizon), []
    with EpisodeEnvs(env_id, env_kwargs, batch, env_workers) as envs:
        bar = tqdm(range(horizon), desc=label or None, unit="step", disable=None, leave=False)
        try:
            reset = envs.reset_to(starts)
            obs, states[:, 0] = reset.observations, reset.states
            agent.reset(goal_observation(task), batch)
            for t in bar:
                start = time.perf_counter()
                u = agent.act(obs, states[:, t].copy())
                seconds[t] = time.perf_counter() - start
                if frame_fn is not None and filmed:
                    frames.append(frame_fn(obs[:filmed]))
                actions.append(u)
                costs.append(task.cost(states[:, t], u))
                step = envs.step(u)
                if np.any(step.terminated):
                    raise UserError(
                        f"{env_id} ended an episode after {t + 1} of {horizon} steps; evaluation "
                        "needs episodes that run for the whole horizon (no termination)"
                    )
                obs, states[:, t + 1] = step.observations, step.states
                in_goal = task.goal_distance(states[:, t + 1]) <= task.goal_radius
                bar.set_postfix_str(f"in goal {in_goal.mean():.0%}", refresh=False)
        finally:
            bar.close()
    video = np.stack(frames, axis=1) if frames else None
    return Rollout(states, np.stack(actions, 1), np.stack(costs, 1), seconds, video)


def rollout_metrics(task: ControlEnv, rollout: Rollout) -> dict[str, np.ndarray]:
    """:func:`episode_metrics` of a rollout's states ``s_1 .. s_T`` and costs."""
    distances = goal_distances(task, rollout.states[:, 1:])
    return episode_metrics(distances, rollout.costs, task.goal_radius)
