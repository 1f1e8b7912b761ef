"""Evaluation of a trained run against the oracle and a random agent (``latentrl evaluate``).

Protocol, for the run's env (``config.data.env_id``) and its ``eval`` config section:

* ``episodes`` start states from ``env.sample_start_states`` with the generator seeded by
  ``eval.seed``, the same for every agent (Pendulum-v0: θ in π ± 0.2, θ̇ = 0);
* the goal image is the env's observation of its goal state;
* each agent runs all episodes at once in a Gymnasium ``SyncVectorEnv`` of ``B`` copies, each
  reset into its start state, for ``horizon`` steps (default ``env.horizon``; 200 for the
  pendulum) with autoreset disabled; an episode that terminates early is an error;
* per episode, over the states ``s_1 .. s_T`` reached after each action: the fraction of steps
  in the goal region (``goal_distance <= goal_radius``; Pendulum-v0: π/6) and in half of it
  (π/12), success (in the goal region for each of the final ``ceil(T / 10)`` steps), and the
  trajectory cost ``Σ_{t<T} env.cost(s_t, u_t)``; per agent, the wall time of ``agent.act``
  per control step (one batched call for all ``B`` episodes, in ms). Aggregates: mean and
  standard error over episodes (over control steps for the time).

Artifacts in ``RUN_DIR/eval/``: ``results.json`` (settings, start states, per-episode and
aggregate metrics per agent), ``trajectories.npz`` (states, actions, costs per agent),
``states.png`` (goal distance and every state coordinate over time, all episodes),
``videos/latent_episode_XX.gif``, one per episode (``eval.gifs`` caps them; observation |
decoded latent | decoded plan at several steps ahead), ``metrics.jsonl`` (per-step means),
``summary.json``; W&B gets the same under ``eval/<agent>/<metric>`` in a run with job type
``evaluate``, grouped by experiment.

Evaluating again (``overwrite=True``, ``latentrl evaluate --overwrite``) replaces the agents it
runs; an earlier agent it does not run stays, with its trajectories and GIFs, when it ran on the
same episodes (env, start states, horizon, goal region) with the settings its numbers depend on
(the eval seed; the plan for the latent agent; the oracle's horizon). Otherwise it is dropped,
and the evaluation says so. The oracle and random agents do not depend on the model: with
``baselines_from`` (``latentrl evaluate --baselines-from OTHER_RUN``; ``latentrl run`` for every
seed after the first) they are taken, on the same condition, from another run's evaluation.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from latentrl.agents import Agent, LatentMPCAgent, OracleMPCAgent, RandomAgent
from latentrl.agents.latent import plan_steps
from latentrl.checkpoint import CONFIG_FILE
from latentrl.config import (
    AGENTS,
    ExperimentConfig,
    PlanConfig,
    apply_overrides,
    load_config,
    to_dict,
)
from latentrl.envs import ControlEnv, goal_observation, make_env, require_control_env
from latentrl.errors import UserError
from latentrl.logging import Logger, resolve_wandb_mode
from latentrl.plots import state_plot
from latentrl.train import resolve_device

EVAL_DIR = "eval"
RESULTS_FILE = "results.json"
TRAJECTORIES_FILE = "trajectories.npz"
PLOT_FILE = "states.png"
VIDEOS_DIR = "videos"
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
) -> Rollout:
    """Run ``agent`` from each of ``starts (B, d)`` for ``horizon`` steps in a vector env of
    ``B`` copies of ``env_id``; ``task`` (an unwrapped instance) supplies goal and cost. A
    progress bar named ``label`` counts the steps, with the share of episodes in the goal
    region; it is hidden when stderr is not a terminal (logs, CI). ``env_kwargs``: keyword
    arguments of every copy's ``make_env``."""
    batch = starts.shape[0]
    vec = gym.vector.SyncVectorEnv(
        [lambda: make_env(env_id, **(env_kwargs or {})) for _ in range(batch)],
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,
    )
    states = np.empty((batch, horizon + 1, starts.shape[1]))
    actions, costs, seconds, frames = [], [], np.empty(horizon), []
    bar = tqdm(range(horizon), desc=label or None, unit="step", disable=None, leave=False)
    try:
        obs, states[:, 0] = _reset_to(vec, starts)
        agent.reset(goal_observation(task), batch)
        for t in bar:
            start = time.perf_counter()
            u = agent.act(obs, states[:, t].copy())
            seconds[t] = time.perf_counter() - start
            if frame_fn is not None and filmed:
                frames.append(frame_fn(obs[:filmed]))
            actions.append(u)
            costs.append(task.cost(states[:, t], u))
            obs, _, terminated, _, info = vec.step(u)
            if np.any(terminated):
                raise UserError(
                    f"{env_id} ended an episode after {t + 1} of {horizon} steps; evaluation "
                    "needs episodes that run for the whole horizon (no termination)"
                )
            states[:, t + 1] = info["state"]
            in_goal = task.goal_distance(states[:, t + 1]) <= task.goal_radius
            bar.set_postfix_str(f"in goal {in_goal.mean():.0%}", refresh=False)
    finally:
        bar.close()
        vec.close()
    video = np.stack(frames, axis=1) if frames else None
    return Rollout(states, np.stack(actions, 1), np.stack(costs, 1), seconds, video)


