"""E2C's planar system: a point agent among six circular obstacles, seen as a 40x40 image.

Conventions:

* state ``s = (x, y)`` float64 in pixels, continuous: x is the image column (to the right), y the
  image row (downwards); the field is ``[0, 40]^2`` and pixel (row i, column j) covers
  ``[j, j + 1] x [i, i + 1]``;
* the agent is a disc of radius 1.5 px; a state is valid when the disc lies inside the walls and
  overlaps no obstacle (touching is allowed), so the state box is ``[1.5, 38.5]^2``;
* control ``u = (dx, dy)`` in pixels per step, clipped to ``[-2, 2]^2``: the agent moves along the
  segment ``s -> s + u`` and stops at the last collision-free point on it (no sliding);
* observation: uint8 ``(1, 40, 40)``, obstacles mid grey (128), the agent a bright (255)
  anti-aliased disc, background black;
* task: start uniform over valid states, goal ``(36, 36)`` (free, near the bottom-right corner),
  goal radius 2 px, horizon 40; cost ``|s - goal|² + 0.01 |u|²`` (u clipped) at the state the
  action is applied in, reward ``-cost``; episodes never terminate early;
* keyword arguments change the obstacles, the control bound and the task (goal, start box, goal
  radius, horizon), e.g. for the PC3 paper's protocol (experiments/pc3_planar.toml).

The six obstacles (radius 3 px) stand in two rows of three across the middle of the field, in the
spirit of E2C's figure: 4 px passages between neighbours in a row (the agent is 3 px wide), 8 px
between the rows and 6 px or more to the walls.

Speed of ``observe`` (single thread, 2-core AMD EPYC VM, NumPy 2.4): about 105,000 frames/s with
the other core busy; ``next_states`` about 290,000 states/s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from latentrl.envs.contract import (
    check_render_mode,
    check_states,
    in_box,
    render_frame,
    requested_state,
)
from latentrl.envs.task_options import (
    StartBox,
    checked_goal_radius,
    checked_horizon,
    checked_positive,
    sample_start_box,
    start_box,
)
from latentrl.errors import UserError

FIELD_SIZE = 40
AGENT_RADIUS = 1.5
OBSTACLE_RADIUS = 3.0
OBSTACLE_CENTERS = np.array(
    [[9.0, 13.0], [20.0, 13.0], [31.0, 13.0], [9.0, 27.0], [20.0, 27.0], [31.0, 27.0]]
)  # (x, y) pixels
GOAL = np.array([36.0, 36.0])
GOAL_RADIUS = 2.0
MAX_CONTROL = 2.0
OBSTACLE_VALUE = 128
AGENT_VALUE = 255
# The collision scan checks 16 points along a move of at most 2.83 px (0.18 px apart), far less
# than the 9 px wide obstacles, then bisects between the last free and first blocked point.
_SCAN_POINTS = 16
_BISECTIONS = 20
_BLOCK = 1024  # states per rendering block: bounds scratch memory to ~7 MB


@dataclass(frozen=True)
class PlanarLayout:
    """The obstacles: discs at ``centers`` ``(k, 2)`` (x, y px) that block the agent's disc
    within ``radius`` px and are drawn with ``drawn_radius`` px."""

    centers: np.ndarray
    radius: float
    drawn_radius: float


E2C_LAYOUT = PlanarLayout(OBSTACLE_CENTERS, OBSTACLE_RADIUS, OBSTACLE_RADIUS)
"""Planar-v0's own: two rows of three obstacles, drawn as they block."""
PC3_LAYOUT = PlanarLayout(
    np.array([[5.5, 20.5], [13.5, 20.5], [27.5, 20.5], [35.5, 20.5], [20.5, 10.5], [20.5, 30.5]]),
    radius=0.2,
    drawn_radius=2.5,
)
"""The PC3/PCC code's six obstacles (mdp/plane_obstacles_mdp.py, its (row, col) as (x, y)),
drawn with radius 2.5 px. There the agent's 3x3 px square is blocked when it covers an
obstacle's centre; here its disc is blocked within 1.7 px of a centre, a disc of that
square's area (9 px^2)."""
LAYOUTS: dict[str, PlanarLayout] = {"e2c": E2C_LAYOUT, "pc3": PC3_LAYOUT}


