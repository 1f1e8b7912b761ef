"""Pendulum swing-up from pixels: Gymnasium's Pendulum-v1 physics seen through 48x48 images.

Conventions:

* state ``s = (θ, θ̇)`` float64, radians and radians per second; θ = 0 is upright, and positive
  θ turns the pole counter-clockwise as seen in the image (from upright, the tip moves to the
  left), exactly as Gymnasium draws Pendulum-v1;
* the env integrates an unwrapped θ exactly like Pendulum-v1 (``physics_state``), so that
  trajectories are bit-identical to Gymnasium's; ``info["state"]`` and every batched method use
  θ wrapped into [-π, π] (angles already in that closed range are left untouched, bit for bit);
* observation: uint8 ``(2, 48, 48)``, frame 0 at ``θ - θ̇ dt`` (the position one step earlier,
  which inverts Pendulum-v1's position update, so the pair encodes θ̇), frame 1 at θ; a bright
  anti-aliased pole on black, pivot at the image centre. The kwargs ``frames`` (k) and
  ``frame_gap`` (g) generalise it to ``(k, 48, 48)``: frame j at ``θ - (k-1-j) g θ̇ dt``;
* keyword arguments change the physics (:class:`PendulumPhysics`) and the task (start box, goal
  radius, horizon), e.g. for the PC3 paper's protocol (experiments/pc3_pendulum_*.toml); their
  defaults are Pendulum-v1 and the swing-up task below.

Speed of ``observe`` (single thread, 2-core AMD EPYC VM, NumPy 2.4, batches of 10,000 states):
150,000-165,000 frames/s on an idle machine, 75,000-80,000 with the other core busy; the target
was 20,000. ``render_pendulum`` works on blocks of 64 frames so its scratch memory stays in
cache whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from latentrl.envs.contract import (
    check_render_mode,
    in_box,
    render_frame,
    requested_state,
    wrap_angle,
)
from latentrl.envs.task_options import (
    StartBox,
    checked_count,
    checked_goal_radius,
    checked_horizon,
    checked_positive,
    sample_start_box,
    start_box,
)

# Pendulum-v1's constants (gymnasium/envs/classic_control/pendulum.py).
GRAVITY = 10.0
MASS = 1.0
LENGTH = 1.0
DT = 0.05
MAX_SPEED = 8.0
MAX_TORQUE = 2.0

IMAGE_SIZE = 48
POLE_LENGTH_PX = 20.0
POLE_HALF_WIDTH_PX = 2.0
_BLOCK = 64  # frames per rendering block: 3 scratch arrays of 64 x 2304 float32 stay in L2

# Pixel-centre coordinates relative to the pivot, y pointing up, flattened row-major: (H*W,).
_offsets = np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5 - IMAGE_SIZE / 2
_PIXEL_X = np.tile(_offsets, IMAGE_SIZE)
_PIXEL_Y = np.repeat(-_offsets, IMAGE_SIZE)
# 255 * coverage + 0.5 with coverage = half_width + 0.5 - distance: the +0.5 rounds on the cast.
_INTENSITY_AT_AXIS = np.float32(255.0 * (POLE_HALF_WIDTH_PX + 0.5) + 0.5)


@dataclass(frozen=True)
class PendulumPhysics:
    """Pendulum-v1's ODE ``θ̈ = 3 g / (2 l) sin θ + 3 / (m l²) u`` (a uniform rod of mass m and
    length l about its end, θ = 0 upright), stepped by semi-implicit Euler with step ``dt`` (s);
    ``|u| <= max_torque`` (N m), ``|θ̇| <= max_speed`` (rad/s). The defaults are Pendulum-v1's."""

    gravity: float = GRAVITY
    mass: float = MASS
    length: float = LENGTH
    dt: float = DT
    max_speed: float = MAX_SPEED
    max_torque: float = MAX_TORQUE


PENDULUM_V1 = PendulumPhysics()


def _clip_torque(torques: np.ndarray, max_torque: float = MAX_TORQUE) -> np.ndarray:
    """Torques clipped to ±max_torque, keeping a float dtype as given.

    Pendulum-v1 multiplies the float32 action in float32; keeping the dtype keeps that rounding.
    """
    u = np.asarray(torques)
    if not np.issubdtype(u.dtype, np.floating):
        u = u.astype(np.float64)
    return np.clip(u, -max_torque, max_torque)