def rollout_metrics(task: ControlEnv, rollout: Rollout) -> dict[str, np.ndarray]:
    """:func:`episode_metrics` of a rollout's states ``s_1 .. s_T`` and costs."""
    distances = goal_distances(task, rollout.states[:, 1:])
    return episode_metrics(distances, rollout.costs, task.goal_radius)


def _reset_to(vec: gym.vector.SyncVectorEnv, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reset copy ``i`` of ``vec`` into ``starts[i]``: observations and reported states."""
    obs, info = vec.reset(options={"state": starts[0]})
    states = np.array(info["state"], dtype=np.float64)
    for i in range(1, len(starts)):
        mask = np.arange(len(starts)) == i
        obs, info = vec.reset(options={"state": starts[i], "reset_mask": mask})
        states[i] = info["state"][i]
    return obs, states


# --- the evaluation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalResult:
    eval_dir: Path
    results: dict[str, Any]
    """The content of results.json."""
    table: str


def evaluate_run(
    run_dir: Path | str,
    overrides: Sequence[str] = (),
    *,
    wandb_mode: str | None = None,
    overwrite: bool = False,
    baselines_from: Path | str | None = None,
    echo: Callable[[str], None] = print,
) -> EvalResult:
    """Evaluate the run in ``run_dir`` with its ``eval`` and ``plan`` config sections,
    changed by ``overrides`` (``eval.*``/``plan.*`` assignments); writes ``run_dir/eval/``.

    ``baselines_from``: another evaluated run whose oracle and random agents (they do not
    depend on the model) are taken instead of run again, where they ran on the same episodes
    with the same settings; ``results.json`` names it under ``baselines_from``."""
    run_dir = Path(run_dir)
    config = _eval_config(run_dir, overrides)
    out = run_dir / EVAL_DIR
    existing = out.exists() and any(out.iterdir())
    if existing and not overwrite:
        raise UserError(f"{out} already holds an evaluation; pass --overwrite to replace it")
    if baselines_from is not None and not (Path(baselines_from) / EVAL_DIR / RESULTS_FILE).exists():
        raise UserError(
            f"{baselines_from} holds no evaluation ({EVAL_DIR}/{RESULTS_FILE}) to take the "
            "oracle and random agents from: evaluate it first, or leave --baselines-from out"
        )
    ev = config.eval
    env = make_env(config.data.env_id, **config.data.env_kwargs)
    threads = torch.get_num_threads()
    # Planning works on tiny tensors: intra-op threads only add synchronisation (the latent
    # agent ran 10x slower with 2 threads than with 1 on a busy 2-core machine).
    torch.set_num_threads(1)
    try:
        task = require_control_env(env)
        horizon = _horizon(env, task, ev.horizon)
        starts = task.sample_start_states(ev.episodes, np.random.default_rng(ev.seed))
        header = results_header(run_dir, config, task, starts, horizon)
        baselines = EarlierAgents.none()
        if baselines_from is not None:
            source = Path(baselines_from)
            asked = [name for name in ev.agents if name in MODEL_FREE_AGENTS]
            found = reusable_agents(source / EVAL_DIR, header, asked, echo)
            origins = {name: found.origins.get(name, str(source)) for name in found.entries}
            baselines = replace(found, origins=origins)
            if baselines.entries:
                names = ", ".join(baselines.entries)
                echo(f"took {names} from {source} (same episodes and settings)")
        to_run = [name for name in ev.agents if name not in baselines.entries]
        agents = _make_agents(run_dir, config, env, task, to_run)
        rollouts: dict[str, Rollout] = {}
        for name, agent in agents.items():
            echo(f"evaluating {name}: {ev.episodes} episodes of {horizon} steps")
            frame_fn = agent.video_frames if isinstance(agent, LatentMPCAgent) else None
            filmed = ev.episodes if ev.gifs is None else min(ev.gifs, ev.episodes)
            rollouts[name] = run_episodes(
                config.data.env_id,
                task,
                agent,
                starts,
                horizon,
                filmed,
                frame_fn,
                name,
                env_kwargs=config.data.env_kwargs,
            )
        results = header | {"agents": agent_results(task, starts, rollouts)}
        merge_agents(results, rollouts, baselines)
        kept = baselines.gifs
        if existing:
            kept = kept | keep_earlier_agents(out, results, rollouts, echo)
        fps = int(env.metadata.get("render_fps", 20))
        table = format_table(results)
        if existing:  # replaced only now: a failed evaluation keeps the previous one
            shutil.rmtree(out)
        for path, gif in kept.items():
            (out / path).parent.mkdir(parents=True, exist_ok=True)
            (out / path).write_bytes(gif)
        _write_artifacts(out, config, results, rollouts, task, fps, wandb_mode, run_dir.name)
    finally:
        torch.set_num_threads(threads)
        env.close()
    echo(table)
    return EvalResult(out, results, table)


PROTOCOL_FIELDS = ("env_id", "episodes", "horizon", "goal_radius", "final_steps", "start_states")
"""What every agent of one results.json shares: the same episodes from the same starts."""


def agent_settings(results: dict[str, Any], agent: str) -> dict[str, Any]:
    """The settings of ``results.json`` that ``agent``'s numbers depend on, beside the protocol:
    the eval seed for all, the plan for the latent agent, the oracle's own horizon. A plan
    written before a field existed ran with that field's default."""
    ev = results["eval"]
    settings: dict[str, Any] = {"seed": ev["seed"]}
    if agent == "latent":
        settings["plan"] = _as_json(asdict(PlanConfig())) | results["plan"]
    elif agent == "oracle":
        settings["oracle_horizon"] = ev["oracle_horizon"]
    return settings


MODEL_FREE_AGENTS = ("oracle", "random")
"""The agents whose episodes do not depend on the run's model."""


@dataclass(frozen=True)
class EarlierAgents:
    """Agents of an earlier evaluation: their ``results.json`` entries, rollouts (no timings,
    no frames: the entries hold the timings), GIFs (path relative to the eval dir -> bytes),
    and the runs they were first evaluated in, where that was another run (``baselines_from``
    of that ``results.json``)."""

    entries: dict[str, Any]
    rollouts: dict[str, Rollout]
    gifs: dict[Path, bytes]
    origins: dict[str, str]

    @classmethod
    def none(cls) -> EarlierAgents:
        return cls({}, {}, {}, {})


def reusable_agents(
    eval_dir: Path,
    results: dict[str, Any],
    names: Sequence[str] | None,
    echo: Callable[[str], None],
) -> EarlierAgents:
    """Of ``names`` (None: all those not in ``results["agents"]``), the agents of the
    evaluation in ``eval_dir`` that ran on the episodes of ``results``
    (:data:`PROTOCOL_FIELDS`) with the settings their numbers depend on; says which it drops
    and why. An unreadable evaluation gives none, and says so."""
    if names is not None and not names:
        return EarlierAgents.none()
    try:
        earlier = json.loads((eval_dir / RESULTS_FILE).read_text())
        if names is None:
            names = [name for name in earlier["agents"] if name not in results["agents"]]
        candidates = [name for name in names if name in earlier["agents"]]
        with np.load(eval_dir / TRAJECTORIES_FILE) as npz:
            arrays = {key: npz[key] for key in npz.files}
        same_episodes = all(earlier[f] == _as_json(results[f]) for f in PROTOCOL_FIELDS)
        kept = [
            name
            for name in candidates
            if same_episodes
            and agent_settings(earlier, name) == _as_json(agent_settings(results, name))
        ]
        rollouts = {
            name: Rollout(
                arrays[f"{name}/states"],
                arrays[f"{name}/actions"],
                arrays[f"{name}/costs"],
                np.full(results["horizon"], np.nan),
                None,
            )
            for name in kept
        }
        gifs = {
            Path(VIDEOS_DIR) / path.name: path.read_bytes()
            for name in kept
            for path in sorted((eval_dir / VIDEOS_DIR).glob(f"{name}_episode_*.gif"))
        }
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        echo(f"the earlier evaluation in {eval_dir} is unreadable ({exc}); nothing is kept from it")
        return EarlierAgents.none()
    dropped = sorted(set(candidates) - set(kept))
    if dropped:
        echo(
            f"dropped the earlier results of {', '.join(dropped)} in {eval_dir}: other start "
            "states or settings than this evaluation's"
        )
    origins = earlier.get("baselines_from", {})
    return EarlierAgents(
        {name: earlier["agents"][name] for name in kept},
        rollouts,
        gifs,
        {name: origins[name] for name in kept if name in origins},
    )


def merge_agents(
    results: dict[str, Any], rollouts: dict[str, Rollout], earlier: EarlierAgents
) -> None:
    """Add the ``earlier`` agents to ``results`` and ``rollouts`` (in place), all in
    :data:`~latentrl.config.AGENTS` order; ``results["eval"]["agents"]`` lists them and
    ``results["baselines_from"]`` the other runs they were evaluated in."""
    if not earlier.entries:
        return
    order = [name for name in AGENTS if name in rollouts or name in earlier.entries]
    results["agents"] = {
        name: results["agents"][name] if name in rollouts else earlier.entries[name]
        for name in order
    }
    results["eval"] = results["eval"] | {"agents": order}
    origins = results.get("baselines_from", {}) | earlier.origins
    if origins:
        results["baselines_from"] = origins
    merged = {
        name: rollouts[name] if name in rollouts else earlier.rollouts[name] for name in order
    }
    rollouts.clear()
    rollouts.update(merged)


def keep_earlier_agents(
    out: Path,
    results: dict[str, Any],
    rollouts: dict[str, Rollout],
    echo: Callable[[str], None],
) -> dict[Path, bytes]:
    """Carry the agents of the evaluation in ``out`` that were not run again into ``results``
    and ``rollouts`` (in place), where they ran on the same episodes with the same settings;
    returns their GIFs (path relative to ``out`` -> bytes) to write back."""
    earlier = reusable_agents(out, results, None, echo)
    if not earlier.entries:
        return {}
    echo(f"kept the earlier results of {', '.join(earlier.entries)} (same episodes and settings)")
    merge_agents(results, rollouts, earlier)
    return earlier.gifs


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def _eval_config(run_dir: Path, overrides: Sequence[str]) -> ExperimentConfig:
    if not (run_dir / CONFIG_FILE).exists():
        raise UserError(f"{run_dir} is not a latentrl run directory (no {CONFIG_FILE})")
    for assignment in overrides:
        if not assignment.strip().startswith(("eval.", "plan.")):
            raise UserError(
                f"evaluation changes only eval.* and plan.* settings, got --set {assignment!r}"
            )
    return apply_overrides(load_config(run_dir / CONFIG_FILE), overrides)


def _horizon(env: gym.Env, task: ControlEnv, override: int | None) -> int:
    horizon = task.horizon if override is None else override
    limit = env.spec.max_episode_steps if env.spec is not None else None
    if limit is not None and horizon > limit:
        raise UserError(
            f"an episode of {horizon} steps is longer than {env.spec.id}'s time limit of "
            f"{limit} steps; choose eval.horizon <= {limit}"
        )
    return horizon


def _make_agents(
    run_dir: Path, config: ExperimentConfig, env: gym.Env, task: ControlEnv, names: Sequence[str]
) -> dict[str, Agent]:
    ev, agents = config.eval, {}
    for name in names:
        if name == "latent":
            device = resolve_device(ev.device)
            agents[name] = LatentMPCAgent.from_run(run_dir, env, device, config.plan, ev.seed)
        elif name == "oracle":
            agents[name] = OracleMPCAgent(task, horizon=ev.oracle_horizon, seed=ev.seed)
        else:
            agents[name] = RandomAgent.for_env(task, seed=ev.seed)
    return agents


def results_header(
    run_dir: Path, config: ExperimentConfig, task: ControlEnv, starts: np.ndarray, horizon: int
) -> dict[str, Any]:
    """The JSON-ready content of results.json but its ``agents``: the protocol and settings."""
    return {
        "run_dir": str(run_dir),
        "env_id": config.data.env_id,
        "episodes": int(starts.shape[0]),
        "horizon": horizon,
        "goal_radius": float(task.goal_radius),
        "final_steps": final_steps(horizon),
        "state_names": list(task.state_names),
        "start_states": starts.tolist(),
        "eval": to_dict(config.eval),
        "plan": to_dict(config.plan),
        "gif_panels": ["observation", "decoded latent"]
        + [f"plan step {s}" for s in plan_steps(config.plan.horizon)],
    }


def agent_results(
    task: ControlEnv, starts: np.ndarray, rollouts: dict[str, Rollout]
) -> dict[str, Any]:
    """The ``agents`` of results.json: per agent, aggregate and per-episode metrics."""
    agents = {}
    for name, r in rollouts.items():
        per_episode = rollout_metrics(task, r)
        aggregate = {key: _mean_se(values) for key, values in per_episode.items()}
        aggregate["ms_per_step"] = _mean_se(1_000 * r.act_seconds)
        episodes = [
            {"start_state": starts[i].tolist(), **{k: float(v[i]) for k, v in per_episode.items()}}
            for i in range(starts.shape[0])
        ]
        agents[name] = {"aggregate": aggregate, "episodes": episodes}
    return agents


def _mean_se(values: np.ndarray) -> dict[str, float | None]:
    mean, se = mean_and_se(values)
    return {"mean": mean, "se": se if math.isfinite(se) else None}


def summary_metrics(results: dict[str, Any]) -> dict[str, float]:
    """``eval/<agent>/<metric>`` (mean) and ``.../<metric>_se`` for the run summary."""
    out = {}
    for agent, block in results["agents"].items():
        for metric, stats in block["aggregate"].items():
            out[f"eval/{agent}/{metric}"] = stats["mean"]
            if stats["se"] is not None:
                out[f"eval/{agent}/{metric}_se"] = stats["se"]
    return out


def format_table(results: dict[str, Any]) -> str:
    """A readable table: one row per agent, mean ± standard error of each metric."""
    columns = [
        ("steps in goal", "steps_in_goal", "{:.3f}"),
        ("in goal r/2", "steps_in_goal_half_radius", "{:.3f}"),
        ("success", "success", "{:.2f}"),
        ("cost", "cost", "{:.1f}"),
        ("ms/step", "ms_per_step", "{:.1f}"),
    ]
    header = ["agent", *(title for title, _, _ in columns)]
    rows = [header]
    for agent, block in results["agents"].items():
        row = [agent]
        for _, key, fmt in columns:
            stats = block["aggregate"][key]
            se = "" if stats["se"] is None else " ± " + fmt.format(stats["se"])
            row.append(fmt.format(stats["mean"]) + se)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    title = (
        f"{results['env_id']}: {results['episodes']} episodes of {results['horizon']} steps, "
        f"goal radius {results['goal_radius']:.4g}, success = in goal for the last "
        f"{results['final_steps']} steps"
    )
    return "\n".join([title, *lines])


# --- artifacts --------------------------------------------------------------------------------


def _write_artifacts(
    out: Path,
    config: ExperimentConfig,
    results: dict[str, Any],
    rollouts: dict[str, Rollout],
    task: ControlEnv,
    fps: int,
    wandb_mode: str | None,
    run_name: str,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    arrays = {
        f"{name}/{field}": getattr(r, field)
        for name, r in rollouts.items()
        for field in ("states", "actions", "costs")
    }
    np.savez_compressed(out / TRAJECTORIES_FILE, **arrays)
    plot = _state_plot(rollouts, task)
    _save_png(out / PLOT_FILE, plot)
    videos = []
    for name, r in rollouts.items():
        for i, frames in enumerate([] if r.frames is None else r.frames):
            videos.append(out / VIDEOS_DIR / f"{name}_episode_{i:02d}.gif")
            write_gif(videos[-1], frames, fps)

    mode = resolve_wandb_mode(wandb_mode, os.environ)
    with Logger(
        out, f"{run_name}__eval", to_dict(config), mode, group=config.name, job_type="evaluate"
    ) as logger:
        for t in range(results["horizon"]):
            logger.log(_step_metrics(rollouts, task, t + 1), step=t + 1)
        logger.log_summary(summary_metrics(results))
        media = {"eval/states": plot} | {f"eval/videos/{path.stem}": path for path in videos}
        logger.log_media(media, step=results["horizon"])


def _state_plot(rollouts: dict[str, Rollout], task: ControlEnv) -> np.ndarray:
    """The goal distance and every state coordinate over time, a column per agent."""
    states = {name: r.states for name, r in rollouts.items()}
    distances = {name: goal_distances(task, r.states) for name, r in rollouts.items()}
    return state_plot(states, distances, task.state_names, task.angle_dims, task.goal_radius)


def _step_metrics(rollouts: dict[str, Rollout], task: ControlEnv, t: int) -> dict[str, float]:
    """Means over episodes at step ``t``: goal distance and share of episodes in the goal."""
    out = {}
    for name, r in rollouts.items():
        distance = task.goal_distance(r.states[:, t])
        out[f"eval/{name}/goal_distance"] = float(distance.mean())
        out[f"eval/{name}/in_goal"] = float((distance <= task.goal_radius).mean())
    return out


def write_gif(path: Path, frames: np.ndarray, fps: int) -> None:
    """Frames uint8 ``(T, H, W)`` as a looping GIF at ``fps`` frames per second."""
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, frames, extension=".gif", duration=1_000 / fps, loop=0)


def _save_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(image).save(path)
