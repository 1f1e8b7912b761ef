"""MuJoCo swing-up tasks seen in pixels: a torque-driven pendulum and a cart-pole.

Both implement the latentrl contract (:mod:`latentrl.envs.contract`) on top of Gymnasium's
``MujocoEnv``; the models are ``envs/assets/pendulum.xml`` and ``envs/assets/cartpole.xml``.

Conventions shared by both tasks:

* **State** ``s = (qpos, qvel)`` of the model, float64, with the hinge angle wrapped to
  [-pi, pi): pendulum ``(theta, theta_dot)``, cart-pole ``(x, theta, x_dot, theta_dot)``.
  ``theta = 0`` is upright, ``pi`` hangs down, ``theta > 0`` tips the pole towards +x (right in
  the image); x is the cart's position on its rail (m), positive to the right.
* **Control step** ``dt = 0.05 s``: MuJoCo timestep 0.01 s (RK4, set in the MJCF) times
  ``FRAME_SKIP = 5``. After each control step the velocities are clipped to the state box (as
  Pendulum-v1 clips its speed at 8) and the cart's position into the rail (the soft joint limit
  lets it overshoot by millimetres), so every reachable state is valid.
* **Observation** uint8 ``(k, H, W)``, ``k = frames`` (2 by default): frame ``k - 1`` is
  rendered at ``qpos``, frame j at ``qpos - qvel * (k-1-j) g dt`` (a first-order reconstruction
  of the configuration ``(k-1-j) g`` control steps earlier; ``g = frame_gap``, 1 but for
  CartpoleSwingupGap2-v0's 2). The observation is therefore a pure function of the state: a
  reset into ``s`` and a step that lands in ``s`` look the same, and ``observe`` can make
  datasets from sampled states.
* **Task**: start hanging (``theta = pi +- 0.2``, at rest, cart at 0); goal upright at rest (cart
  at 0); ``goal_distance = |wrap(theta)|`` (the cart's position does not count), goal radius
  pi/6; horizon 200 steps (10 s); ``cost(s, u) = wrap(theta)^2 + 0.1 theta_dot^2 + 0.001 u^2``,
  plus ``0.1 x^2`` for the cart-pole to keep the cart near the rail's centre; the reward of a
  step is minus the cost of the state the action is applied in and that action (as Pendulum-v1).
  No termination: episodes end by the time limit set at registration.
* **Keyword arguments** change the force or torque bound, the control step, the frame size, the
  number of frames and the steps between them, the camera's view width, and the task (start
  box, goal radius, horizon), e.g. for the PC3 paper's protocol (experiments/pc3_cartpole.toml).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import logger, spaces
from gymnasium.envs.mujoco import MujocoEnv

from latentrl.envs.contract import check_states, in_box, requested_state, wrap_angle
from latentrl.envs.mujoco_frames import CAMERA, FrameRenderer, luminance
from latentrl.envs.task_options import (
    StartBox,
    checked_count,
    checked_goal_radius,
    checked_horizon,
    checked_positive,
    sample_start_box,
    start_box,
)
from latentrl.errors import UserError

ASSETS = Path(__file__).parent / "assets"
TIMESTEP = 0.01
"""MuJoCo's timestep (s) in both MJCF models."""
FRAME_SKIP = 5
"""MuJoCo steps (0.01 s each, set in the MJCF) per control step of 0.05 s."""
VIEW_SIZE = 256
"""Side of the RGB view returned by ``render()``; the models' offscreen buffers are this big."""


@dataclass(frozen=True)
class SwingupTask:
    """What distinguishes one swing-up task from another; the rest is read from the MJCF."""

    xml: str
    """Model file in ``envs/assets``; it must define the camera ``CAMERA``."""
    state_names: tuple[str, ...]
    """A name for each state coordinate, ``qpos`` then ``qvel``."""
    image_size: int
    """Side ``H = W`` of the observation frames."""
    max_velocity: tuple[float, ...]
    """Bound on ``|qvel|`` per degree of freedom (state box, and the clip after each step)."""
    state_weights: tuple[float, ...]
    """Diagonal of the quadratic state cost, applied to the state with its angle wrapped."""
    action_weight: float = 1e-3
    """Weight of ``u^2`` in the cost."""
    frame_gap: int = 1
    """Control steps between consecutive frames of the observation (the default of the kwarg
    ``frame_gap``): the frame before the last shows ``qpos - qvel * frame_gap * dt``. A longer
    gap moves the pole further between frames, so slow speeds show."""