def pendulum_step(
    states: np.ndarray, torques: np.ndarray, physics: PendulumPhysics = PENDULUM_V1
) -> np.ndarray:
    """One Pendulum-v1 step, vectorized: ``states (n, 2)``, ``torques (n, 1)`` -> ``(n, 2)``.

    Same operations in the same order as Gymnasium's ``PendulumEnv.step``, so results with the
    default ``physics`` are bit-identical to it. θ is not wrapped (Gymnasium does not wrap it).
    """
    p = physics
    th, thdot = states[:, 0], states[:, 1]
    u = _clip_torque(torques, p.max_torque)[:, 0]
    accel = 3 * p.gravity / (2 * p.length) * np.sin(th) + 3.0 / (p.mass * p.length**2) * u
    newthdot = np.clip(thdot + accel * p.dt, -p.max_speed, p.max_speed)
    newth = th + newthdot * p.dt
    return np.stack([newth, newthdot], axis=1)


def pendulum_cost(
    states: np.ndarray, actions: np.ndarray, max_torque: float = MAX_TORQUE
) -> np.ndarray:
    """Pendulum-v1's cost ``wrap(θ)² + 0.1 θ̇² + 0.001 u²``, u clipped: ``(n, 2), (n, 1) -> (n,)``.

    The u² term is computed in the action's dtype, as Pendulum-v1 does (its float32 actions).
    """
    th, thdot = states[:, 0], states[:, 1]
    u = _clip_torque(actions, max_torque)[:, 0]
    return wrap_angle(th) ** 2 + 0.1 * thdot**2 + 0.001 * (u**2)


def _pendulum_v1_reward(state: np.ndarray, action: np.ndarray, max_torque: float) -> float:
    """Pendulum-v1's reward for one step, on NumPy scalars exactly as Gymnasium computes it.

    Not :func:`pendulum_cost`: a float32 scalar's ``u**2`` goes through libm's ``powf``, which
    can be one float32 ulp off the array square, so the two can differ by ~1e-10.
    """
    th, thdot = state
    u = _clip_torque(action, max_torque)[0]
    return float(-(wrap_angle(th) ** 2 + 0.1 * thdot**2 + 0.001 * (u**2)))


def wrap_into_box(theta: np.ndarray) -> np.ndarray:
    """θ mapped into [-π, π]; angles already inside are returned unchanged, bit for bit.

    ``wrap_angle`` rounds even in-range angles (θ + π - π != θ in floating point); keeping them
    makes every valid state a fixed point: reset to ``s`` reports exactly ``s``.
    """
    theta = np.asarray(theta, dtype=np.float64)
    return np.where(np.abs(theta) <= np.pi, theta, wrap_angle(theta))


def render_pendulum(theta: np.ndarray) -> np.ndarray:
    """Frames of the pole at angles ``theta (n,)``: uint8 ``(n, 48, 48)``.

    A bright (255) capsule of length 20 px and half-width 2 px from the pivot at the image
    centre, anti-aliased by coverage ``clip(half_width + 0.5 - distance, 0, 1)``, on black.
    θ = 0 points up; the tip is at ``(-sin θ, cos θ)`` in x-right, y-up image coordinates, so
    positive θ is counter-clockwise as in Gymnasium's Pendulum-v1 drawing.
    """
    theta = np.asarray(theta, dtype=np.float64).reshape(-1)
    n = theta.shape[0]
    out = np.empty((n, IMAGE_SIZE * IMAGE_SIZE), dtype=np.uint8)
    for start in range(0, n, _BLOCK):
        block = theta[start : start + _BLOCK]
        c = np.cos(block).astype(np.float32)[:, None]
        s = np.sin(block).astype(np.float32)[:, None]
        # along: coordinate along the pole (tip direction (-s, c)); across: distance from its axis
        along = np.multiply(c, _PIXEL_Y)
        scratch = np.multiply(s, _PIXEL_X)
        along -= scratch
        across = np.multiply(c, _PIXEL_X)
        np.multiply(s, _PIXEL_Y, out=scratch)
        across += scratch
        # distance to the segment: the part of `along` outside [0, L] plus the `across` part
        np.clip(along, 0.0, POLE_LENGTH_PX, out=scratch)
        along -= scratch
        along *= along
        across *= across
        along += across
        np.sqrt(along, out=along)
        along *= -255.0
        along += _INTENSITY_AT_AXIS
        np.clip(along, 0.0, 255.0, out=along)
        np.copyto(out[start : start + _BLOCK], along, casting="unsafe")
    return out.reshape(n, IMAGE_SIZE, IMAGE_SIZE)