def planar_is_free(states: np.ndarray, layout: PlanarLayout = E2C_LAYOUT) -> np.ndarray:
    """Boolean ``(n,)``: agent disc at ``states (n, 2)`` inside the walls, off every obstacle."""
    states = np.asarray(states, dtype=np.float64)
    inside = np.all((states >= AGENT_RADIUS) & (states <= FIELD_SIZE - AGENT_RADIUS), axis=1)
    offsets = states[:, None, :] - layout.centers[None]
    clearance = np.einsum("nki,nki->nk", offsets, offsets) >= (layout.radius + AGENT_RADIUS) ** 2
    return inside & np.all(clearance, axis=1)


def planar_step(
    states: np.ndarray,
    actions: np.ndarray,
    max_control: float = MAX_CONTROL,
    layout: PlanarLayout = E2C_LAYOUT,
) -> np.ndarray:
    """Move free ``states (n, 2)`` by ``actions (n, 2)`` (clipped to ±max_control): ``(n, 2)``.

    An unobstructed move lands exactly on ``s + u``. A blocked one stops at the last free point
    of the segment before the first collision, found by a scan of 16 points and 20 bisections
    (within 3e-7 px of contact); the result is always free.
    """
    s = np.asarray(states, dtype=np.float64)
    u = np.clip(np.asarray(actions, dtype=np.float64), -max_control, max_control)
    n = s.shape[0]
    fractions = np.arange(1, _SCAN_POINTS + 1) / _SCAN_POINTS
    points = s[:, None, :] + fractions[None, :, None] * u[:, None, :]
    blocked = ~planar_is_free(points.reshape(-1, 2), layout).reshape(n, _SCAN_POINTS)
    hit = blocked.any(axis=1)
    result = s + u
    if not hit.any():
        return result
    first = blocked[hit].argmax(axis=1)
    s_hit, u_hit = s[hit], u[hit]
    free = first / _SCAN_POINTS  # fraction of the last free scan point (0 is the start)
    stuck = (first + 1) / _SCAN_POINTS
    for _ in range(_BISECTIONS):
        middle = 0.5 * (free + stuck)
        ok = planar_is_free(s_hit + middle[:, None] * u_hit, layout)
        free = np.where(ok, middle, free)
        stuck = np.where(ok, stuck, middle)
    result[hit] = s_hit + free[:, None] * u_hit
    return result


def planar_min_steps(states: np.ndarray, goal_radius: float = GOAL_RADIUS) -> np.ndarray:
    """Fewest steps from ``states (n, 2)`` into the goal disc if nothing stood in the way: int
    ``(n,)``, 0 for a state already inside.

    After ``k`` steps of at most 2 px per axis the agent can be anywhere in the box ``s ± 2k``
    (less where obstacles block), so ``k`` is the smallest one whose box comes within
    ``goal_radius`` of the goal. A lower bound on the steps of any controller, obstacles only
    add to it; ``(T - k + 1) / T`` (at most 1) bounds its fraction of ``s_1 .. s_T`` in goal.
    """
    gap = np.abs(np.asarray(states, dtype=np.float64).reshape(-1, 2) - GOAL)
    k = np.arange(int(np.ceil(gap.max(initial=0.0) / MAX_CONTROL)) + 1)
    left = np.maximum(gap[:, None, :] - MAX_CONTROL * k[None, :, None], 0.0)  # (n, K, 2)
    reached = np.linalg.norm(left, axis=-1) <= goal_radius
    return reached.argmax(axis=1)


def _disc_coverage(distance: np.ndarray, radius: float) -> np.ndarray:
    """Approximate pixel coverage of a disc at ``distance`` from its centre, in [0, 1]."""
    return np.clip(radius + 0.5 - distance, 0.0, 1.0)


