"""Collect image-transition datasets (x_t, u_t, x_{t+1}, s_t, s_{t+1}) from an environment.

Two modes:

* ``uniform`` (E2C): states drawn uniformly from the env's valid set, controls uniformly from
  the action box, the next state from the env's true dynamics, and both observations rendered
  from the states (``observe``). With ``chain_length`` L > 1 each drawn state starts a chain
  of L transitions under uniform random controls, stored as consecutive rows: what a
  multi-step loss trains on. With ``near_goal_share`` f > 0, a share f of each chunk's chains
  start near the goal instead (:func:`latentrl.envs.contract.sample_near_goal_states`), where a
  uniform draw rarely goes: within ``near_goal_widths`` of the state box's half-width in each
  coordinate (default 0.2 in every one). Bytes do not depend on the number of workers: states and
  controls are drawn in this process, workers only render and simulate.
* ``rollout``: random-policy episodes on a Gymnasium vector env of ``workers`` copies.
  Gymnasium 1.x resets a finished sub-env on the *next* ``step``; that step's transition
  would cross an episode boundary and is dropped.

Worker processes (``spawn``) die with this process, ``kill -9`` included
(:mod:`latentrl.worker_lifetime`).

Chunk ``i`` is a pure function of ``(spec, i)`` (its generator is seeded with ``[seed, i]``
and rollout episodes restart at every chunk), which is what makes ``--resume`` give the same
bytes as an uninterrupted run.
"""

from __future__ import annotations

import functools
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from tqdm import tqdm

from latentrl.config import DataConfig
from latentrl.data import (
    CollectionSpec,
    DatasetWriter,
    check_chain_length,
    check_near_goal_share,
)
from latentrl.envs import ControlEnv, make_env, require_control_env
from latentrl.envs.contract import (
    NEAR_GOAL_FRACTION,
    near_goal_fractions,
    sample_near_goal_states,
)
from latentrl.errors import UserError
from latentrl.field_rules import check_value
from latentrl.locks import one_writer
from latentrl.worker_lifetime import ChildOf

MODES = ("uniform", "rollout")
Arrays = dict[str, np.ndarray]