def observe_pendulum(
    states: np.ndarray, dt: float = DT, frames: int = 2, frame_gap: int = 1
) -> np.ndarray:
    """Observations of ``states (n, 2)``: uint8 ``(n, k, 48, 48)`` with ``k = frames``; frame j
    at ``θ - (k-1-j) g θ̇ dt`` (``g = frame_gap``), the last one at θ. The default pair is
    ``(θ - θ̇ dt, θ)``."""
    states = np.asarray(states, dtype=np.float64)
    theta, thdot = states[:, 0], states[:, 1]
    # (steps back) * dt first, in ints then one float product: the default is θ - θ̇ * dt exactly
    earlier = [theta - thdot * ((back * frame_gap) * dt) for back in range(frames - 1, 0, -1)]
    angles = np.stack([*earlier, theta], axis=1)
    return render_pendulum(angles.reshape(-1)).reshape(-1, frames, IMAGE_SIZE, IMAGE_SIZE)


class PixelPendulumEnv(gym.Env[np.ndarray, np.ndarray]):
    """``latentrl/Pendulum-v0``: Pendulum-v1 swing-up observed as stacked 48x48 frames (two by
    default).

    Reward is ``-cost`` evaluated at the state the action is applied in (as Pendulum-v1);
    never terminates (the registration's TimeLimit truncates after 200 steps).
    ``reset(options={"state": (θ, θ̇)})`` starts from a given valid state.

    Keyword arguments (all default to Pendulum-v1 and the task above): the physics
    ``gravity`` (m/s²), ``mass`` (kg), ``length`` (m), ``dt`` (s), ``max_torque`` (N m),
    ``max_speed`` (rad/s) of :class:`PendulumPhysics`; the task's ``start_low``/``start_high``,
    ``goal_radius`` (rad) and ``horizon`` (steps) of :mod:`latentrl.envs.task_options`. With a
    start box, ``reset()`` without a state draws from it instead of Pendulum-v1's distribution.
    ``frames`` (k >= 1, default 2) and ``frame_gap`` (g >= 1 control steps, default 1) set the
    observation: k frames, frame j at ``θ - (k-1-j) g θ̇ dt`` (:func:`observe_pendulum`).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        render_mode: str | None = None,
        *,
        gravity: float = GRAVITY,
        mass: float = MASS,
        length: float = LENGTH,
        dt: float = DT,
        max_torque: float = MAX_TORQUE,
        max_speed: float = MAX_SPEED,
        start_low: Sequence[float] | None = None,
        start_high: Sequence[float] | None = None,
        goal_radius: float | None = None,
        horizon: int | None = None,
        frames: int = 2,
        frame_gap: int = 1,
    ) -> None:
        self.render_mode = check_render_mode(render_mode, self.metadata)
        self.physics = PendulumPhysics(
            *(
                checked_positive(name, value)
                for name, value in (
                    ("gravity", gravity),
                    ("mass", mass),
                    ("length", length),
                    ("dt", dt),
                    ("max_speed", max_speed),
                    ("max_torque", max_torque),
                )
            )
        )
        self.frames = checked_count("frames", frames, "stacked frames in an observation")
        self.frame_gap = checked_count("frame_gap", frame_gap, "control steps between frames")
        shape = (self.frames, IMAGE_SIZE, IMAGE_SIZE)
        self.observation_space = spaces.Box(0, 255, shape, dtype=np.uint8)
        top, speed = self.physics.max_torque, self.physics.max_speed
        self.action_space = spaces.Box(-top, top, (1,), dtype=np.float32)
        self.state_space = spaces.Box(
            np.array([-np.pi, -speed]), np.array([np.pi, speed]), dtype=np.float64
        )
        self.state_names = ("theta", "theta_dot")
        self.angle_dims = (0,)
        self.horizon = checked_horizon(horizon, 200)
        self.goal_radius = checked_goal_radius(goal_radius, np.pi / 6)
        self._start: StartBox | None = start_box(start_low, start_high, self.state_space)
        self._physics: np.ndarray | None = None  # unwrapped (θ, θ̇), as Pendulum-v1's `state`
        self._obs: np.ndarray | None = None

    # ---- Gymnasium API ----------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        state = requested_state(self, options)
        if state is not None:
            self._physics = state
        elif self._start is not None:
            self._physics = self.sample_start_states(1, self.np_random)[0]
        else:
            # Pendulum-v1's draw: the same seed gives the same initial state.
            high = np.array([np.pi, 1.0])
            self._physics = self.np_random.uniform(low=-high, high=high)
        return self._observation()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._physics is None:
            raise RuntimeError("call reset() before step()")
        u = np.asarray(action)
        if u.size != 1:
            raise ValueError(f"expected an action of shape (1,), got {u.shape}")
        u = u.reshape(1, 1)
        reward = _pendulum_v1_reward(self._physics, u[0], self.physics.max_torque)
        self._physics = pendulum_step(self._physics[None], u, self.physics)[0]
        obs, info = self._observation()
        return obs, reward, False, False, info

    def render(self) -> np.ndarray | None:
        """RGB uint8 ``(192, 192, 3)``: the latest frame, 4x nearest upscaled."""
        return render_frame(self.render_mode, None if self._obs is None else self._obs[-1])

    @property
    def physics_state(self) -> np.ndarray:
        """The integrated state ``(2,)`` with θ unwrapped, identical to Pendulum-v1's ``state``."""
        if self._physics is None:
            raise RuntimeError("call reset() first")
        return self._physics.copy()

    def _observation(self) -> tuple[np.ndarray, dict[str, Any]]:
        state = np.array([wrap_into_box(self._physics[0]), self._physics[1]])
        self._obs = self.observe(state[None])[0]
        return self._obs.copy(), {"state": state}

    # ---- latentrl contract ------------------------------------------------------------------

    def is_valid(self, states: np.ndarray) -> np.ndarray:
        """Boolean ``(n,)``: θ in [-π, π] and |θ̇| <= max_speed (8)."""
        return in_box(self.state_space, states)

    def sample_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, 2)`` uniform over the state box."""
        return rng.uniform(self.state_space.low, self.state_space.high, size=(n, 2))

    def sample_start_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, 2)``: uniform in the start box if one was given; else hanging down, θ uniform in
        π ± 0.2 (wrapped into [-π, π)), θ̇ = 0."""
        if self._start is not None:
            return sample_start_box(self._start, n, rng, self.angle_dims, self.is_valid)
        theta = wrap_angle(np.pi + rng.uniform(-0.2, 0.2, size=n))
        return np.stack([theta, np.zeros(n)], axis=1)

    def observe(self, states: np.ndarray) -> np.ndarray:
        """uint8 ``(n, k, 48, 48)`` for ``states (n, 2)``; see :func:`observe_pendulum`."""
        return observe_pendulum(states, self.physics.dt, self.frames, self.frame_gap)

    def next_states(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """:func:`pendulum_step` with θ wrapped into [-π, π]: ``(n, 2), (n, 1) -> (n, 2)``."""
        nxt = pendulum_step(np.asarray(states, dtype=np.float64), actions, self.physics)
        nxt[:, 0] = wrap_into_box(nxt[:, 0])
        return nxt

    def goal_state(self) -> np.ndarray:
        """Upright and at rest: ``(0, 0)``."""
        return np.zeros(2)

    def goal_distance(self, states: np.ndarray) -> np.ndarray:
        """``|wrap(θ)|`` in radians, ``(n,)``."""
        return np.abs(wrap_angle(np.asarray(states)[:, 0]))

    def cost(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Pendulum-v1's cost, ``(n,)``; see :func:`pendulum_cost`."""
        return pendulum_cost(np.asarray(states, dtype=np.float64), actions, self.physics.max_torque)