_CENTRES = np.arange(FIELD_SIZE, dtype=np.float32) + 0.5  # pixel centres along x and along y


def obstacle_background(layout: PlanarLayout = E2C_LAYOUT) -> np.ndarray:
    """The static image: obstacles at OBSTACLE_VALUE, anti-aliased, ``(40, 40)`` float32."""
    dx = _CENTRES[None, None, :] - layout.centers[:, 0, None, None]
    dy = _CENTRES[None, :, None] - layout.centers[:, 1, None, None]
    coverage = _disc_coverage(np.sqrt(dx**2 + dy**2), layout.drawn_radius).max(axis=0)
    return np.rint(OBSTACLE_VALUE * coverage).astype(np.float32)


_BACKGROUND = obstacle_background()


def render_planar(states: np.ndarray, background: np.ndarray = _BACKGROUND) -> np.ndarray:
    """Frames of the agent at ``states (n, 2)`` over ``background`` (the obstacles, see
    :func:`obstacle_background`): uint8 ``(n, 40, 40)``."""
    states = np.asarray(states, dtype=np.float64).reshape(-1, 2)
    n = states.shape[0]
    out = np.empty((n, FIELD_SIZE, FIELD_SIZE), dtype=np.uint8)
    for start in range(0, n, _BLOCK):
        block = states[start : start + _BLOCK].astype(np.float32)
        # squared distances split by axis: (b, 40) each, summed over the (b, 40, 40) grid
        dx2 = (_CENTRES[None, :] - block[:, 0:1]) ** 2
        dy2 = (_CENTRES[None, :] - block[:, 1:2]) ** 2
        dist = np.sqrt(dy2[:, :, None] + dx2[:, None, :])
        agent = AGENT_VALUE * _disc_coverage(dist, AGENT_RADIUS) + 0.5  # +0.5 rounds on the cast
        np.maximum(agent, background, out=agent)
        np.copyto(out[start : start + _BLOCK], agent, casting="unsafe")
    return out


