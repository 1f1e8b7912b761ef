"""The envs of a batch of evaluation episodes, stepped here or in worker processes.

:class:`EpisodeEnvs` holds one copy of the env per episode, split into contiguous shards. With
one worker the shard lives in this process; with ``workers`` > 1 each shard lives in its own
``spawn`` process (MuJoCo renderers hang after ``fork``) that dies with this one, and a step
sends every shard its actions before it waits for any, so the shards render side by side.
Every copy is reset into its start state and stepped exactly as a lone env would be, so the
episodes are the same bytes for any number of workers.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from latentrl.envs import make_env
from latentrl.errors import UserError
from latentrl.worker_lifetime import die_with_parent


@dataclass(frozen=True)
class EnvStep:
    """What a batch of envs returns after a reset or a step."""

    observations: np.ndarray
    """``(n, *obs_shape)``, the observation space's dtype."""
    states: np.ndarray
    """True states ``(n, d)``, float64 (``info["state"]``)."""
    terminated: np.ndarray
    """``(n,)`` bool; all False after a reset."""


def stack_steps(steps: Sequence[EnvStep]) -> EnvStep:
    """One :class:`EnvStep` of shards' steps, in order."""
    return EnvStep(
        np.concatenate([s.observations for s in steps]),
        np.concatenate([s.states for s in steps]),
        np.concatenate([s.terminated for s in steps]),
    )


class EnvShard:
    """``count`` copies of ``env_id`` made with ``env_kwargs``, stepped one after another."""

    def __init__(self, env_id: str, env_kwargs: Mapping[str, Any], count: int) -> None:
        self.envs = []
        try:
            for _ in range(count):
                self.envs.append(make_env(env_id, **env_kwargs))
        except BaseException:
            self.close()
            raise

    def reset_to(self, starts: np.ndarray) -> EnvStep:
        """Reset copy ``i`` into the state ``starts[i]`` (``options={"state": ...}``)."""
        results = [
            env.reset(options={"state": s}) for env, s in zip(self.envs, starts, strict=True)
        ]
        return EnvStep(
            np.stack([obs for obs, _ in results]),
            np.array([info["state"] for _, info in results], dtype=np.float64),
            np.zeros(len(self.envs), dtype=bool),
        )

    def step(self, actions: np.ndarray) -> EnvStep:
        """Step copy ``i`` with ``actions[i]``."""
        results = [env.step(u) for env, u in zip(self.envs, actions, strict=True)]
        return EnvStep(
            np.stack([r[0] for r in results]),
            np.array([r[4]["state"] for r in results], dtype=np.float64),
            np.array([bool(r[2]) for r in results]),
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []


def _serve(
    conn: Connection, parent_pid: int, env_id: str, kwargs: dict[str, Any], count: int
) -> None:
    """A worker: one :class:`EnvShard`, driven by ``(command, argument)`` messages; every reply
    is ``("ok", result)`` or ``("error", message)``."""
    die_with_parent(parent_pid)
    shard = None
    try:
        shard = EnvShard(env_id, kwargs, count)
        conn.send(("ok", None))
        while True:
            command, argument = conn.recv()
            if command == "close":
                break
            try:
                conn.send(("ok", getattr(shard, command)(argument)))
            except Exception as exc:  # the env's own error, reported in the parent
                conn.send(("error", _describe(exc)))
    except EOFError:  # the parent went away
        pass
    except Exception as exc:
        conn.send(("error", _describe(exc)))
    finally:
        if shard is not None:
            shard.close()
        conn.close()


def _describe(exc: Exception) -> str:
    if isinstance(exc, UserError):
        return str(exc)
    last = traceback.extract_tb(exc.__traceback__)[-1:]
    where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


class EpisodeEnvs:
    """``batch`` copies of ``env_id`` for ``batch`` episodes, in ``workers`` shards (at most one
    per episode): in this process when ``workers`` is 1, else one ``spawn`` process each.
    A context manager; :meth:`close` ends the workers."""

    def __init__(
        self, env_id: str, env_kwargs: Mapping[str, Any] | None, batch: int, workers: int = 1
    ) -> None:
        if batch < 1 or workers < 1:
            raise ValueError(f"batch and workers must be >= 1, got {batch} and {workers}")
        kwargs = dict(env_kwargs or {})
        sizes = [len(s) for s in np.array_split(np.arange(batch), min(workers, batch))]
        self.env_id = env_id
        self.bounds = np.cumsum([0, *sizes])
        self.local: EnvShard | None = None
        self.workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        if len(sizes) == 1:
            self.local = EnvShard(env_id, kwargs, batch)
            return
        context = multiprocessing.get_context("spawn")
        try:
            for size in sizes:
                parent, child = context.Pipe()
                process = context.Process(
                    target=_serve, args=(child, os.getpid(), env_id, kwargs, size), daemon=True
                )
                process.start()
                child.close()
                self.workers.append((process, parent))
            for _, conn in self.workers:
                self._reply(conn)
        except BaseException:
            self.close()
            raise

    def reset_to(self, starts: np.ndarray) -> EnvStep:
        """Reset episode ``i``'s env into ``starts[i]``: observations and reported states."""
        return self._call("reset_to", starts)

    def step(self, actions: np.ndarray) -> EnvStep:
        """Step episode ``i``'s env with ``actions[i]``."""
        return self._call("step", actions)

    def _call(self, command: str, rows: np.ndarray) -> EnvStep:
        if self.local is not None:
            return getattr(self.local, command)(rows)
        for i, (_, conn) in enumerate(self.workers):  # every shard starts before any is awaited
            try:
                conn.send((command, rows[self.bounds[i] : self.bounds[i + 1]]))
            except (BrokenPipeError, ConnectionResetError):
                raise self._died() from None
        return stack_steps([self._reply(conn) for _, conn in self.workers])

    def _reply(self, conn: Connection) -> Any:
        try:
            status, value = conn.recv()
        except (EOFError, ConnectionResetError):
            raise self._died() from None
        if status == "error":
            raise UserError(f"{self.env_id} failed in an env worker: {value}")
        return value

    def _died(self) -> UserError:
        return UserError(
            f"an env worker of {self.env_id} died (out of memory, or killed); evaluate again, "
            "with fewer eval.env_workers if it was memory"
        )

    def close(self) -> None:
        if self.local is not None:
            self.local.close()
            self.local = None
        for process, conn in self.workers:
            with contextlib.suppress(BrokenPipeError, OSError):  # a worker that died already
                conn.send(("close", None))
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()
        self.workers = []

    def __enter__(self) -> EpisodeEnvs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
