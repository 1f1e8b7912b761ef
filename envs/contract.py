"""The plug-in contract: what latentrl needs from an environment beyond ``gymnasium.Env``.

An environment is usable by every latentrl command (collect, train, evaluate, check-env) when
its unwrapped instance satisfies :class:`ControlEnv`:

* observations are uint8 images of shape ``(k, H, W)``; with ``k >= 2`` stacked frames where
  velocity must be visible;
* an observation is a pure function of the true state (``observe``), so a dataset can be made
  from sampled states and a goal image from the goal state;
* the true low-dimensional state is in ``info["state"]`` after ``reset`` and ``step``;
* ``reset(options={"state": s})`` starts from a given valid state;
* the task is described by the env itself: start-state distribution, goal state, a distance to
  the goal with a goal radius, a true-state cost and a horizon.

All batched methods take and return NumPy arrays with the batch in the leading dimension.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from gymnasium import logger as gym_logger
from gymnasium import spaces

from latentrl.errors import UserError


class InvalidStateError(UserError, ValueError):
    """A state handed to an environment lies outside its valid set."""


@runtime_checkable
class ControlEnv(Protocol):
    """Methods and attributes every latentrl environment provides (on ``env.unwrapped``)."""

    state_space: spaces.Box
    """Box of valid true states, shape ``(d,)``; ``sample_states`` draws uniformly from it."""
    state_names: tuple[str, ...]
    """A name for each state coordinate, e.g. ``("theta", "theta_dot")``."""
    angle_dims: tuple[int, ...]
    """Indices of the coordinates that are angles in radians (wrapped to [-pi, pi))."""
    horizon: int
    """Control steps in one evaluation episode of the task."""
    goal_radius: float
    """A state is in the goal region when ``goal_distance(state) <= goal_radius``."""

    def is_valid(self, states: np.ndarray) -> np.ndarray:
        """Boolean ``(n,)``: which states ``(n, d)`` are valid (inside ``state_space`` and,
        where the env has them, outside obstacles)."""
        ...

    def sample_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` valid states drawn uniformly, ``(n, d)`` float64 (E2C-style datasets)."""
        ...

    def sample_start_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` start states of the task, ``(n, d)`` float64."""
        ...

    def observe(self, states: np.ndarray) -> np.ndarray:
        """Observations of ``states`` ``(n, d)``: uint8 ``(n, k, H, W)``, a pure function."""
        ...

    def next_states(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """True dynamics: one control step from ``states`` (n, d) under ``actions`` (n, m)."""
        ...

    def goal_state(self) -> np.ndarray:
        """The task's goal state, ``(d,)``."""
        ...

    def goal_distance(self, states: np.ndarray) -> np.ndarray:
        """Distance of each state ``(n, d)`` to the goal, ``(n,)``, in the env's own units."""
        ...

    def cost(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """True-state cost of one step, ``(n,)``; the trajectory cost is its sum."""
        ...


CONTRACT_MEMBERS = (
    "state_space",
    "state_names",
    "angle_dims",
    "horizon",
    "goal_radius",
    "is_valid",
    "sample_states",
    "sample_start_states",
    "observe",
    "next_states",
    "goal_state",
    "goal_distance",
    "cost",
)


def require_control_env(env: Any) -> ControlEnv:
    """Return ``env.unwrapped`` if it implements :class:`ControlEnv`, else raise TypeError."""
    inner = getattr(env, "unwrapped", env)
    if not isinstance(inner, ControlEnv):
        missing = [name for name in CONTRACT_MEMBERS if not hasattr(inner, name)]
        raise TypeError(
            f"{type(inner).__name__} does not implement the latentrl environment contract; "
            f"missing: {', '.join(sorted(missing))}. See docs/new_environment.md."
        )
    return inner


def in_goal(env: ControlEnv, states: np.ndarray, radius: float | None = None) -> np.ndarray:
    """Boolean ``(n,)``: which states lie within ``radius`` (default: the env's) of the goal."""
    limit = env.goal_radius if radius is None else radius
    return env.goal_distance(np.atleast_2d(states)) <= limit


def goal_observation(env: ControlEnv) -> np.ndarray:
    """The goal image, uint8 ``(k, H, W)``."""
    return env.observe(env.goal_state()[None])[0]


def state_costs(env: Any, states: np.ndarray) -> np.ndarray:
    """The task's state cost of ``states`` ``(N, d)`` above the goal's, ``(N,)``: ``env``'s
    ``cost`` at the action box's centre, less that of the goal state."""
    task = require_control_env(env)
    space = env.action_space
    centre = (np.asarray(space.low, np.float64) + np.asarray(space.high, np.float64)) / 2
    both = np.concatenate([np.asarray(states, np.float64), task.goal_state()[None]])
    cost = np.asarray(task.cost(both, np.repeat(centre[None], len(both), 0)), np.float64)
    return cost[:-1] - cost[-1]


NEAR_GOAL_FRACTION = 0.2
"""Near the goal: within this fraction of the state box's half-width of the goal state in
every coordinate."""


def near_goal_fractions(env: ControlEnv, fraction: float | Sequence[float]) -> np.ndarray:
    """The near-goal box's half-width per state coordinate ``(d,)``, as fractions of the state
    box's, from one number or one per coordinate; UserError for a fraction outside (0, 1] or
    a count other than d."""
    dims = env.state_space.shape[0]
    fractions = np.asarray(fraction, np.float64)
    if fractions.ndim > 1 or (fractions.ndim == 1 and len(fractions) != dims):
        raise UserError(
            f"near-goal fractions must be one number or one per state coordinate ({dims}: "
            f"{', '.join(env.state_names)}), got {fractions.tolist()}"
        )
    if not np.all((fractions > 0) & (fractions <= 1)):
        raise UserError(f"the near-goal fraction must lie in (0, 1], got {fractions.tolist()}")
    return np.broadcast_to(fractions, (dims,))


def sample_near_goal_states(
    env: ControlEnv,
    n: int,
    rng: np.random.Generator,
    fraction: float | Sequence[float] = NEAR_GOAL_FRACTION,
) -> np.ndarray:
    """``n`` valid states ``(n, d)`` drawn uniformly from the box of half-width ``fraction`` of
    the state box's around the goal state (angles wrapped), redrawing those that are not valid
    (outside the state box, in an obstacle). ``fraction``: one number for every coordinate, or
    one per coordinate (1: as wide as the state box, centred on the goal). Raises UserError
    for a fraction outside (0, 1], a count of fractions other than d, or when almost no state
    drawn is valid."""
    fractions = near_goal_fractions(env, fraction)
    box = env.state_space
    half = fractions * (box.high - box.low) / 2
    states = np.empty((n, len(half)))
    filled, draws = 0, 0
    while filled < n:
        if draws > 100 * n + 1000:
            raise UserError(
                f"fewer than 1% of the states within {fractions.tolist()} of the state box's "
                "half-width of the goal are valid; use a larger fraction"
            )
        batch = env.goal_state() + rng.uniform(-1.0, 1.0, size=(n - filled, len(half))) * half
        for dim in env.angle_dims:
            batch[:, dim] = wrap_angle(batch[:, dim])
        draws += len(batch)
        valid = batch[env.is_valid(batch)]
        states[filled : filled + len(valid)] = valid
        filled += len(valid)
    return states


def check_states(env: ControlEnv, states: np.ndarray) -> np.ndarray:
    """Return ``states`` as float64 ``(n, d)``, or raise InvalidStateError naming the bad one."""
    space = env.state_space
    arr = np.asarray(states, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != space.shape[0]:
        raise InvalidStateError(
            f"expected states of shape (n, {space.shape[0]}), got {np.shape(states)}"
        )
    valid = np.all(np.isfinite(arr), axis=1)
    valid[valid] = env.is_valid(arr[valid])
    if not np.all(valid):
        bad = arr[int(np.argmin(valid))]
        raise InvalidStateError(
            f"state {bad.tolist()} is outside the valid set of {type(env).__name__} "
            f"(state box low {space.low.tolist()}, high {space.high.tolist()})"
        )
    return arr


def requested_state(env: ControlEnv, options: Mapping[str, Any] | None) -> np.ndarray | None:
    """The start state ``(d,)`` asked for by ``reset(options={"state": s})``, checked.

    None when no state was asked for; InvalidStateError for an invalid one; ValueError for
    options other than ``"state"``.
    """
    options = options or {}
    unknown = set(options) - {"state"}
    if unknown:
        raise ValueError(f"unknown reset options {sorted(unknown)}; only 'state' is accepted")
    if "state" not in options:
        return None
    states = check_states(env, options["state"])
    if states.shape[0] != 1:
        raise InvalidStateError(
            f"reset takes one state of shape {env.state_space.shape}, got {states.shape}"
        )
    return states[0].copy()


def in_box(space: spaces.Box, states: np.ndarray) -> np.ndarray:
    """Boolean ``(n,)``: which states ``(n, d)`` lie inside ``space`` (the usual ``is_valid``)."""
    arr = np.asarray(states)
    return np.all((arr >= space.low) & (arr <= space.high), axis=1)


def upscale_rgb(frame: np.ndarray, factor: int = 4) -> np.ndarray:
    """A grayscale frame ``(H, W)`` as an RGB image ``(factor H, factor W, 3)``, nearest."""
    big = np.repeat(np.repeat(frame, factor, axis=0), factor, axis=1)
    return np.repeat(big[:, :, None], 3, axis=2)


def check_render_mode(render_mode: str | None, metadata: Mapping[str, Any]) -> str | None:
    """``render_mode`` if it is None or one of ``metadata["render_modes"]``; else ValueError."""
    if render_mode is not None and render_mode not in metadata["render_modes"]:
        raise ValueError(
            f"render_mode {render_mode!r} is not supported; use one of "
            f"{metadata['render_modes']} or None"
        )
    return render_mode


def render_frame(render_mode: str | None, frame: np.ndarray | None) -> np.ndarray | None:
    """What an env's ``render()`` returns: its latest frame ``(H, W)`` as a 4x RGB image.

    None (with Gymnasium's warning) when the env was made without a render mode; RuntimeError
    before the first ``reset``.
    """
    if render_mode is None:
        gym_logger.warn(
            "render() called without a render_mode; make the env with render_mode='rgb_array'"
        )
        return None
    if frame is None:
        raise RuntimeError("call reset() before render()")
    return upscale_rgb(frame)


def wrap_angle(theta: np.ndarray) -> np.ndarray:
    """Angles mapped into [-pi, pi)."""
    return (np.asarray(theta) + np.pi) % (2 * np.pi) - np.pi