class PlanarEnv(gym.Env[np.ndarray, np.ndarray]):
    """``latentrl/Planar-v0``: reach the bottom-right goal around six obstacles, from pixels.

    ``reset()`` draws a start with ``self.np_random`` (see ``sample_start_states``);
    ``reset(options={"state": (x, y)})`` starts from a given valid state.

    Keyword arguments (all default to the task above): ``obstacles`` (``"e2c"``, or ``"pc3"``
    for the PC3 code's layout :data:`PC3_LAYOUT`), ``max_control`` (px per step and axis),
    ``goal`` (x, y), and the task's ``start_low``/``start_high``, ``goal_radius`` (px) and
    ``horizon`` (steps) of :mod:`latentrl.envs.task_options`.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        render_mode: str | None = None,
        *,
        obstacles: Literal["e2c", "pc3"] = "e2c",
        max_control: float = MAX_CONTROL,
        goal: Sequence[float] = (float(GOAL[0]), float(GOAL[1])),
        start_low: Sequence[float] | None = None,
        start_high: Sequence[float] | None = None,
        goal_radius: float | None = None,
        horizon: int | None = None,
    ) -> None:
        self.render_mode = check_render_mode(render_mode, self.metadata)
        if obstacles not in LAYOUTS:
            raise UserError(f"obstacles must be one of {sorted(LAYOUTS)}, got {obstacles!r}")
        self.layout = LAYOUTS[obstacles]
        self._background = _BACKGROUND if obstacles == "e2c" else obstacle_background(self.layout)
        self.max_control = checked_positive("max_control", max_control)
        self.observation_space = spaces.Box(0, 255, (1, FIELD_SIZE, FIELD_SIZE), dtype=np.uint8)
        top = self.max_control
        self.action_space = spaces.Box(-top, top, (2,), dtype=np.float32)
        low, high = AGENT_RADIUS, FIELD_SIZE - AGENT_RADIUS
        self.state_space = spaces.Box(np.full(2, low), np.full(2, high), dtype=np.float64)
        self.state_names = ("x", "y")
        self.angle_dims = ()
        self.horizon = checked_horizon(horizon, 40)
        self.goal_radius = checked_goal_radius(goal_radius, GOAL_RADIUS)
        self._goal = np.asarray(goal, dtype=np.float64)
        if self._goal.shape != (2,) or not self.is_valid(self._goal[None])[0]:
            raise UserError(
                f"goal must be a free (x, y) inside [{low}, {high}]^2 off the obstacles, got "
                f"{np.atleast_1d(self._goal).tolist()}"
            )
        self._start: StartBox | None = start_box(start_low, start_high, self.state_space)
        self._state: np.ndarray | None = None
        self._obs: np.ndarray | None = None

    # ---- Gymnasium API ----------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        state = requested_state(self, options)
        self._state = state if state is not None else self.sample_start_states(1, self.np_random)[0]
        return self._observation()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        u = np.asarray(action, dtype=np.float64)
        if u.shape != (2,):
            raise ValueError(f"expected an action of shape (2,), got {u.shape}")
        reward = -float(self.cost(self._state[None], u[None])[0])
        self._state = planar_step(self._state[None], u[None], self.max_control, self.layout)[0]
        obs, info = self._observation()
        return obs, reward, False, False, info

    def render(self) -> np.ndarray | None:
        """RGB uint8 ``(160, 160, 3)``: the latest frame, 4x nearest upscaled."""
        return render_frame(self.render_mode, None if self._obs is None else self._obs[0])

    def _observation(self) -> tuple[np.ndarray, dict[str, Any]]:
        self._obs = self.observe(self._state[None])[0]
        return self._obs.copy(), {"state": self._state.copy()}

    # ---- latentrl contract ------------------------------------------------------------------

    def is_valid(self, states: np.ndarray) -> np.ndarray:
        """Boolean ``(n,)``: inside the walls and clear of every obstacle."""
        return in_box(self.state_space, states) & planar_is_free(states, self.layout)

    def sample_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, 2)`` uniform over valid states (rejection sampling; ~75% of the box is free)."""
        found: list[np.ndarray] = []
        missing = n
        while missing > 0:
            draws = rng.uniform(self.state_space.low, self.state_space.high, (2 * missing + 8, 2))
            keep = draws[self.is_valid(draws)][:missing]
            found.append(keep)
            missing -= keep.shape[0]
        return np.concatenate(found, axis=0) if found else np.empty((0, 2))

    def sample_start_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, 2)``: uniform over the valid states of the start box if one was given, else
        anywhere (uniform over valid states)."""
        if self._start is not None:
            return sample_start_box(self._start, n, rng, self.angle_dims, self.is_valid)
        return self.sample_states(n, rng)

    def observe(self, states: np.ndarray) -> np.ndarray:
        """uint8 ``(n, 1, 40, 40)`` for ``states (n, 2)``; see :func:`render_planar`."""
        return render_planar(states, self._background)[:, None]

    def next_states(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """:func:`planar_step` on valid ``states (n, 2)``; raises InvalidStateError otherwise."""
        return planar_step(check_states(self, states), actions, self.max_control, self.layout)

    def goal_state(self) -> np.ndarray:
        """``(36, 36)`` (a free point near the bottom-right corner) or the ``goal`` kwarg."""
        return self._goal.copy()

    def goal_distance(self, states: np.ndarray) -> np.ndarray:
        """Euclidean distance to the goal in pixels, ``(n,)``."""
        return np.linalg.norm(np.asarray(states, dtype=np.float64) - self._goal, axis=1)

    def cost(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``|s - goal|² + 0.01 |u|²`` with u clipped to [-2, 2]² (±max_control), ``(n,)``."""
        offset = np.asarray(states, dtype=np.float64) - self._goal
        top = self.max_control
        u = np.clip(np.asarray(actions, dtype=np.float64), -top, top)
        return np.sum(offset**2, axis=1) + 0.01 * np.sum(u**2, axis=1)
