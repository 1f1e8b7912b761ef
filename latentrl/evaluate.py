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

Artifacts in ``RUN_DIR/eval/`` (paths: :class:`latentrl.run_directory.EvalDirectory`):
``results.json`` (settings, start states, per-episode and aggregate metrics per agent;
:class:`latentrl.results.EvalResults`), ``trajectories.npz`` (states, actions, costs per agent),
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
``results.json`` is written last: an ``eval/`` without it is what a killed evaluation left, and
evaluating again replaces it without ``--overwrite``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from latentrl.agents.agent import Agent
from latentrl.agents.latent import plan_steps
from latentrl.agents.registry import AgentContext, agent_entry
from latentrl.code_version import code_version
from latentrl.config import ExperimentConfig, apply_overrides, load_config, to_dict
from latentrl.devices import resolve_device
from latentrl.earlier_agents import (
    EarlierAgents,
    keep_earlier_agents,
    merge_agents,
    reusable_agents,
)
from latentrl.envs import ControlEnv, make_env, require_control_env
from latentrl.episodes import (
    Rollout,
    final_steps,
    goal_distances,
    mean_and_se,
    rollout_metrics,
    run_episodes,
)
from latentrl.errors import UserError
from latentrl.kinds import model_kind
from latentrl.locks import hold
from latentrl.logging import Logger, resolve_wandb_mode, run_group
from latentrl.plots import state_plot
from latentrl.results import AgentResults, EpisodeResult, EvalHeader, EvalResults, MeanSE
from latentrl.run_directory import (
    CHECKPOINT_DIR,
    EVAL_DIR,
    RESULTS_FILE,
    EvalDirectory,
    RunDirectory,
    check_writable,
)


@dataclass(frozen=True)
class EvalResult:
    eval_dir: Path
    results: EvalResults
    """The content of results.json."""
    table: str


def runs_baselines(agents: Sequence[str]) -> bool:
    """Whether ``agents`` (eval.agents) name an agent that does not use the model (the oracle,
    random): one that ``baselines_from`` could take from another run."""
    return any(not agent_entry(name).uses_model for name in agents)


def evaluate_run(
    run_dir: Path | str,
    overrides: Sequence[str] = (),
    *,
    out: Path | str | None = None,
    wandb_mode: str | None = None,
    overwrite: bool = False,
    baselines_from: Path | str | None = None,
    echo: Callable[[str], None] = print,
) -> EvalResult:
    """Evaluate the run in ``run_dir`` with its ``eval`` and ``plan`` config sections,
    changed by ``overrides`` (``eval.*``/``plan.*`` assignments); writes ``run_dir/eval/``,
    or the folder ``out``, which leaves the run as it is (another planner or task on the same
    model; its ``results.json`` names the run, so ``latentrl compare`` reads it like a run).

    ``baselines_from``: another evaluated run whose agents that do not depend on the model
    (the oracle and random agents, :mod:`latentrl.agents.registry`) are taken instead of run
    again, where they ran on the same episodes with the same settings; ``results.json`` names
    it under ``baselines_from``."""
    run = RunDirectory(Path(run_dir))
    if out is None:
        target, named_run, log_name = run.eval, run.path, f"{run.name}__eval"
    else:
        target = EvalDirectory(require_evaluation_folder(run, Path(out)))
        named_run, log_name = run.path.resolve(), f"{run.name}__{target.path.name}"
    with hold(target.path):
        config = _eval_config(run, overrides)
        return _evaluate_into(
            target, run, config, named_run, log_name, wandb_mode, overwrite, baselines_from, echo
        )


