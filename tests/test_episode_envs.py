"""The envs of evaluation episodes, in this process or in worker processes: the same bytes as
lone envs, whatever the number of workers; one clear error when an env or a worker fails."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest

from latentrl.agents.random_agent import RandomAgent
from latentrl.envs import make_env
from latentrl.episode_envs import EpisodeEnvs
from latentrl.episodes import run_episodes
from latentrl.errors import UserError

PENDULUM = "latentrl/Pendulum-v0"
MUJOCO_PENDULUM = "latentrl/PendulumSwingup-v0"


def lone_env_steps(
    env_id: str, starts: np.ndarray, actions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Observations and states of one env per start, stepped with ``actions (T, B, m)``:
    ``(B, T + 1, ...)`` each."""
    all_obs, all_states = [], []
    for i, start in enumerate(starts):
        env = make_env(env_id)
        obs, info = env.reset(options={"state": start})
        observations, states = [obs], [info["state"]]
        for u in actions[:, i]:
            obs, _, _, _, info = env.step(u)
            observations.append(obs)
            states.append(info["state"])
        env.close()
        all_obs.append(np.stack(observations))
        all_states.append(np.array(states, dtype=np.float64))
    return np.stack(all_obs), np.stack(all_states)


@pytest.mark.parametrize("workers", [1, 3])
def test_the_episodes_are_those_of_lone_envs_for_any_number_of_workers(workers: int) -> None:
    rng = np.random.default_rng(0)
    starts = np.column_stack([rng.uniform(-np.pi, np.pi, 5), rng.uniform(-8, 8, 5)])
    actions = rng.uniform(-2, 2, size=(6, 5, 1)).astype(np.float32)
    expected_obs, expected_states = lone_env_steps(PENDULUM, starts, actions)
    with EpisodeEnvs(PENDULUM, {}, 5, workers) as envs:
        reset = envs.reset_to(starts)
        observations, states = [reset.observations], [reset.states]
        for u in actions:
            step = envs.step(u)
            assert not step.terminated.any()
            observations.append(step.observations)
            states.append(step.states)
    assert len(envs.bounds) - 1 == workers  # 5 episodes in `workers` shards
    np.testing.assert_array_equal(np.stack(observations, 1), expected_obs)
    np.testing.assert_array_equal(np.stack(states, 1), expected_states)
    assert np.stack(observations, 1).dtype == np.uint8


def test_mujoco_episodes_in_two_workers_are_those_of_one_process() -> None:
    """MuJoCo renders in spawn workers (EGL) exactly as in this process."""
    task = make_env(MUJOCO_PENDULUM).unwrapped
    starts = task.sample_start_states(3, np.random.default_rng(1))
    rollouts = [
        run_episodes(
            MUJOCO_PENDULUM,
            task,
            RandomAgent.for_env(task, seed=0),
            starts,
            horizon=4,
            filmed=3,
            frame_fn=lambda obs: obs[:, -1],
            env_workers=workers,
        )
        for workers in (1, 2)
    ]
    for field in ("states", "actions", "costs", "frames"):
        np.testing.assert_array_equal(getattr(rollouts[0], field), getattr(rollouts[1], field))
    assert rollouts[0].frames is not None and rollouts[0].frames.std() > 0  # real images
    task.close()


def test_more_workers_than_episodes_makes_one_shard_per_episode() -> None:
    with EpisodeEnvs(PENDULUM, {}, 2, workers=8) as envs:
        assert list(envs.bounds) == [0, 1, 2] and len(envs.workers) == 2
    assert envs.workers == []


def test_an_env_error_in_a_worker_is_one_error_naming_the_env_and_its_cause() -> None:
    with EpisodeEnvs(PENDULUM, {}, 2, workers=2) as envs:
        envs.reset_to(np.zeros((2, 2)))
        with pytest.raises(UserError, match=r"latentrl/Pendulum-v0 failed in an env worker: "):
            envs.step(np.full((2, 1), np.nan, dtype=np.float32)[:, :0])  # no action at all
    with pytest.raises(UserError, match=r"failed in an env worker: .*bogus"):
        EpisodeEnvs(PENDULUM, {"bogus": 1}, 2, workers=2)


def test_a_worker_that_dies_is_one_error_that_says_what_to_do() -> None:
    with EpisodeEnvs(PENDULUM, {}, 2, workers=2) as envs:
        envs.reset_to(np.zeros((2, 2)))
        process, _ = envs.workers[1]
        process.kill()
        process.join()
        with pytest.raises(UserError, match="env worker of latentrl/Pendulum-v0 died"):
            envs.step(np.zeros((2, 1), dtype=np.float32))
    assert envs.workers == []


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="batch and workers must be >= 1"):
        EpisodeEnvs(PENDULUM, {}, 0)


def test_the_benchmark_times_each_worker_count_and_checks_the_states(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = Path(__file__).parents[1] / "experiments/benchmarks/bench_env_workers.py"
    argv = ["--env", PENDULUM, "--episodes", "3", "--workers", "1", "2", "--steps", "2"]
    runpy.run_path(str(script), run_name="bench")["main"](argv)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("machine: ")
    assert all(line.endswith("states the same") for line in lines[1:])
    assert "1.00x the first" in lines[1] and lines[2].strip().startswith("2 worker(s)")
