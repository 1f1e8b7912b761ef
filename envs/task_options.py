"""Task settings an env takes as keyword arguments: start box, goal radius, episode length.

latentrl's envs describe their task themselves (:mod:`latentrl.envs.contract`); these keyword
arguments let an experiment set up another paper's protocol on the same physics, e.g.
``data.env_kwargs = {start_low = [0, 0], start_high = [0, 0], horizon = 100}``. Every one
defaults to None: the env's own task, unchanged.

* ``start_low``, ``start_high``: the start states are drawn uniformly from the box
  ``[start_low, start_high]`` (``(d,)`` each, ``low == high`` in a coordinate fixes it),
  redrawing states that are not valid (planar obstacles); angles wrapped to [-pi, pi);
* ``goal_radius``: a state is in the goal region when ``goal_distance <= goal_radius``;
* ``horizon``: control steps of one evaluation episode (at most the registration's time limit).

:func:`checked_count` checks the observation's counts, ``frames`` and ``frame_gap``, which the
pixel envs take beside these (defaults: their own observation, unchanged).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from latentrl.envs.contract import wrap_angle
from latentrl.errors import UserError

_MAX_DRAWS = 1000
"""Rounds of redrawing invalid start states before giving up on a start box."""


@dataclass(frozen=True)
class StartBox:
    """Start states uniform in ``[low, high]`` (``(d,)`` float64 each)."""

    low: np.ndarray
    high: np.ndarray


def start_box(
    low: Sequence[float] | None, high: Sequence[float] | None, space: spaces.Box
) -> StartBox | None:
    """The start box of the kwargs ``start_low``/``start_high`` (None when neither is given),
    checked against the state box ``space``; UserError when it is not a box inside it."""
    if low is None and high is None:
        return None
    d = space.shape[0]
    if low is None or high is None:
        raise UserError("give both start_low and start_high (the corners of the start box)")
    lo, hi = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    if lo.shape != (d,) or hi.shape != (d,):
        raise UserError(
            f"start_low and start_high must each hold {d} numbers (one per state coordinate), "
            f"got {np.atleast_1d(lo).tolist()} and {np.atleast_1d(hi).tolist()}"
        )
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo <= hi)):
        raise UserError(f"need finite start_low <= start_high, got {lo.tolist()} and {hi.tolist()}")
    if np.any(lo < space.low) or np.any(hi > space.high):
        raise UserError(
            f"the start box [{lo.tolist()}, {hi.tolist()}] leaves the state box "
            f"[{space.low.tolist()}, {space.high.tolist()}]; choose starts inside it"
        )
    return StartBox(lo, hi)


def sample_start_box(
    box: StartBox,
    n: int,
    rng: np.random.Generator,
    angle_dims: Sequence[int],
    is_valid: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """``n`` valid states ``(n, d)`` uniform in ``box``, angles wrapped; invalid draws are
    redrawn. UserError when the box holds (almost) no valid state."""
    states = np.empty((n, box.low.shape[0]))
    filled = 0
    for _ in range(_MAX_DRAWS):
        if filled == n:
            return states
        batch = rng.uniform(box.low, box.high, size=(n - filled, box.low.shape[0]))
        for dim in angle_dims:
            # keep angles inside [-pi, pi] as they are: wrapping would round them
            batch[:, dim] = np.where(
                np.abs(batch[:, dim]) <= np.pi, batch[:, dim], wrap_angle(batch[:, dim])
            )
        valid = batch[is_valid(batch)]
        states[filled : filled + len(valid)] = valid
        filled += len(valid)
    if filled == n:
        return states
    raise UserError(
        f"the start box [{box.low.tolist()}, {box.high.tolist()}] holds almost no valid state "
        "(obstacles?); choose another start_low/start_high"
    )


def checked_goal_radius(radius: float | None, default: float) -> float:
    """``radius`` (or ``default`` when None) as a positive float; UserError otherwise."""
    if radius is None:
        return default
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not radius > 0:
        raise UserError(f"goal_radius must be a positive number, got {radius!r}")
    return float(radius)


def checked_horizon(horizon: int | None, default: int) -> int:
    """``horizon`` (or ``default`` when None) as a positive int; UserError otherwise."""
    if horizon is None:
        return default
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise UserError(f"horizon must be a positive int (control steps), got {horizon!r}")
    return horizon


def checked_positive(name: str, value: float) -> float:
    """``value`` as a positive finite float; UserError naming the kwarg ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < np.inf:
        raise UserError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def checked_count(name: str, value: int, meaning: str) -> int:
    """``value`` as an int >= 1; UserError naming the kwarg ``name`` (``meaning``: what it
    counts) otherwise. For the observation kwargs ``frames`` and ``frame_gap``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UserError(f"{name} must be an int >= 1 ({meaning}), got {value!r}")
    return int(value)