def require_evaluation_folder(run: RunDirectory, out: Path) -> Path:
    """``out`` as the folder of an evaluation of ``run`` outside its ``eval/``; UserError
    when it cannot be one: the run directory itself, its checkpoint, a file, or a folder
    that cannot be written."""
    check_writable(out, "--out")
    resolved, run_path = out.resolve(), run.path.resolve()
    if resolved == run_path or resolved.is_relative_to(run_path / CHECKPOINT_DIR):
        raise UserError(
            f"--out {out} is the run directory or its checkpoint: name a folder of its own, "
            f"e.g. {run.path / 'eval_other'}"
        )
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory")
    return out


def _evaluate_into(
    out: EvalDirectory,
    run: RunDirectory,
    config: ExperimentConfig,
    named_run: Path,
    log_name: str,
    wandb_mode: str | None,
    overwrite: bool,
    baselines_from: Path | str | None,
    echo: Callable[[str], None],
) -> EvalResult:
    """The body of :func:`evaluate_run`, holding ``out``'s lock: ``results.json`` names the
    run as ``named_run``, the W&B run is ``log_name``."""
    if baselines_from is not None and not runs_baselines(config.eval.agents):
        asked = ", ".join(config.eval.agents)
        raise UserError(
            f"--baselines-from takes the agents that do not use the model (the oracle, random) "
            f"from {baselines_from}, but this evaluation runs only {asked}: leave --agents out "
            "(the run's eval.agents), or name them too, e.g. --agents latent oracle random"
        )
    # results.json is written last: an eval/ without it is what a killed evaluation left.
    existing = out.has_results()
    if existing and not overwrite:
        raise UserError(f"{out.path} already holds an evaluation; pass --overwrite to replace it")
    if out.holds_evaluation() and not existing:
        if not out.holds_only_evaluation_files():
            raise UserError(
                f"{out.path} holds files that are not an evaluation's; choose a new or empty folder"
            )
        echo(f"replacing the unfinished evaluation in {out.path} (interrupted)")
        shutil.rmtree(out.path)
    source = None if baselines_from is None else baselines_folder(Path(baselines_from))
    ev = config.eval
    env_kwargs = evaluation_env_kwargs(config)
    env = make_env(config.data.env_id, **env_kwargs)
    threads = torch.get_num_threads()
    # Planning works on tiny tensors: intra-op threads only add synchronisation (the latent
    # agent ran 10x slower with 2 threads than with 1 on a busy 2-core machine).
    torch.set_num_threads(1)
    try:
        task = require_control_env(env)
        horizon = _horizon(env, task, ev.horizon)
        starts = task.sample_start_states(ev.episodes, np.random.default_rng(ev.seed))
        header = results_header(named_run, config, task, starts, horizon)
        baselines = EarlierAgents.none()
        if source is not None:
            asked = [name for name in ev.agents if not agent_entry(name).uses_model]
            found = reusable_agents(source, EvalResults(header, {}), asked, echo)
            origin = str(Path(baselines_from))  # the run (or --out folder) as named
            origins = {name: found.origins.get(name, origin) for name in found.entries}
            baselines = replace(found, origins=origins)
            if baselines.entries:
                names = ", ".join(baselines.entries)
                echo(f"took {names} from {origin} (same episodes and settings)")
        to_run = [name for name in ev.agents if name not in baselines.entries]
        agents = _make_agents(run.path, config, env, task, to_run)
        rollouts: dict[str, Rollout] = {}
        for name, agent in agents.items():
            echo(f"evaluating {name}: {ev.episodes} episodes of {horizon} steps")
            films = agent_entry(name).films
            frame_fn = agent.video_frames if films else None  # type: ignore[attr-defined]
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
                env_kwargs=env_kwargs,
                env_workers=ev.env_workers,
            )
        results = EvalResults(header, agent_results(task, starts, rollouts))
        results, rollouts = merge_agents(results, rollouts, baselines)
        kept = baselines.gifs
        if existing:
            results, rollouts, earlier_gifs = keep_earlier_agents(out, results, rollouts, echo)
            kept = kept | earlier_gifs
        fps = int(env.metadata.get("render_fps", 20))
        table = format_table(results)
        if existing:  # replaced only now: a failed evaluation keeps the previous one
            shutil.rmtree(out.path)
        for path, gif in kept.items():
            (out.path / path).parent.mkdir(parents=True, exist_ok=True)
            (out.path / path).write_bytes(gif)
        _write_artifacts(out, config, results, rollouts, task, fps, wandb_mode, log_name)
    finally:
        torch.set_num_threads(threads)
        env.close()
    echo(table)
    return EvalResult(out.path, results, table)


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def evaluation_env_kwargs(config: ExperimentConfig) -> dict[str, Any]:
    """The keyword arguments of the evaluation's env: ``data.env_kwargs`` with
    ``eval.env_kwargs`` over them."""
    return {**config.data.env_kwargs, **config.eval.env_kwargs}


