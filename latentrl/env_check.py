"""``latentrl check-env``: Gymnasium's ``check_env`` plus the latentrl contract, check by check.

Every check returns a :class:`CheckResult`; none stops the others, so a plug-in author sees
every problem at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

from latentrl.envs import ControlEnv, InvalidStateError, in_goal, make_env, require_control_env

SAMPLES = 8
STATE_TOLERANCE = 1e-6
CHAIN_STEPS = 16
"""Steps of the random chains checked to stay valid: the chain length the presets collect."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str = ""

    def line(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        return f"{mark}  {self.name}" + (f": {self.detail}" if self.detail else "")


def check_environment(env_id: str, **env_kwargs: Any) -> list[CheckResult]:
    """Run every check on a fresh instance of ``env_id``; never raises for a failing check."""
    env = make_env(env_id, **env_kwargs)
    try:
        inner = require_control_env(env)
        rng = np.random.default_rng(0)
        checks: list[tuple[str, Callable[[], str]]] = [
            ("gymnasium check_env", lambda: _gymnasium_check(env)),
            ("observation space is uint8 (k, H, W)", lambda: _obs_space(env)),
            ("sample_states gives valid states", lambda: _sampling(inner, rng)),
            ("observe is a pure function of the state", lambda: _observe(env, inner, rng)),
            ("reset(options={'state': s}) starts at s", lambda: _reset_to(env, inner, rng)),
            ("step follows next_states and observe", lambda: _step(env, inner, rng)),
            ("random chains stay valid", lambda: _chains(env, inner, rng)),
            ("invalid states are refused", lambda: _invalid(env, inner)),
            ("task: start, goal, cost, horizon", lambda: _task(env, inner, rng)),
        ]
        return [_run(name, check) for name, check in checks]
    finally:
        env.close()


def _run(name: str, check: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(name, True, check())
    except Exception as exc:  # a check reports any failure of the env, whatever its type
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}")


def _gymnasium_check(env: gym.Env) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=False)
    notes = sorted({str(w.message).split("\n")[0] for w in caught})
    return f"{len(notes)} warning(s): " + " | ".join(notes) if notes else ""


def _obs_space(env: gym.Env) -> str:
    space = env.observation_space
    if not isinstance(space, gym.spaces.Box) or space.dtype != np.uint8 or len(space.shape) != 3:
        raise AssertionError(f"got {space}")
    return f"{space.shape}"


def _sampling(inner: ControlEnv, rng: np.random.Generator) -> str:
    states = inner.sample_states(SAMPLES, rng)
    dim = inner.state_space.shape[0]
    if states.shape != (SAMPLES, dim):
        raise AssertionError(f"shape {states.shape}, expected {(SAMPLES, dim)}")
    if not np.all(inner.is_valid(states)):
        raise AssertionError("sampled states fail is_valid")
    return ""


def _observe(env: gym.Env, inner: ControlEnv, rng: np.random.Generator) -> str:
    states = inner.sample_states(SAMPLES, rng)
    first, second = inner.observe(states), inner.observe(states)
    expected = (SAMPLES, *env.observation_space.shape)
    if first.shape != expected or first.dtype != np.uint8:
        raise AssertionError(f"{first.dtype} {first.shape}, expected uint8 {expected}")
    if not np.array_equal(first, second):
        raise AssertionError("two calls on the same states gave different images")
    if np.array_equal(first[0], first[1]) and not np.allclose(states[0], states[1]):
        raise AssertionError("different states gave the same image")
    return ""


def _reset_to(env: gym.Env, inner: ControlEnv, rng: np.random.Generator) -> str:
    state = inner.sample_states(1, rng)[0]
    obs, info = env.reset(options={"state": state})
    np.testing.assert_allclose(info["state"], state, atol=STATE_TOLERANCE)
    if not np.array_equal(obs, inner.observe(state[None])[0]):
        raise AssertionError("observation after reset differs from observe(state)")
    return ""


def _step(env: gym.Env, inner: ControlEnv, rng: np.random.Generator) -> str:
    state = inner.sample_states(1, rng)[0]
    env.reset(options={"state": state})
    action = env.action_space.sample()
    obs, _, _, _, info = env.step(action)
    expected = inner.next_states(state[None], np.asarray(action, dtype=np.float32)[None])[0]
    np.testing.assert_allclose(info["state"], expected, atol=STATE_TOLERANCE)
    if not np.array_equal(obs, inner.observe(np.asarray(info["state"])[None])[0]):
        raise AssertionError("observation after step differs from observe(info['state'])")
    return ""


def _chains(env: gym.Env, inner: ControlEnv, rng: np.random.Generator) -> str:
    """Chains of random controls from sampled states, as ``collect --chain-length`` makes
    them: every state ``next_states`` returns must be finite and valid (inside the state box)."""
    states = inner.sample_states(SAMPLES, rng)
    low, high = env.action_space.low, env.action_space.high
    for step in range(1, CHAIN_STEPS + 1):
        actions = rng.uniform(low, high, size=(SAMPLES, *low.shape)).astype(np.float32)
        states = inner.next_states(states, actions)
        bad = ~(np.all(np.isfinite(states), axis=1) & inner.is_valid(states))
        if bad.any():
            raise AssertionError(
                f"after {step} random step(s) next_states left the valid set at "
                f"{states[bad][0].tolist()}; clip next_states into state_space (and out of "
                "any obstacle) so that collected chains stay valid"
            )
    return f"{SAMPLES} chains of {CHAIN_STEPS} steps"


def _invalid(env: gym.Env, inner: ControlEnv) -> str:
    outside = inner.state_space.high + 1.0
    try:
        env.reset(options={"state": outside})
    except InvalidStateError:
        return ""
    raise AssertionError(f"reset to {outside.tolist()} did not raise InvalidStateError")


def _task(env: gym.Env, inner: ControlEnv, rng: np.random.Generator) -> str:
    goal = inner.goal_state()
    if not inner.is_valid(goal[None])[0]:
        raise AssertionError(f"goal state {goal.tolist()} is not valid")
    if not in_goal(inner, goal[None])[0]:
        raise AssertionError("the goal state is not in its own goal region")
    starts = inner.sample_start_states(SAMPLES, rng)
    if not np.all(inner.is_valid(starts)):
        raise AssertionError("start states fail is_valid")
    actions = np.zeros((SAMPLES, env.action_space.shape[0]), dtype=np.float32)
    cost = inner.cost(starts, actions)
    if cost.shape != (SAMPLES,) or not np.all(np.isfinite(cost)):
        raise AssertionError(f"cost has shape {cost.shape} or is not finite")
    if inner.horizon <= 0:
        raise AssertionError(f"horizon {inner.horizon}")
    return f"horizon {inner.horizon}, goal radius {inner.goal_radius:.3g}"