PENDULUM = SwingupTask(
    "pendulum.xml",
    state_names=("theta", "theta_dot"),
    image_size=48,
    max_velocity=(8.0,),
    state_weights=(1.0, 0.1),
)
# A free fall from upright reaches about 7.7 rad/s; a rail end hit at speed adds a few more.
CARTPOLE = SwingupTask(
    "cartpole.xml",
    state_names=("x", "theta", "x_dot", "theta_dot"),
    image_size=64,
    max_velocity=(5.0, 10.0),
    state_weights=(0.1, 1.0, 0.0, 0.1),
)
# At 64 px for the 4.4 m view the pole's tip moves 0.7 px between frames one step apart at
# 1 rad/s. Frames two steps apart let a pixel readout see theta_dot near upright more precisely
# (experiments/studies/observation_readout.py; docs/results/cartpole.md).
CARTPOLE_GAP2 = dataclasses.replace(CARTPOLE, frame_gap=2)


def state_box(model: mujoco.MjModel, max_velocity: tuple[float, ...]) -> spaces.Box:
    """Valid states ``(qpos, qvel)``: hinge angles in [-pi, pi], slides within their joint
    range, ``|qvel| <= max_velocity``. Only hinge and limited slide joints are supported."""
    if len(max_velocity) != model.nv:
        raise ValueError(f"expected {model.nv} velocity bounds, got {len(max_velocity)}")
    low = np.empty(model.nq + model.nv)
    high = np.empty(model.nq + model.nv)
    for joint in range(model.njnt):
        adr = model.jnt_qposadr[joint]
        if model.jnt_type[joint] == mujoco.mjtJoint.mjJNT_HINGE:
            low[adr], high[adr] = -np.pi, np.pi
        elif model.jnt_type[joint] == mujoco.mjtJoint.mjJNT_SLIDE and model.jnt_limited[joint]:
            low[adr], high[adr] = model.jnt_range[joint]
        else:
            raise ValueError(f"joint {joint} must be a hinge or a limited slide")
    low[model.nq :] = -np.asarray(max_velocity)
    high[model.nq :] = max_velocity
    return spaces.Box(low, high, dtype=np.float64)


def advance(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    state: np.ndarray,
    action: np.ndarray,
    box: spaces.Box,
    hinges: np.ndarray,
    frame_skip: int = FRAME_SKIP,
) -> np.ndarray:
    """One control step (``frame_skip`` MuJoCo steps) from ``state`` (d,) under ``action`` (m,).

    Returns the next state (d,), angles wrapped and clipped into ``box``, and leaves it in
    ``data``'s qpos/qvel. The models disable warm starts, so the result depends on nothing else
    in ``data``: any MjData of ``model`` gives the same next state.
    """
    data.qpos[:] = state[: model.nq]
    data.qvel[:] = state[model.nq :]
    data.ctrl[:] = action
    mujoco.mj_step(model, data, nstep=frame_skip)
    nxt = np.concatenate([data.qpos, data.qvel])
    nxt[hinges] = wrap_angle(nxt[hinges])
    np.clip(nxt, box.low, box.high, out=nxt)
    data.qpos[:] = nxt[: model.nq]
    data.qvel[:] = nxt[model.nq :]
    return nxt