def require_evaluation_env_fits(config: ExperimentConfig) -> None:
    """A UserError unless the evaluation's env (``eval.env_kwargs`` over ``data.env_kwargs``)
    is made and observes and acts as the env the model trained on."""
    if not config.eval.env_kwargs:
        return
    env = make_env(config.data.env_id, **evaluation_env_kwargs(config))
    try:
        obs_shape = tuple(int(n) for n in env.observation_space.shape)
        action_dim = int(env.action_space.shape[0])
    finally:
        env.close()
    trained = tuple(config.model.obs_shape), config.model.action_dim
    if (obs_shape, action_dim) != trained:
        raise UserError(
            f"eval.env_kwargs {json.dumps(config.eval.env_kwargs)} give observations {obs_shape} "
            f"and {action_dim} actions, but the model trained on {trained[0]} and {trained[1]}: "
            "change only the task there (start states, goal region, horizon), not what the "
            "model sees or does"
        )


def _eval_config(run: RunDirectory, overrides: Sequence[str]) -> ExperimentConfig:
    run.require_run()
    for assignment in overrides:
        if not assignment.strip().startswith(("eval.", "plan.")):
            raise UserError(
                f"evaluation changes only eval.* and plan.* settings, got --set {assignment!r}"
            )
    config = apply_overrides(load_config(run.config), overrides)
    require_evaluation_env_fits(config)
    if "latent" in config.eval.agents:
        resolve_device(config.eval.device, "eval.device")  # before anything runs or is written
    return config


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
    context = AgentContext(run_dir, config, env, task)
    return {name: agent_entry(name).build(context) for name in names}


def results_header(
    run_dir: Path, config: ExperimentConfig, task: ControlEnv, starts: np.ndarray, horizon: int
) -> EvalHeader:
    """The protocol and settings of an evaluation: results.json but its ``agents``."""
    return EvalHeader(
        run_dir=str(run_dir),
        env_id=config.data.env_id,
        env_kwargs=_as_json(evaluation_env_kwargs(config)),
        episodes=int(starts.shape[0]),
        horizon=horizon,
        goal_radius=float(task.goal_radius),
        final_steps=final_steps(horizon),
        state_names=tuple(task.state_names),
        start_states=tuple(tuple(s) for s in starts.tolist()),
        eval=_as_json(to_dict(config.eval)),
        plan=_as_json(to_dict(config.plan)),
        gif_panels=gif_panels(config),
        code=dict(code_version()),
    )


def gif_panels(config: ExperimentConfig) -> tuple[str, ...]:
    """Names of the panels of the latent agent's GIF frames, left to right: the observation
    only for a model kind without a decoder."""
    if not model_kind(config.model.kind).model_class.has_decoder:
        return ("observation",)
    return (
        "observation",
        "decoded latent",
        *(f"plan step {s}" for s in plan_steps(config.plan.horizon)),
    )


