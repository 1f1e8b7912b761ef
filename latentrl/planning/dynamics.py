"""Dynamics as planners see them: one step and its local linearisation, batched.

Conventions shared by every implementation of :class:`Dynamics`:

* rows are independent problems: row ``r`` of the output depends on row ``r`` of the input only;
* planners call with batches that stack copies of their problem batch in the leading dimension
  (all time steps of a trajectory at once, all line-search step sizes at once). Row ``r`` of
  such a batch belongs to problem ``r mod P``, ``P`` the number of problems (``Tensor.repeat``
  order), so dynamics with per-problem parameters (:class:`LinearDynamics` with batched
  matrices) tile them that way. Dynamics without per-problem parameters need not care;
* optionally, ``select(index)`` returns the dynamics of the problems at ``index`` only
  (:class:`SelectableDynamics`). Planners then step and linearise only the problems still
  iterating; without it they carry every problem's rows to the end (same results, more work).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

from latentrl.errors import UserError
from latentrl.planning.smallmat import small_matmul, small_matvec

# Pendulum-v1's constants (gymnasium/envs/classic_control/pendulum.py); the same values as
# latentrl.envs.pendulum, repeated here so that planning does not import the environments.
PENDULUM_GRAVITY = 10.0
PENDULUM_MASS = 1.0
PENDULUM_LENGTH = 1.0
PENDULUM_DT = 0.05
PENDULUM_MAX_SPEED = 8.0
PENDULUM_MAX_TORQUE = 2.0


@runtime_checkable
class Dynamics(Protocol):
    """Discrete-time dynamics ``z' = f(z, u)`` with local linearisations."""

    def step(self, z: Tensor, u: Tensor) -> Tensor:
        """Next states: ``z (B, n)``, ``u (B, m)`` -> ``(B, n)``."""
        ...

    def linearize(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(A (B, n, n), B (B, n, m), c (B, n))`` with ``f(z', u') ≈ A z' + B u' + c``
        near ``(z, u)``; so ``c = f(z, u) - A z - B u``."""
        ...


class SelectableDynamics(Protocol):
    """Dynamics that can be restricted to some of their problems (see the module docstring)."""

    def select(self, index: Tensor) -> Dynamics:
        """The dynamics of problems ``index`` (1-D int64), in its order: row ``r`` of a call
        then belongs to problem ``index[r mod len(index)]`` of this one. Dynamics without
        per-problem parameters return themselves."""
        ...


def can_select(dynamics: Dynamics) -> bool:
    """Whether ``dynamics`` has :meth:`SelectableDynamics.select` (an attribute test: fast,
    unlike ``isinstance`` with a protocol)."""
    return callable(getattr(dynamics, "select", None))


def select_problems(dynamics: Dynamics, index: Tensor) -> Dynamics | None:
    """``dynamics.select(index)``, or None where ``dynamics`` has no ``select``."""
    select: Callable[[Tensor], Dynamics] | None = getattr(dynamics, "select", None)
    return select(index) if callable(select) else None


class FunctionDynamics:
    """Any batched torch function ``f(z (B, n), u (B, m)) -> (B, n)`` as :class:`Dynamics`.

    Jacobians are exact, from ``torch.func`` (``vmap`` over rows of ``jacfwd``/``jacrev``), so
    ``fn`` must be composable with ``torch.func``: no in-place updates of inputs, no ``.item()``,
    no data-dependent Python control flow. ``"reverse"`` (``n`` backward passes) measured 4x
    faster than ``"forward"`` (``n + m`` dual-number passes) on the pendulum, torch 2.13 CPU.
    """

    def __init__(
        self,
        fn: Callable[[Tensor, Tensor], Tensor],
        jacobian: Literal["forward", "reverse"] = "reverse",
    ) -> None:
        if jacobian not in ("forward", "reverse"):
            raise UserError(f"jacobian must be 'forward' or 'reverse', got {jacobian!r}")
        self.fn = fn
        jac = torch.func.jacfwd if jacobian == "forward" else torch.func.jacrev

        def single(z1: Tensor, u1: Tensor) -> tuple[Tensor, Tensor]:
            out = fn(z1.unsqueeze(0), u1.unsqueeze(0)).squeeze(0)
            return out, out  # the value rides along as aux: one evaluation gives f and J

        self._jacobians = torch.func.vmap(jac(single, argnums=(0, 1), has_aux=True))

    def step(self, z: Tensor, u: Tensor) -> Tensor:
        """Next states: ``z (B, n)``, ``u (B, m)`` -> ``(B, n)``."""
        return self.fn(z, u)

    def linearize(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(A (B, n, n), B (B, n, m), c (B, n))``, exact Jacobians at ``(z, u)``."""
        (A, B), f = self._jacobians(z, u)
        return A, B, f - small_matvec(A, z) - small_matvec(B, u)

    def select(self, index: Tensor) -> FunctionDynamics:
        """Itself: ``fn`` has no per-problem parameters."""
        return self


class LinearDynamics:
    """Time-invariant affine dynamics ``z' = A z + B u + c``.

    ``A (n, n)``, ``B (n, m)``, ``c (n,)`` shared by all rows, or ``(P, n, n)``, ``(P, n, m)``,
    ``(P, n)`` per problem (row ``r`` of a call uses problem ``r mod P``). ``c`` defaults to 0.
    Parameters are moved to the dtype and device of the states on each call.
    """

    def __init__(self, A: Tensor, B: Tensor, c: Tensor | None = None) -> None:
        if A.ndim not in (2, 3) or A.shape[-1] != A.shape[-2]:
            raise UserError(f"A must be (n, n) or (P, n, n), got {tuple(A.shape)}")
        n = A.shape[-1]
        if B.ndim != A.ndim or B.shape[-2] != n:
            raise UserError(f"B must be (n, m) or (P, n, m) like A, got {tuple(B.shape)}")
        if c is None:
            c = torch.zeros(A.shape[:-1], dtype=A.dtype, device=A.device)
        if c.shape != A.shape[:-1]:
            raise UserError(f"c must have shape {tuple(A.shape[:-1])}, got {tuple(c.shape)}")
        if A.ndim == 3 and not (A.shape[0] == B.shape[0] == c.shape[0]):
            raise UserError("batched A, B and c must have the same leading dimension P")
        self.A, self.B, self.c = A, B, c
        self._cached: tuple[tuple[torch.dtype, torch.device], tuple[Tensor, ...]] | None = None

    def _params(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Parameters in the dtype/device of ``like``, converted once and cached."""
        key = (like.dtype, like.device)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, tuple(p.to(like) for p in (self.A, self.B, self.c)))
        return self._cached[1]

    def _rows(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Parameters as ``(rows, ...)`` tensors for ``like (rows, n)``."""
        A, B, c = self._params(like)
        rows = like.shape[0]
        if A.ndim == 2:
            return A.expand(rows, -1, -1), B.expand(rows, -1, -1), c.expand(rows, -1)
        P = A.shape[0]
        if rows % P != 0:
            raise UserError(
                f"LinearDynamics holds {P} problems; a batch of {rows} rows is not a multiple"
            )
        reps = rows // P
        return A.repeat(reps, 1, 1), B.repeat(reps, 1, 1), c.repeat(reps, 1)

    def step(self, z: Tensor, u: Tensor) -> Tensor:
        """Next states: ``z (B, n)``, ``u (B, m)`` -> ``(B, n)``."""
        A, B, c = self._params(z)
        if A.ndim == 2:  # shared: plain matrix products, no per-row copies
            return small_matmul(z, A.mT) + small_matmul(u, B.mT) + c
        A, B, c = self._rows(z)
        return small_matvec(A, z) + small_matvec(B, u) + c

    def linearize(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(A (B, n, n), B (B, n, m), c (B, n))``: the model itself."""
        return self._rows(z)

    def select(self, index: Tensor) -> LinearDynamics:
        """Itself when shared, else the per-problem parameters at ``index``."""
        if self.A.ndim == 2:
            return self
        index = index.to(self.A.device)
        selected = LinearDynamics(self.A[index], self.B[index], self.c[index])
        if self._cached is not None:  # converted already: so a compiled step sees one state
            key, params = self._cached
            selected._cached = (key, tuple(p[index.to(p.device)] for p in params))
        return selected


def rollout(dynamics: Dynamics, z0: Tensor, u: Tensor) -> Tensor:
    """Open-loop states ``(B, T + 1, n)`` from ``z0 (B, n)`` under ``u (B, T, m)``."""
    zs = [z0]
    for t in range(u.shape[1]):
        zs.append(dynamics.step(zs[-1], u[:, t]))
    return torch.stack(zs, dim=1)


def pendulum_dynamics(
    z: Tensor,
    u: Tensor,
    *,
    gravity: float = PENDULUM_GRAVITY,
    mass: float = PENDULUM_MASS,
    length: float = PENDULUM_LENGTH,
    dt: float = PENDULUM_DT,
    max_speed: float = PENDULUM_MAX_SPEED,
    max_torque: float = PENDULUM_MAX_TORQUE,
) -> Tensor:
    """Gymnasium Pendulum-v1 physics in torch: ``z (B, 2)``, ``u (B, 1)`` -> ``(B, 2)``.

    State ``(θ, θ̇)`` in rad and rad/s, θ = 0 upright, θ not wrapped (plan with
    ``QuadraticCost(angle_dims=(0,))`` to wrap the angle in the cost). Torque clipped to ±2 and
    θ̇ to ±8 as the env does, semi-implicit Euler with dt = 0.05 s. Works with ``torch.func``.
    The keywords are Pendulum-v0's physics kwargs (``PixelPendulumEnv.physics``); their
    defaults are Pendulum-v1's.
    """
    th, thdot = z[..., 0], z[..., 1]
    torque = u[..., 0].clamp(-max_torque, max_torque)
    accel = 3 * gravity / (2 * length) * torch.sin(th) + 3.0 / (mass * length**2) * torque
    new_thdot = (thdot + accel * dt).clamp(-max_speed, max_speed)
    return torch.stack([th + new_thdot * dt, new_thdot], dim=-1)