class SwingupEnv(MujocoEnv):
    """A MuJoCo swing-up from pixels: the base of every such env. A subclass chooses its
    :class:`SwingupTask` (``task``) and, where it needs to, its start states and goal
    distance (see ``envs/mujoco_arm.py``).

    Keyword arguments (all default to the MJCF and the task of the module docstring):
    ``max_action`` (bound on ``|u|`` of every actuator, N or N m; the MJCF's ctrlrange),
    ``frame_skip`` (0.01 s MuJoCo steps per control step), ``image_size`` (side of the
    observation frames, px), ``frames`` (stacked frames k >= 1, default 2), ``frame_gap``
    (control steps g >= 1 between consecutive frames, default the task's), ``view_width``
    (the side of the square the orthographic camera sees, m, centred where the MJCF puts it;
    default the MJCF's: a narrower view draws the bodies on more pixels, and leaves out what
    lies outside it), and the task's
    ``start_low``/``start_high``, ``goal_radius`` (rad) and ``horizon`` (steps) of
    :mod:`latentrl.envs.task_options`.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}
    task: ClassVar[SwingupTask]
    horizon: int = 200
    goal_radius: float = float(np.pi / 6)

    def __init__(
        self,
        render_mode: str | None = None,
        *,
        max_action: float | None = None,
        frame_skip: int = FRAME_SKIP,
        image_size: int | None = None,
        start_low: Sequence[float] | None = None,
        start_high: Sequence[float] | None = None,
        goal_radius: float | None = None,
        horizon: int | None = None,
        frames: int = 2,
        frame_gap: int | None = None,
        view_width: float | None = None,
    ) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, "
                f"got {render_mode!r}"
            )
        if isinstance(frame_skip, bool) or not isinstance(frame_skip, int) or frame_skip < 1:
            raise UserError(f"frame_skip must be a positive int (0.01 s steps), got {frame_skip!r}")
        # MujocoEnv checks render_fps against its control step, which frame_skip sets
        self.metadata = {**self.metadata, "render_fps": round(1.0 / (TIMESTEP * frame_skip))}
        size = self.task.image_size if image_size is None else image_size
        if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= VIEW_SIZE // 2:
            raise UserError(f"image_size must be an int in [8, {VIEW_SIZE // 2}], got {size!r}")
        self.frames = checked_count("frames", frames, "stacked frames in an observation")
        gap = self.task.frame_gap if frame_gap is None else frame_gap
        self.frame_gap = checked_count("frame_gap", gap, "control steps between frames")
        width = None if view_width is None else checked_positive("view_width", view_width)
        super().__init__(
            str(ASSETS / self.task.xml),
            frame_skip,
            observation_space=spaces.Box(0, 255, (self.frames, size, size), dtype=np.uint8),
            render_mode=render_mode,
            width=VIEW_SIZE,
            height=VIEW_SIZE,
            camera_name=CAMERA,
        )
        if width is not None:  # an orthographic camera's fovy is its view's side, m
            camera = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA)
            self.model.cam_fovy[camera] = width
        if max_action is not None:
            top = checked_positive("max_action", max_action)
            self.model.actuator_ctrlrange[:] = [-top, top]
            self._set_action_space()
        self.horizon = checked_horizon(horizon, type(self).horizon)
        self.goal_radius = checked_goal_radius(goal_radius, type(self).goal_radius)
        hinges = np.flatnonzero(self.model.jnt_type == mujoco.mjtJoint.mjJNT_HINGE)
        self._hinges = self.model.jnt_qposadr[hinges].astype(np.intp)  # angles in qpos and state
        self._angle = int(self._hinges[0])  # the pole's angle: the task's one hinge
        self.state_space = state_box(self.model, self.task.max_velocity)
        self.state_names = self.task.state_names
        self.angle_dims = tuple(int(i) for i in self._hinges)
        self._start: StartBox | None = start_box(start_low, start_high, self.state_space)
        self._dynamics_data = mujoco.MjData(self.model)  # next_states never touches self.data
        self._frames = FrameRenderer(self.model, size)
        self._view: FrameRenderer | None = None  # made on the first render()

    # ---- Gymnasium API ----

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start from ``options["state"]`` (d,) if given, else from a hanging start state."""
        # Env.reset seeds np_random; MujocoEnv.reset would drop options.
        super(MujocoEnv, self).reset(seed=seed)
        state = requested_state(self, options)
        if state is not None:
            # The box admits theta = pi, reported as -pi; wrapping other angles would move them by
            # a rounding error, and a reset must report exactly the state it was given.
            state[self._hinges] = np.where(
                state[self._hinges] >= np.pi, -np.pi, state[self._hinges]
            )
        else:
            state = self.sample_start_states(1, self.np_random)[0]
        mujoco.mj_resetData(self.model, self.data)
        self.set_state(state[: self.model.nq], state[self.model.nq :])
        return self.observe(state[None])[0], {"state": state}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` (m,), clipped to the actuator range, for one control step."""
        if np.shape(action) != self.action_space.shape:
            raise ValueError(
                f"expected an action of shape {self.action_space.shape}, got {np.shape(action)}"
            )
        u = self._clipped_actions(np.asarray(action)[None])
        state = self._state()
        reward = -float(self.cost(state[None], u)[0])
        nxt = advance(
            self.model, self.data, state, u[0], self.state_space, self._hinges, self.frame_skip
        )
        # Keep derived quantities (body poses, ...) in step with the clipped state.
        mujoco.mj_forward(self.model, self.data)
        return self.observe(nxt[None])[0], reward, False, False, {"state": nxt}

    def render(self) -> np.ndarray | None:
        """RGB view uint8 ``(VIEW_SIZE, VIEW_SIZE, 3)`` of the current configuration."""
        if self.render_mode is None:
            logger.warn("render() called without a render_mode; make the env with 'rgb_array'.")
            return None
        if self._view is None:
            self._view = FrameRenderer(self.model, VIEW_SIZE)
        return self._view.render(self.data.qpos[None, None])[0, 0]

    def close(self) -> None:
        """Free the renderers' GL contexts; safe to call twice."""
        self._frames.close()
        if self._view is not None:
            self._view.close()
        super().close()

    # ---- latentrl contract ----

    def is_valid(self, states: np.ndarray) -> np.ndarray:
        """Boolean ``(n,)``: which states ``(n, d)`` lie in ``state_space``."""
        return in_box(self.state_space, states)

    def sample_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` states drawn uniformly from ``state_space``, ``(n, d)``."""
        return rng.uniform(
            self.state_space.low, self.state_space.high, size=(n, len(self.state_names))
        )

    def sample_start_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` states ``(n, d)`` uniform in the start box if one was given; else hanging at
        rest, ``theta = pi +- 0.2`` (wrapped), cart at 0."""
        if self._start is not None:
            return sample_start_box(self._start, n, rng, self.angle_dims, self.is_valid)
        states = np.zeros((n, len(self.state_names)))
        states[:, self._angle] = wrap_angle(np.pi + rng.uniform(-0.2, 0.2, size=n))
        return states

    def observe(self, states: np.ndarray) -> np.ndarray:
        """uint8 ``(n, k, H, W)`` observations of valid ``states`` (n, d); frame j at
        ``qpos - qvel * (k-1-j) * frame_gap * dt``, the last at ``qpos``. Leaves the simulation
        untouched."""
        arr = check_states(self, states)
        qpos, qvel = arr[:, : self.model.nq], arr[:, self.model.nq :]
        # steps back as an int times dt: the default pair is qpos - qvel * (frame_gap * dt)
        earlier = [
            qpos - qvel * ((back * self.frame_gap) * self.dt)
            for back in range(self.frames - 1, 0, -1)
        ]
        return luminance(self._frames.render(np.stack([*earlier, qpos], axis=1)))

    def next_states(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """True dynamics: ``(n, d)`` states one control step after ``states`` (n, d) under
        ``actions`` (n, m), exactly as ``step`` would produce them."""
        arr = check_states(self, states)
        u = self._clipped_actions(actions)
        if len(u) != len(arr):
            raise ValueError(f"got {len(arr)} states but {len(u)} actions")
        return np.stack(
            [
                advance(
                    self.model,
                    self._dynamics_data,
                    s,
                    a,
                    self.state_space,
                    self._hinges,
                    self.frame_skip,
                )
                for s, a in zip(arr, u, strict=True)
            ]
        )

    def goal_state(self) -> np.ndarray:
        """Upright at rest (cart at 0): zeros ``(d,)``."""
        return np.zeros(len(self.state_names))

    def goal_distance(self, states: np.ndarray) -> np.ndarray:
        """``|wrap(theta)|`` (rad) of each state ``(n, d)``, ``(n,)``; x does not count."""
        return np.abs(wrap_angle(np.atleast_2d(states)[:, self._angle]))

    def cost(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``sum_i w_i e_i^2 + 0.001 |u|^2`` per row, ``(n,)``, with ``e`` the state ``(n, d)``
        with its angle wrapped and ``u`` the action ``(n, m)`` clipped to the actuator range."""
        err = np.array(np.atleast_2d(states), dtype=np.float64)
        err[:, self._hinges] = wrap_angle(err[:, self._hinges])
        u = np.clip(np.atleast_2d(actions), self.action_space.low, self.action_space.high)
        effort = self.task.action_weight * np.sum(u**2, axis=1)
        return err**2 @ np.asarray(self.task.state_weights) + effort

    # ---- internals ----

    def _state(self) -> np.ndarray:
        # self.data only ever holds wrapped, clipped states (reset and advance write them).
        return np.concatenate([self.data.qpos, self.data.qvel])

    def _clipped_actions(self, actions: np.ndarray) -> np.ndarray:
        """Actions ``(n, m)`` as float64, clipped to the actuator range; raise on bad input."""
        u = np.asarray(actions, dtype=np.float64)
        m = self.action_space.shape[0]
        if u.ndim != 2 or u.shape[1] != m:
            raise ValueError(f"expected actions of shape (n, {m}), got {np.shape(actions)}")
        if not np.all(np.isfinite(u)):
            raise ValueError(f"actions must be finite, got {u.tolist()}")
        return np.clip(u, self.action_space.low, self.action_space.high)


class PendulumSwingupEnv(SwingupEnv):
    """Pendulum swing-up: state ``(theta, theta_dot)``, torque ``(1,)`` in [-2, 2] N m,
    observation uint8 ``(2, 48, 48)`` by default. Model: ``envs/assets/pendulum.xml``."""

    task = PENDULUM


class CartpoleSwingupEnv(SwingupEnv):
    """Cart-pole swing-up: state ``(x, theta, x_dot, theta_dot)``, x in [-1.5, 1.5] m, force
    ``(1,)`` in [-5, 5] N on the cart, observation uint8 ``(2, 64, 64)`` by default. Model:
    ``envs/assets/cartpole.xml``."""

    task = CARTPOLE


class CartpoleSwingupGap2Env(CartpoleSwingupEnv):
    """CartpoleSwingupGap2-v0: the cart-pole of v0 (the same dynamics, task and cost) with the
    observation's frames two control steps apart instead of one (``frame_gap`` defaults to 2)."""

    task = CARTPOLE_GAP2