def agent_results(
    task: ControlEnv, starts: np.ndarray, rollouts: dict[str, Rollout]
) -> dict[str, AgentResults]:
    """Per agent, aggregate and per-episode metrics."""
    agents = {}
    for name, r in rollouts.items():
        per_episode = rollout_metrics(task, r)
        aggregate = {key: _mean_se(values) for key, values in per_episode.items()}
        aggregate["ms_per_step"] = _mean_se(1_000 * r.act_seconds)
        episodes = tuple(
            EpisodeResult(
                tuple(starts[i].tolist()), {k: float(v[i]) for k, v in per_episode.items()}
            )
            for i in range(starts.shape[0])
        )
        agents[name] = AgentResults(aggregate, episodes)
    return agents


def _mean_se(values: np.ndarray) -> MeanSE:
    mean, se = mean_and_se(values)
    return MeanSE(mean, se if math.isfinite(se) else None)


def summary_metrics(results: EvalResults) -> dict[str, float]:
    """``eval/<agent>/<metric>`` (mean) and ``.../<metric>_se`` for the run summary."""
    out = {}
    for agent, block in results.agents.items():
        for metric, stats in block.aggregate.items():
            out[f"eval/{agent}/{metric}"] = stats.mean
            if stats.se is not None:
                out[f"eval/{agent}/{metric}_se"] = stats.se
    return out


def format_table(results: EvalResults) -> str:
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
    for agent, block in results.agents.items():
        row = [agent]
        for _, key, fmt in columns:
            stats = block.aggregate[key]
            se = "" if stats.se is None else " ± " + fmt.format(stats.se)
            row.append(fmt.format(stats.mean) + se)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    h = results.header
    title = (
        f"{h.env_id}: {h.episodes} episodes of {h.horizon} steps, "
        f"goal radius {h.goal_radius:.4g}, success = in goal for the last "
        f"{h.final_steps} steps"
    )
    return "\n".join([title, *lines])


# --- artifacts --------------------------------------------------------------------------------


def _write_artifacts(
    out: EvalDirectory,
    config: ExperimentConfig,
    results: EvalResults,
    rollouts: dict[str, Rollout],
    task: ControlEnv,
    fps: int,
    wandb_mode: str | None,
    log_name: str,
) -> None:
    out.path.mkdir(parents=True, exist_ok=True)
    arrays = {
        f"{name}/{field}": getattr(r, field)
        for name, r in rollouts.items()
        for field in ("states", "actions", "costs")
    }
    np.savez_compressed(out.trajectories, **arrays)
    plot = _state_plot(rollouts, task)
    _save_png(out.states_plot, plot)
    videos = []
    for name, r in rollouts.items():
        for i, frames in enumerate([] if r.frames is None else r.frames):
            videos.append(out.video(name, i))
            write_gif(videos[-1], frames, fps)

    mode = resolve_wandb_mode(wandb_mode, os.environ)
    settings = to_dict(config)
    group = run_group(config.name, config.preset, settings)
    with Logger(out.path, log_name, settings, mode, group=group, job_type="evaluate") as logger:
        horizon = results.header.horizon
        for t in range(horizon):
            logger.log(_step_metrics(rollouts, task, t + 1), step=t + 1)
        logger.log_summary(summary_metrics(results))
        media = {"eval/states": plot} | {f"eval/videos/{path.stem}": path for path in videos}
        logger.log_media(media, step=horizon)
    results.write(out.results)  # last: with it, the evaluation is complete


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


def baselines_folder(path: Path) -> EvalDirectory:
    """The evaluation ``--baselines-from`` names: a run's ``eval/``, or a folder written with
    ``--out`` (its ``results.json`` at its top); UserError when ``path`` holds neither."""
    for folder in (RunDirectory(path).eval, EvalDirectory(path)):
        if folder.has_results():
            return folder
    raise UserError(
        f"{path} holds no evaluation ({EVAL_DIR}/{RESULTS_FILE}, or {RESULTS_FILE} of a folder "
        "written with --out) to take the oracle and random agents from: evaluate it first, or "
        "leave --baselines-from out"
    )
