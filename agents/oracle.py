"""The oracle: iLQR MPC on the true state with the true dynamics, the ceiling for latent MPC.

It plans with the same :class:`~latentrl.planning.MPCPlanner` as the latent agent, but on the
env's state ``s`` towards ``env.goal_state()``:

* dynamics: for ``latentrl/Pendulum-v0`` the exact Pendulum-v1 physics in torch
  (:func:`~latentrl.planning.pendulum_dynamics`, Jacobians from ``torch.func``); for every
  other env (MuJoCo, planar, plug-ins) ``env.next_states`` with Jacobians by central finite
  differences (:class:`FiniteDifferenceDynamics`);
* cost: the env's own one-step cost read as a quadratic form around the goal,
  ``Q = ½ ∂²cost/∂s²`` and ``R = ½ ∂²cost/∂u²`` at ``(goal_state, 0)``
  (:func:`quadratic_weights`): Pendulum-v0 and the MuJoCo pendulum give Q = diag(1, 0.1),
  R = 0.001 (Pendulum-v1's cost), the cart-pole adds 0.1 x², planar gives Q = I, R = 0.01.
  Terminal weight ``Q_f = terminal_factor · Q``; angle errors are wrapped (``env.angle_dims``).

A local planner: on the planar task it can stall behind an obstacle. Its scores on each task
are on the results pages (docs/results/).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latentrl.agents.agent import check_batch, check_image
from latentrl.envs.contract import ControlEnv, require_control_env, wrap_angle
from latentrl.envs.pendulum import PixelPendulumEnv
from latentrl.errors import UserError
from latentrl.planning import (
    Dynamics,
    FunctionDynamics,
    ILQRConfig,
    MPCPlanner,
    QuadraticCost,
    pendulum_dynamics,
)
from latentrl.planning.options.restarts import Restarts, RestartsConfig
from latentrl.planning.options.warm_start import WarmStart


class FiniteDifferenceDynamics:
    """``env.next_states`` as planner :class:`~latentrl.planning.Dynamics`, in float64 NumPy.

    ``linearize`` evaluates all ``2 (d + m)`` perturbations of every row in one batched
    ``next_states`` call and takes central differences with step ``eps``. Where a central
    difference would leave the valid state set (``env.is_valid``) or the action box it is
    one-sided towards the inside (so a control saturated at a bound gets the slope from within
    the box, not half of it); perturbed angles are wrapped, and differences of angle outputs
    too. Tensors in, tensors out (dtype and device of ``z``); ``c`` is ``f - A z - B u``.
    """

    def __init__(
        self, env: ControlEnv, u_low: np.ndarray, u_high: np.ndarray, eps: float = 1e-5
    ) -> None:
        self.env = env
        self.u_low = np.asarray(u_low, dtype=np.float64).reshape(-1)
        self.u_high = np.asarray(u_high, dtype=np.float64).reshape(-1)
        self.eps = float(eps)
        self.angles = np.zeros(env.state_space.shape[0], dtype=bool)
        self.angles[list(env.angle_dims)] = True

    def step(self, z: Tensor, u: Tensor) -> Tensor:
        """Next states ``(B, d)`` of ``z (B, d)`` under ``u (B, m)``."""
        nxt = self.env.next_states(_numpy(z), _numpy(u))
        return torch.as_tensor(nxt, dtype=z.dtype, device=z.device)

    def linearize(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(A (B, d, d), B (B, d, m), c (B, d))`` by one-batch central differences."""
        s, a = _numpy(z), _numpy(u)
        A, Bm, f = self.jacobians(s, a)
        c = f - np.einsum("bij,bj->bi", A, s) - np.einsum("bij,bj->bi", Bm, a)
        like = {"dtype": z.dtype, "device": z.device}
        return (
            torch.as_tensor(A, **like),
            torch.as_tensor(Bm, **like),
            torch.as_tensor(c, **like),
        )

    def jacobians(self, s: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, ...]:
        """NumPy ``(A (B, d, d), B (B, d, m), f (B, d))`` at states ``s`` and actions ``a``."""
        n, d = s.shape
        m = a.shape[1]
        h = self.eps
        # Perturbed states (n, d, d): row i of block b is s_b ± h e_i, angles wrapped.
        s_plus = s[:, None, :] + h * np.eye(d)
        s_minus = s[:, None, :] - h * np.eye(d)
        s_plus[..., self.angles] = wrap_angle(s_plus[..., self.angles])
        s_minus[..., self.angles] = wrap_angle(s_minus[..., self.angles])
        ok_sp = self.env.is_valid(s_plus.reshape(-1, d)).reshape(n, d)
        ok_sm = self.env.is_valid(s_minus.reshape(-1, d)).reshape(n, d)
        s_plus = np.where(ok_sp[..., None], s_plus, s[:, None, :])  # invalid: evaluate s
        s_minus = np.where(ok_sm[..., None], s_minus, s[:, None, :])
        a_plus = a[:, None, :] + h * np.eye(m)
        a_minus = a[:, None, :] - h * np.eye(m)
        ok_ap = np.diagonal(a_plus, axis1=1, axis2=2) <= self.u_high
        ok_am = np.diagonal(a_minus, axis1=1, axis2=2) >= self.u_low

        # One call, four blocks after the base rows, each ordered row-major (row b, index i).
        s_m, a_d = np.repeat(s, m, axis=0), np.repeat(a, d, axis=0)
        states = np.concatenate([s, s_plus.reshape(-1, d), s_minus.reshape(-1, d), s_m, s_m])
        actions = np.concatenate([a, a_d, a_d, a_plus.reshape(-1, m), a_minus.reshape(-1, m)])
        out = self.env.next_states(states, actions)
        f = out[:n]
        ends = n + np.cumsum([n * d, n * d, n * m, n * m])
        f_sp = out[n : ends[0]].reshape(n, d, d)
        f_sm = out[ends[0] : ends[1]].reshape(n, d, d)
        f_ap = out[ends[1] : ends[2]].reshape(n, m, d)
        f_am = out[ends[2] :].reshape(n, m, d)
        A = self._difference(f, f_sp, f_sm, ok_sp, ok_sm).transpose(0, 2, 1)
        Bm = self._difference(f, f_ap, f_am, ok_ap, ok_am).transpose(0, 2, 1)
        return A, Bm, f

    def select(self, index: Tensor) -> FiniteDifferenceDynamics:
        """Itself: one simulator for every problem."""
        return self

    def _difference(
        self,
        f: np.ndarray,
        f_plus: np.ndarray,
        f_minus: np.ndarray,
        ok_plus: np.ndarray,
        ok_minus: np.ndarray,
    ) -> np.ndarray:
        """Derivatives ``(n, k, d)`` (row j: d f / d x_j) from outputs ``(n, k, d)``."""
        base = f[:, None, :]
        central = self._delta(f_plus, f_minus) / (2 * self.eps)
        forward = self._delta(f_plus, base) / self.eps
        backward = self._delta(base, f_minus) / self.eps
        both, plus, minus = ok_plus & ok_minus, ok_plus & ~ok_minus, ~ok_plus & ok_minus
        out = np.where(both[..., None], central, 0.0)
        out = np.where(plus[..., None], forward, out)
        return np.where(minus[..., None], backward, out)

    def _delta(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``x - y`` with angle coordinates wrapped (an output may cross ±π)."""
        diff = x - y
        diff[..., self.angles] = wrap_angle(diff[..., self.angles])
        return diff


def quadratic_weights(env: ControlEnv, step: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """The env's one-step cost as a quadratic form around the goal: ``Q (d, d)``, ``R (m, m)``.

    ``Q = ½ ∂²cost/∂s²``, ``R = ½ ∂²cost/∂u²`` at ``(goal_state, u = 0)`` by four-point central
    differences (exact up to rounding for a quadratic cost; one batched ``cost`` call each),
    then symmetrised and projected onto PSD (Q) and PD (R, eigenvalues >= 1e-6) matrices.
    """
    goal = np.asarray(env.goal_state(), dtype=np.float64)
    m = _action_dim(env)
    u0 = np.zeros(m)
    Q = _hessian(lambda s: env.cost(s, np.repeat(u0[None], len(s), 0)), goal, step) / 2
    R = _hessian(lambda u: env.cost(np.repeat(goal[None], len(u), 0), u), u0, step) / 2
    return _project(Q, 0.0), _project(R, 1e-6)


def _hessian(fn: Any, x: np.ndarray, h: float) -> np.ndarray:
    """``∂²fn/∂x²`` at ``x (k,)`` of a batched ``fn ((N, k)) -> (N,)`` in one call."""
    k = x.shape[0]
    e = h * np.eye(k)
    signs = ((1, 1), (1, -1), (-1, 1), (-1, -1))
    points = np.stack([x + si * e[:, None] + sj * e[None, :] for si, sj in signs])
    values = np.asarray(fn(points.reshape(-1, k)), dtype=np.float64).reshape(4, k, k)
    H = (values[0] - values[1] - values[2] + values[3]) / (4 * h * h)
    return 0.5 * (H + H.T)


def _project(M: np.ndarray, floor: float) -> np.ndarray:
    w, V = np.linalg.eigh(M)
    return (V * np.maximum(w, floor)) @ V.T


def _action_dim(env: ControlEnv) -> int:
    return int(np.prod(env.action_space.shape))  # type: ignore[attr-defined]


def true_dynamics(env: ControlEnv) -> Dynamics:
    """The env's dynamics for planning: exact torch physics for Pendulum-v0, else finite
    differences of ``env.next_states``."""
    if isinstance(env, PixelPendulumEnv):
        physics = dataclasses.asdict(env.physics)  # the env's kwargs, Pendulum-v1's by default
        return FunctionDynamics(functools.partial(pendulum_dynamics, **physics))
    space = env.action_space  # type: ignore[attr-defined]
    return FiniteDifferenceDynamics(env, space.low, space.high)


class OracleMPCAgent:
    """iLQR MPC on the true state: ``act`` plans from ``states``, never from ``obs``.

    ``env``: the task (any latentrl env; its unwrapped instance is used for dynamics, cost
    and goal). ``Q``/``R`` default to :func:`quadratic_weights` of the env's cost, ``Q_f`` to
    ``terminal_factor · Q``. Planning runs in float64 on the CPU.
    """

    def __init__(
        self,
        env: Any,
        horizon: int = 40,
        Q: np.ndarray | None = None,
        R: np.ndarray | None = None,
        terminal_factor: float = 1.0,
        replan_every: int = 1,
        max_iterations: int = 50,
        restarts: int = 0,
        seed: int = 0,
        dynamics: Dynamics | None = None,
    ) -> None:
        self.env = require_control_env(env)
        self.obs_shape = tuple(self.env.observation_space.shape)  # type: ignore[attr-defined]
        Q0, R0 = quadratic_weights(self.env) if Q is None or R is None else (Q, R)
        Q = np.asarray(Q0 if Q is None else Q, dtype=np.float64)
        R = np.asarray(R0 if R is None else R, dtype=np.float64)
        self.dynamics = dynamics or true_dynamics(self.env)
        as_t = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float64)  # noqa: E731
        cost = QuadraticCost(
            Q=as_t(Q),
            R=as_t(R),
            Q_f=as_t(terminal_factor * Q),
            goal=as_t(self.env.goal_state()),
            angle_dims=tuple(self.env.angle_dims),
        )
        space = self.env.action_space  # type: ignore[attr-defined]
        self.planner = MPCPlanner(
            self.dynamics,
            cost,
            horizon,
            as_t(space.low),
            as_t(space.high),
            ILQRConfig(max_iterations=max_iterations),
            replan_every=replan_every,
            initialisers=[WarmStart(), *([Restarts(RestartsConfig(restarts))] if restarts else [])],
            seed=seed,
        )
        self._batch: int | None = None

    def reset(self, goal_obs: np.ndarray, batch_size: int) -> None:
        """New episodes; the goal is the env's goal state (``goal_obs`` is only checked)."""
        check_image(goal_obs, self.obs_shape, "the goal image")
        self._batch = batch_size
        self.planner.reset(batch_size)

    def act(self, obs: np.ndarray, states: np.ndarray) -> np.ndarray:
        """Actions float32 ``(B, m)`` planned from the true ``states (B, d)``."""
        check_batch(obs, self.obs_shape, self._batch)
        z = torch.as_tensor(np.asarray(states, dtype=np.float64))
        if z.ndim != 2 or z.shape[1] != self.env.state_space.shape[0]:
            raise UserError(
                f"states must be (B, {self.env.state_space.shape[0]}), got {tuple(z.shape)}"
            )
        return self.planner.plan(z).numpy().astype(np.float32)


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float64)