@one_writer("out_dir")
def collect(
    env_id: str,
    transitions: int,
    out_dir: Path | str,
    *,
    mode: str = "uniform",
    seed: int = 0,
    workers: int = 1,
    chunk_size: int = 10_000,
    chain_length: int = 1,
    near_goal_share: float = 0.0,
    near_goal_widths: Sequence[float] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Collect ``transitions`` transitions into ``out_dir``; returns the dataset directory.

    An interrupted call leaves a dataset marked partial; calling again with ``resume=True``
    finishes it. Another command writing into ``out_dir`` meanwhile is refused
    (:mod:`latentrl.locks`).
    """
    arguments = {"transitions": transitions, "mode": mode, "seed": seed, "workers": workers}
    arguments |= {"chain_length": chain_length, "near_goal_share": near_goal_share}
    for name, value in arguments.items():
        check_value(DataConfig, name, value)
    check_value(DataConfig, "transitions", chunk_size, "chunk_size")
    check_chain_length(chain_length, mode)
    if near_goal_widths is not None:
        check_value(DataConfig, "near_goal_widths", near_goal_widths)
        near_goal_widths = tuple(near_goal_widths)
    check_near_goal_share(near_goal_share, mode, near_goal_widths)
    if overwrite and resume:
        raise UserError("--overwrite and --resume exclude each other")
    env_kwargs = dict(env_kwargs or {})
    env = make_env(env_id, **env_kwargs)
    try:
        inner = require_control_env(env)
        if near_goal_widths is not None:
            near_goal_fractions(inner, near_goal_widths)
        spec = CollectionSpec(
            env_id=env_id,
            mode=mode,
            seed=seed,
            transitions=transitions,
            chunk_size=chunk_size,
            env_kwargs=env_kwargs,
            num_envs=workers if mode == "rollout" else 1,
            chain_length=chain_length,
            near_goal_share=near_goal_share,
            near_goal_widths=near_goal_widths,
        )
        writer = DatasetWriter(
            Path(out_dir),
            spec,
            _shapes(env),
            tuple(inner.state_names),
            tuple(inner.angle_dims),
            overwrite=overwrite,
            resume=resume,
        )
        bar = tqdm(
            total=transitions,
            initial=writer.transitions_done,
            desc=f"collect {env_id} ({mode})",
            unit="tr",
            disable=not progress,
            dynamic_ncols=True,
        )
        with bar, _chunk_source(env, inner, spec, workers) as start_chunk:
            indices = range(writer.chunks_done, spec.num_chunks())
            pending = start_chunk(indices[0]) if indices else None
            for index in indices:
                arrays = pending()
                # Workers render the next chunk while this process compresses and writes.
                pending = start_chunk(index + 1) if index + 1 < spec.num_chunks() else None
                writer.write_chunk(arrays)
                bar.update(spec.chunk_count(index))
        return writer.finish()
    finally:
        env.close()


def _shapes(env: gym.Env) -> dict[str, tuple[int, ...]]:
    obs_space, action_space = env.observation_space, env.action_space
    state_space = require_control_env(env).state_space
    if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
        raise UserError(f"latentrl needs a 1-D Box action space, got {action_space}")
    if obs_space.dtype != np.uint8 or len(obs_space.shape) != 3:
        raise UserError(f"latentrl needs uint8 (k, H, W) observations, got {obs_space}")
    return {"obs": obs_space.shape, "action": action_space.shape, "state": state_space.shape}


Pending = Callable[[], Arrays]
"""A chunk being made: calling it waits for and returns its arrays."""


@contextmanager
def _chunk_source(
    env: gym.Env, inner: ControlEnv, spec: CollectionSpec, workers: int
) -> Iterator[Callable[[int], Pending]]:
    """A function that starts making chunk ``index``, with whatever workers it needs."""
    low, high = env.action_space.low, env.action_space.high
    if spec.mode == "uniform" and workers == 1:
        yield (
            lambda index: (
                lambda: _first_rows(
                    chain_arrays(inner, *uniform_inputs(inner, spec, index, low, high)),
                    spec.chunk_count(index),
                )
            )
        )
    elif spec.mode == "uniform":
        context = multiprocessing.get_context("spawn")  # MuJoCo renderers hang after fork
        init = ChildOf(_init_worker, spec.env_id, dict(spec.env_kwargs))
        with ProcessPoolExecutor(workers, mp_context=context, initializer=init) as pool:
            yield lambda index: _submit_chains(
                pool,
                workers,
                *uniform_inputs(inner, spec, index, low, high),
                spec.chunk_count(index),
            )
    else:
        vector_env = _make_vector_env(spec, workers)
        try:
            yield lambda index: lambda: rollout_chunk(vector_env, spec, index, low, high)
        finally:
            vector_env.close()


def uniform_inputs(
    env: ControlEnv, spec: CollectionSpec, index: int, low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Chain start states ``(c, d)`` and controls ``(c, L, m)`` of chunk ``index``, drawn from
    ``[seed, index]``; c = ceil(count / L), and the last chain is cut to fill the chunk. The
    first ``round(c * near_goal_share)`` chains start near the goal, the others anywhere."""
    rng = np.random.default_rng([spec.seed, index])
    length = spec.chain_length
    chains = -(-spec.chunk_count(index) // length)
    near = round(chains * spec.near_goal_share)
    states = env.sample_states(chains - near, rng)
    if near:
        fraction = NEAR_GOAL_FRACTION if spec.near_goal_widths is None else spec.near_goal_widths
        states = np.concatenate([sample_near_goal_states(env, near, rng, fraction), states])
    actions = rng.uniform(low, high, size=(chains * length, low.shape[0])).astype(np.float32)
    return states, actions.reshape(chains, length, -1)


def chain_arrays(env: ControlEnv, starts: np.ndarray, actions: np.ndarray) -> Arrays:
    """Rows of chains from start states ``(c, d)`` under controls ``(c, L, m)``, chain-major:
    row ``i * L + j`` is step j of chain i, so each row continues the one before it."""
    states = [starts]
    for step in range(actions.shape[1]):
        states.append(env.next_states(states[-1], actions[:, step]))
    frames = [env.observe(s) for s in states]

    def rows(items: list[np.ndarray]) -> np.ndarray:
        stacked = np.stack(items, axis=1)  # (c, L, ...)
        return stacked.reshape(-1, *stacked.shape[2:])

    return {
        "obs": rows(frames[:-1]),
        "action": actions.reshape(-1, actions.shape[-1]),
        "next_obs": rows(frames[1:]),
        "state": rows(states[:-1]),
        "next_state": rows(states[1:]),
    }


def _first_rows(arrays: Arrays, count: int) -> Arrays:
    return {name: array[:count] for name, array in arrays.items()}


_worker_env: gym.Env | None = None


def _init_worker(env_id: str, env_kwargs: dict[str, Any]) -> None:
    global _worker_env
    _worker_env = make_env(env_id, **env_kwargs)


def _worker_chains(starts: np.ndarray, actions: np.ndarray) -> Arrays:
    assert _worker_env is not None, "worker used before its initializer ran"
    return chain_arrays(require_control_env(_worker_env), starts, actions)


def _submit_chains(
    pool: Executor, workers: int, starts: np.ndarray, actions: np.ndarray, count: int
) -> Pending:
    """Start ``chain_arrays`` with the chains split across worker processes; the gathered
    rows are the first ``count`` of all chains in order."""
    parts = np.array_split(np.arange(len(starts)), workers)
    futures = [pool.submit(_worker_chains, starts[p], actions[p]) for p in parts]

    def gather() -> Arrays:
        results = [future.result() for future in futures]
        return _first_rows(
            {name: np.concatenate([r[name] for r in results]) for name in results[0]}, count
        )

    return gather


def _make_vector_env(spec: CollectionSpec, workers: int) -> gym.vector.VectorEnv:
    if workers == 1:
        make_one = functools.partial(make_env, spec.env_id, **spec.env_kwargs)
        return gym.vector.SyncVectorEnv([make_one], autoreset_mode=AutoresetMode.NEXT_STEP)
    make_in_worker = ChildOf(make_env, spec.env_id, **spec.env_kwargs)
    return gym.vector.AsyncVectorEnv(
        [make_in_worker] * workers, context="spawn", autoreset_mode=AutoresetMode.NEXT_STEP
    )


def rollout_chunk(
    vector_env: gym.vector.VectorEnv,
    spec: CollectionSpec,
    index: int,
    low: np.ndarray,
    high: np.ndarray,
) -> Arrays:
    """Chunk ``index`` of a rollout collection: new random-policy episodes, seeded by index."""
    rng = np.random.default_rng([spec.seed, index])
    count, num_envs = spec.chunk_count(index), vector_env.num_envs
    obs, info = vector_env.reset(seed=[int(s) for s in rng.integers(2**31, size=num_envs)])
    states = info["state"]
    after_episode_end = np.zeros(num_envs, dtype=bool)
    parts: list[Arrays] = []
    kept = 0
    while kept < count:
        actions = rng.uniform(low, high, size=(num_envs, low.shape[0])).astype(np.float32)
        next_obs, _, terminated, truncated, info = vector_env.step(actions)
        next_states = info["state"]
        # A sub-env whose episode ended on the previous step was reset by this one: its
        # "transition" jumps from the final state to a new start state and is dropped.
        keep = ~after_episode_end
        parts.append(
            {
                "obs": obs[keep],
                "action": actions[keep],
                "next_obs": next_obs[keep],
                "state": states[keep],
                "next_state": next_states[keep],
            }
        )
        kept += int(keep.sum())
        after_episode_end = terminated | truncated
        obs, states = next_obs, next_states
    return {name: np.concatenate([p[name] for p in parts])[:count] for name in parts[0]}
