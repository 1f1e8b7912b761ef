"""Batched, box-constrained iLQR (control-limited DDP, Tassa, Mansard & Todorov 2014).

Solves ``B`` problems at once, on any device and float dtype:

    min_u  Σ_{t<T} (z_t - g)ᵀ Q (z_t - g) + u_tᵀ R u_t  +  (z_T - g)ᵀ Q_f (z_T - g)
    s.t.   z_{t+1} = f(z_t, u_t),  z_0 given,  u_low <= u_t <= u_high.

Each iteration linearises the dynamics along the current trajectory (all time steps in one
batched ``linearize`` call), runs a backward Riccati pass whose per-step control problem is a
box QP (:mod:`latentrl.planning.boxqp`), then a backtracking line search over closed-loop
rollouts ``u = clamp(ū + α k + K (z - z̄))``. Levenberg-Marquardt regularisation ``Q_uu + μI``,
the step acceptance and the convergence test are per problem: a problem that has converged
(or given up) stops changing while the others go on.

The cost, with its angle wrapping (the pendulum oracle plans on unwrapped ``(θ, θ̇)``), is in
:mod:`latentrl.planning.cost`; its public names are re-exported here for older imports.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple, TypeVar

import torch
from torch import Tensor

from latentrl.errors import UserError
from latentrl.planning.boxqp import (
    ENUMERATE_MAX,
    BoxQPOptions,
    BoxQPStatus,
    box_qp,
    solve_free,
)
from latentrl.planning.cost import (
    BatchCost,
    QuadraticCost,
    batch_cost,
    residual,
    total_cost,
    trajectory_cost,
    wrap_angles,
)
from latentrl.planning.dynamics import Dynamics, can_select, rollout, select_problems
from latentrl.planning.smallmat import small_matmul, small_matvec

__all__ = [
    "ILQRConfig",
    "ILQRResult",
    "QuadraticCost",
    "RiccatiStep",
    "control_bounds",
    "riccati_step",
    "solve_ilqr",
    "trajectory_cost",
    "wrap_angles",
]


def _default_alphas() -> tuple[float, ...]:
    return tuple(10.0 ** (-3.0 * i / 10) for i in range(11))  # 1 ... 1e-3, as Tassa's iLQG


@dataclass(frozen=True)
class ILQRConfig:
    """Iteration, regularisation and line-search settings; the horizon is ``u_init.shape[1]``."""

    max_iterations: int = 50
    tolerance: float = 1e-6
    """Converged when an accepted step lowers the cost by less than ``tolerance · |J|``, or
    the predicted decrease of a full step is that small (with μ back at zero), or a step
    predicted to gain that little is refused. Never below the dtype's resolution: with
    ``eps = torch.finfo(dtype).eps`` (float32 1.2e-7), ``max(tolerance, eps) · |J|`` is about
    one unit in the last place of ``J``, a change the line search cannot see."""
    mu_init: float = 0.0
    mu_min: float = 1e-6
    """Smallest non-zero μ: an increase starts here, a decrease below it gives μ = 0."""
    mu_max: float = 1e10
    """A problem whose μ grows past this gives up (``converged`` False)."""
    mu_factor: float = 1.6
    alphas: tuple[float, ...] = field(default_factory=_default_alphas)
    """Line-search step sizes, largest first; the first with sufficient decrease is taken."""
    parallel_line_search: bool = False
    """Roll out all step sizes in one batch of ``len(alphas) · B`` rows (one call: good on a
    GPU). Otherwise the full step first, for every problem, and then, for the problems that
    refused it, the other step sizes: all at once where the dynamics can select problems
    (:class:`~latentrl.planning.SelectableDynamics`), else one after another until every
    problem has accepted one. Either way each problem takes its largest acceptable step."""
    min_decrease_ratio: float = 1e-4
    """Accept when actual / predicted decrease exceeds this (Armijo-like)."""
    box_qp_options: BoxQPOptions = field(default_factory=BoxQPOptions)
    compile: bool = False
    """Run the backward pass's Riccati step, the line search's closed-loop step (with
    ``dynamics.step``) and the line search's choice of step sizes through ``torch.compile``:
    fused kernels instead of ~100 small ops per time step (for 2 <= m <= 3 the box QP then
    enumerates its faces, with no branch on the data). The first solves of each (n, m, dtype,
    device, dynamics) compile for seconds to a minute; worth it where the same shapes are
    solved many times (MPC). torch recompiles a function at most
    ``torch._dynamo.config.recompile_limit`` times (8) per process, then warns and runs it
    eagerly."""

    def __post_init__(self) -> None:
        if self.max_iterations < 1 or self.tolerance < 0:
            raise UserError("ILQRConfig: max_iterations must be >= 1 and tolerance >= 0")
        if not self.alphas or any(not 0 < a <= 1 for a in self.alphas):
            raise UserError(f"ILQRConfig: alphas must be in (0, 1], got {self.alphas}")
        if not (0 <= self.mu_init <= self.mu_max and self.mu_min > 0 and self.mu_factor > 1):
            raise UserError("ILQRConfig: need 0 <= mu_init <= mu_max, mu_min > 0, mu_factor > 1")


class ILQRResult(NamedTuple):
    """Solutions of a batch of problems. ``K`` and ``k`` come from the last backward pass (its
    trajectory is the returned one unless the last iteration moved it)."""

    u: Tensor  # controls (B, T, m)
    z: Tensor  # predicted states (B, T + 1, n) under u, z[:, 0] = z0
    K: Tensor  # feedback gains (B, T, m, n), zero rows where a control is clamped
    k: Tensor  # feed-forward steps (B, T, m)
    cost: Tensor  # total cost of (z, u), (B,)
    iterations: Tensor  # iterations each problem ran, int64 (B,)
    converged: Tensor  # bool (B,): False after max_iterations or giving up (μ > mu_max)


class RiccatiStep(NamedTuple):
    """One backward step: gains, value expansion at ``t`` and predicted-decrease terms."""

    k: Tensor  # (B, m, 1)
    K: Tensor  # (B, m, n)
    V_z: Tensor  # (B, n, 1)
    V_zz: Tensor  # (B, n, n)
    dv: Tensor  # (B, 2): kᵀQ_u and ½ kᵀQ_uu k; a step α k changes the cost by about
    # α dv_0 + α² dv_1 (the line search's prediction, with the unregularised Q_uu)
    status: Tensor  # (B,) BoxQPStatus of the step's QP; NOT_POSITIVE_DEFINITE: a failure


def riccati_step(
    F: Tensor,
    l_x: Tensor,
    l_xx: Tensor,
    V_z: Tensor,
    V_zz: Tensor,
    reg: Tensor,
    du_low: Tensor,
    du_high: Tensor,
    k_warm: Tensor | None = None,
    qp_options: BoxQPOptions | None = None,
) -> RiccatiStep:
    """Control-limited Riccati step from ``t + 1`` to ``t``, in the joint variable x = (z, u).

    ``F = [A B] (B, n, n + m)``; stage cost gradient ``l_x = [l_z; l_u] (B, n + m, 1)`` and
    Hessian ``l_xx (B, n + m, n + m)`` (a state-control cross term is allowed); next value
    ``V_z (B, n, 1)``, ``V_zz (B, n, n)`` (vectors are columns: each product is one batched
    matmul); Levenberg-Marquardt term
    ``reg = μI (B, m, m)``; bounds on the control change ``du_low, du_high`` and the QP warm
    start ``k_warm`` are ``(B, m)``. With ``Q_x = l_x + Fᵀ V_z``, ``Q_xx = l_xx + Fᵀ V_zz F``:
    ``k = argmin ½ kᵀ(Q_uu + μI)k + Q_uᵀk`` within the bounds (box QP), ``K = -(Q_uu + μI)_ff⁻¹
    Q_uz`` on free rows and 0 on clamped ones, and with ``M = [I; K]`` the value update
    ``V_zz = Mᵀ Q_xx M``, ``V_z = Mᵀ Q_x + Mᵀ Q_xu k`` uses the unregularised ``Q_uu``
    (Tassa et al. 2014, eq. 11).
    """
    n = F.shape[-2]
    Ft = F.mT
    Q_x = l_x + small_matmul(Ft, V_z)
    Q_xx = l_xx + small_matmul(small_matmul(Ft, V_zz), F)
    Q_u, Q_uu, Q_uz = Q_x[:, n:], Q_xx[:, n:, n:], Q_xx[:, n:, :n]
    qp = box_qp(Q_uu + reg, Q_u.squeeze(-1), du_low, du_high, k_warm, qp_options)
    k = qp.x.unsqueeze(-1)
    K = -solve_free(qp.chol, qp.free, Q_uz)
    eye = torch.eye(n, dtype=F.dtype, device=F.device).expand(K.shape[0], n, n)
    M = torch.cat([eye, K], dim=1)  # (B, n + m, n): dz ↦ (dz, K dz)
    MtQ = small_matmul(M.mT, Q_xx)
    V_zz = small_matmul(MtQ, M)
    V_z = small_matmul(M.mT, Q_x) + small_matmul(MtQ[:, :, n:], k)
    dv = torch.cat([small_matmul(k.mT, Q_u), 0.5 * small_matmul(k.mT, small_matmul(Q_uu, k))], -1)
    return RiccatiStep(k, K, V_z, 0.5 * (V_zz + V_zz.mT), dv.view(-1, 2), qp.status)


_COMPILED: dict[Callable[..., object], Callable[..., object]] = {}


_F = TypeVar("_F", bound=Callable[..., object])


def _maybe_compiled(fn: _F, compiled: bool) -> _F:
    """``fn``, or its ``torch.compile`` (made once per function, shared by every solve)."""
    if not compiled:
        return fn
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn)
    return _COMPILED[fn]  # type: ignore[return-value]


def _graph_friendly(options: BoxQPOptions, m: int) -> BoxQPOptions:
    """``options`` with face enumeration where ``"auto"`` would branch on the data."""
    if options.method == "auto" and 2 <= m <= ENUMERATE_MAX:
        return replace(options, method="enumerate")
    return options


def _feedback_step(
    dynamics: Dynamics, offset: Tensor, K: Tensor, z: Tensor, low: Tensor, high: Tensor
) -> tuple[Tensor, Tensor]:
    """``u = clamp(offset + K z)`` and the next state ``f(z, u)``."""
    u = torch.clamp(offset + small_matvec(K, z), low, high)
    return dynamics.step(z, u), u


def _closed_loop_rollout(
    dynamics: Dynamics,
    z0: Tensor,
    offset: Tensor,
    K: Tensor,
    low: Tensor,
    high: Tensor,
    step: Callable[..., tuple[Tensor, Tensor]] = _feedback_step,
) -> tuple[Tensor, Tensor]:
    """States and controls of ``u_t = clamp(offset_t + K_t z_t)`` from ``z0 (R, n)``, where
    ``offset = ū + α k - K z̄`` ``(R, T, m)``; rows as in ``z0``."""
    zs, us = [z0], []
    for off, K_t in zip(offset.unbind(1), K.unbind(1), strict=True):
        z_next, u_t = step(dynamics, off, K_t, zs[-1], low, high)
        us.append(u_t)
        zs.append(z_next)
    return torch.stack(zs, dim=1), torch.stack(us, dim=1)


def control_bounds(
    u_low: Tensor | float | None, u_high: Tensor | float | None, batch: int, m: int, like: Tensor
) -> tuple[Tensor, Tensor]:
    """Bounds as ``(B, m)`` tensors like ``like``: from a float, ``(m,)`` or ``(B, m)``;
    ``None`` is unbounded (``±inf``). Raises UserError on bad shapes or ``low > high``."""

    def one(b: Tensor | float | None, default: float, name: str) -> Tensor:
        t = torch.as_tensor(default if b is None else b, dtype=like.dtype, device=like.device)
        if t.shape not in ((), (m,), (batch, m)):
            raise UserError(
                f"{name} must be a float, ({m},) or ({batch}, {m}), got {tuple(t.shape)}"
            )
        return t.expand(batch, m)

    low, high = one(u_low, -math.inf, "u_low"), one(u_high, math.inf, "u_high")
    if bool((low > high).any()):
        raise UserError("u_low must be <= u_high in every dimension")
    return low, high


class _Schedule:
    """Per-problem Levenberg-Marquardt μ with Tassa's accelerating factor."""

    def __init__(self, config: ILQRConfig, like: Tensor) -> None:
        self.cfg = config
        self.mu = torch.full(like.shape[:1], config.mu_init, dtype=like.dtype, device=like.device)
        self.dmu = torch.ones_like(self.mu)

    def increase(self, mask: Tensor) -> None:
        if not bool(mask.any()):
            return
        f = self.cfg.mu_factor
        dmu = torch.clamp(self.dmu * f, min=f)
        mu = torch.clamp(self.mu * dmu, min=self.cfg.mu_min)
        self.dmu, self.mu = torch.where(mask, dmu, self.dmu), torch.where(mask, mu, self.mu)

    def decrease(self, mask: Tensor) -> None:
        if not bool(mask.any()):
            return
        f = self.cfg.mu_factor
        dmu = torch.clamp(self.dmu / f, max=1 / f)
        mu = self.mu * dmu
        mu = torch.where(mu < self.cfg.mu_min, 0.0, mu)
        self.dmu, self.mu = torch.where(mask, dmu, self.dmu), torch.where(mask, mu, self.mu)


class _SweepInputs(NamedTuple):
    """A backward pass's inputs besides the stage Hessian: per time step (tuples over ``t``)
    or shared by all steps."""

    F: tuple[Tensor, ...]  # [A_t B_t] (R, n, n + m)
    l_x: tuple[Tensor, ...]  # stage cost gradient (R, n + m, 1)
    du_low: tuple[Tensor, ...]  # bounds on the control change (R, m)
    du_high: tuple[Tensor, ...]
    k_warm: tuple[Tensor, ...]  # box QP warm starts (R, m)
    reg: Tensor  # μI (R, m, m)
    V_z: Tensor  # terminal value gradient (R, n, 1)
    V_zz: Tensor  # terminal value Hessian (R, n, n)


def _stage_hessian(c: BatchCost) -> Tensor:
    """The stage cost's Hessian in x = (z, u), ``blockdiag(2Q, 2R) (B, n + m, n + m)``."""
    (batch, n, _), m = c.Q.shape, c.R.shape[-1]
    l_xx = c.Q.new_zeros(batch, n + m, n + m)
    l_xx[:, :n, :n], l_xx[:, n:, n:] = 2 * c.Q, 2 * c.R
    return l_xx


def _sweep_inputs(
    c: BatchCost,
    A: Tensor,
    B: Tensor,
    z: Tensor,
    u: Tensor,
    mu: Tensor,
    low: Tensor,
    high: Tensor,
    k_warm: Tensor,
) -> _SweepInputs:
    """The backward pass's inputs along ``z (R, T + 1, n)``, ``u (R, T, m)`` with the
    linearisation ``A (T, R, n, n)``, ``B (T, R, n, m)``."""
    m = u.shape[-1]
    r = residual(c, z)
    # Q, R symmetric, so r Q = (Q r)ᵀ for all t at once (bmm: the fewest ops at small sizes).
    l_x = 2 * torch.cat([torch.bmm(r[:, :-1], c.Q), torch.bmm(u, c.R)], dim=-1).unsqueeze(-1)
    V_zz = 2 * c.Q_f
    return _SweepInputs(
        F=torch.cat([A, B], dim=-1).unbind(0),
        l_x=l_x.unbind(1),
        du_low=(low.unsqueeze(1) - u).unbind(1),
        du_high=(high.unsqueeze(1) - u).unbind(1),
        k_warm=k_warm.unbind(1),
        reg=mu.view(-1, 1, 1) * torch.eye(m, dtype=u.dtype, device=u.device),
        V_z=torch.bmm(V_zz, r[:, -1:].mT),
        V_zz=V_zz,
    )


def _sweep_summary(steps: list[RiccatiStep]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gains ``k (R, T, m)``, ``K (R, T, m, n)``, predicted-decrease terms ``dv (R, 2)`` (a step
    ``α k`` changes the cost by about ``α dv_0 + α² dv_1``) and ok flags ``(R,)`` of a
    backward pass's steps, in time order."""
    k = torch.stack([s.k for s in steps], dim=1).squeeze(-1)  # (R, T, m)
    dv = torch.stack([s.dv for s in steps]).sum(0)
    ok = (torch.stack([s.status for s in steps]) != BoxQPStatus.NOT_POSITIVE_DEFINITE).all(0)
    return k, torch.stack([s.K for s in steps], dim=1), dv, ok


def _backward_pass(
    kernels: _Kernels,
    rows: Tensor | None,
    c: BatchCost,
    l_xx: Tensor,
    A: Tensor,
    B: Tensor,
    z: Tensor,
    u: Tensor,
    mu: Tensor,
    low: Tensor,
    high: Tensor,
    k_warm: Tensor,
    qp_options: BoxQPOptions,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gains ``k (B, T, m)``, ``K (B, T, m, n)``, predicted-decrease terms ``dv (B, 2)`` and
    ok flags ``(B,)`` along ``z (B, T + 1, n)``, ``u (B, T, m)``: the Riccati step from
    ``T - 1`` down to 0, for the problems ``rows`` only (None: all), whose linearisation
    ``A, B`` is ``(T, R, ...)``. The other problems get zero gains, zero predicted decrease and
    ok flags: solved problems cost nothing while a few go on."""
    batch = u.shape[0]
    if rows is not None:
        c = c.rows(rows)
    z, u, mu, low, high, k_taken, l_xx = (
        _take(x, rows) for x in (z, u, mu, low, high, k_warm, l_xx)
    )
    inputs = _sweep_inputs(c, A, B, z, u, mu, low, high, k_taken)
    V_z, V_zz = inputs.V_z, inputs.V_zz
    steps = []
    # A failed step leaves NaNs in its own rows only (every op is row-wise); status flags it.
    for t in reversed(range(u.shape[1])):
        s = kernels.riccati_step(
            inputs.F[t],
            inputs.l_x[t],
            l_xx,
            V_z,
            V_zz,
            inputs.reg,
            inputs.du_low[t],
            inputs.du_high[t],
            inputs.k_warm[t],
            qp_options,
        )
        V_z, V_zz = s.V_z, s.V_zz
        steps.append(s)
    steps.reverse()
    k, K, dv, ok = _sweep_summary(steps)
    if rows is None:
        return k, K, dv, ok
    return (
        _put(torch.zeros_like(k_warm), rows, k),
        _put(K.new_zeros((batch, *K.shape[1:])), rows, K),
        _put(dv.new_zeros(batch, 2), rows, dv),
        _put(ok.new_ones(batch), rows, ok),
    )


def _take(x: Tensor, rows: Tensor | None) -> Tensor:
    """``x[rows]``, or ``x`` itself for ``rows=None`` (all problems)."""
    return x if rows is None else x[rows]


def _put(full: Tensor, rows: Tensor | None, part: Tensor) -> Tensor:
    """``full`` with ``full[rows] = part``, or ``part`` for ``rows=None``."""
    return part if rows is None else full.index_copy(0, rows, part)


def _pick_steps(
    c: BatchCost,
    z_try: Tensor,
    u_try: Tensor,
    z: Tensor,
    u: Tensor,
    J: Tensor,
    dv: Tensor,
    alphas: Tensor,
    searching: Tensor,
    min_decrease_ratio: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For ``R`` problems with current ``z (R, T + 1, n)``, ``u (R, T, m)``, ``J (R,)`` and
    predicted-decrease terms ``dv (R, 2)``, and their rollouts at the step sizes ``alphas
    (reps,)``, ``z_try (reps, R, T + 1, n)``, ``u_try (reps, R, T, m)``: where a ``searching``
    problem has a step size with sufficient decrease, the largest one's ``z, u, J``, else the
    current ones; and that mask, ``take (R,)``."""
    J_try = total_cost(c, z_try, u_try)  # (reps, R)
    a = alphas.unsqueeze(-1)
    expected = -a * (dv[:, 0] + a * dv[:, 1])
    decrease = J - J_try
    ratio = torch.where(expected > 0, decrease / expected, torch.sign(decrease))
    good = (ratio > min_decrease_ratio) & torch.isfinite(J_try)
    first = torch.argmax(good.to(torch.int8), dim=0)  # largest acceptable step
    take = good.any(0) & searching
    each = torch.arange(take.shape[0], device=take.device)

    def pick(current: Tensor, tried: Tensor) -> Tensor:
        return torch.where(take.view(-1, *([1] * (current.ndim - 1))), tried[first, each], current)

    return pick(z, z_try), pick(u, u_try), pick(J, J_try), take


def _problems(dynamics: Dynamics, mask: Tensor) -> tuple[Dynamics, Tensor | None]:
    """The dynamics of the problems in ``mask (B,)`` and their indices, or ``dynamics`` and
    None (meaning all problems) when every problem is in it or ``dynamics`` cannot select."""
    if bool(mask.all()):
        return dynamics, None
    rows = mask.nonzero().squeeze(-1)
    selected = select_problems(dynamics, rows)
    return (dynamics, None) if selected is None else (selected, rows)


def _line_search(
    kernels: _Kernels,
    dynamics: Dynamics,
    c: BatchCost,
    z_bar: Tensor,
    u_bar: Tensor,
    J: Tensor,
    k: Tensor,
    K: Tensor,
    dv: Tensor,
    low: Tensor,
    high: Tensor,
    active: Tensor,
    config: ILQRConfig,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per active problem, the first step size with sufficient decrease: new ``z, u, J`` (the
    old ones where none) and the acceptance mask ``(B,)``; stops once every active problem
    has accepted a step (see :attr:`ILQRConfig.parallel_line_search` for the order). Step
    sizes are rolled out for the problems still searching only where the dynamics can select
    problems (:func:`select_problems`), else for all of them (the others ride along as rows
    and are never accepted)."""
    alphas = torch.tensor(config.alphas, dtype=J.dtype, device=J.device)
    z_new, u_new, J_new = z_bar, u_bar, J
    accepted = ~active  # marks the problems that need no more step sizes
    base = u_bar - small_matvec(K, z_bar[:, :-1])  # ū - K z̄: the feedback's constant part
    if config.parallel_line_search:
        groups = [alphas]
    elif can_select(dynamics):  # the rest at once, for the few that refused α = 1
        groups = [alphas[:1], alphas[1:]]
    else:  # the rest one by one: every row rides along each time
        groups = list(alphas.split(1))
    for a in groups:
        step_dynamics, rows = _problems(dynamics, ~accepted)
        searching = _take(~accepted, rows)
        batch, T, m = _take(u_bar, rows).shape
        reps = a.shape[0]

        def tile(x: Tensor, reps: int = reps, rows: Tensor | None = rows) -> Tensor:
            """Rows stacked once per step size: row j·R + b is problem b (of ``rows``)."""
            x = _take(x, rows)
            return x if reps == 1 else x.repeat(reps, *([1] * (x.ndim - 1)))

        offset = _take(base, rows) + a.view(reps, 1, 1, 1) * _take(k, rows)
        z_try, u_try = _closed_loop_rollout(
            step_dynamics,
            tile(z_bar[:, 0]),
            offset.reshape(reps * batch, T, m),
            tile(K),
            tile(low),
            tile(high),
            kernels.feedback_step,
        )
        z_rows, u_rows, J_rows, take = kernels.pick_steps(
            c if rows is None else c.rows(rows),
            z_try.view(reps, batch, *z_try.shape[1:]),
            u_try.view(reps, batch, T, m),
            _take(z_new, rows),  # the current z̄, ū, J of every problem still searching
            _take(u_new, rows),
            _take(J_new, rows),
            _take(dv, rows),
            a,
            searching,
            config.min_decrease_ratio,
        )
        z_new, u_new, J_new = (
            _put(z_new, rows, z_rows),
            _put(u_new, rows, u_rows),
            _put(J_new, rows, J_rows),
        )
        accepted = _put(accepted, rows, _take(accepted, rows) | take)
        if bool(accepted.all()):
            break
    return z_new, u_new, J_new, accepted & active


def _linearize(
    dynamics: Dynamics, z: Tensor, u: Tensor, rows: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``A (T, R, n, n)``, ``B (T, R, n, m)`` of the problems ``rows`` (None: all ``B``) along
    ``z (B, T + 1, n)``, ``u (B, T, m)``, all time steps in one call; dynamics that cannot
    select problems are linearised for all of them."""
    selected = dynamics if rows is None else select_problems(dynamics, rows)
    if selected is None:
        A, Bm = _linearize(dynamics, z, u, None)
        return A[:, rows], Bm[:, rows]
    z, u = _take(z, rows), _take(u, rows)
    R, T, m = u.shape
    n = z.shape[-1]
    # Time-major rows (t·R + b) so that per-problem dynamics see problem b in row r mod R.
    zt = z[:, :-1].transpose(0, 1).reshape(T * R, n)
    ut = u.transpose(0, 1).reshape(T * R, m)
    A, Bm, _ = selected.linearize(zt, ut)
    return A.view(T, R, n, n), Bm.view(T, R, n, m)


class _Kernels(NamedTuple):
    """The solver's batched pieces, plain or each through ``torch.compile``
    (:attr:`ILQRConfig.compile`): the Python around them only loops over time steps and
    selects problems."""

    riccati_step: Callable[..., RiccatiStep]
    feedback_step: Callable[..., tuple[Tensor, Tensor]]
    pick_steps: Callable[..., tuple[Tensor, Tensor, Tensor, Tensor]]


def _kernels(compiled: bool) -> _Kernels:
    functions = (riccati_step, _feedback_step, _pick_steps)
    return _Kernels(*(_maybe_compiled(fn, compiled) for fn in functions))


def solve_ilqr(
    dynamics: Dynamics,
    z0: Tensor,
    u_init: Tensor,
    cost: QuadraticCost,
    u_low: Tensor | float | None = None,
    u_high: Tensor | float | None = None,
    config: ILQRConfig | None = None,
) -> ILQRResult:
    """Solve ``B`` box-constrained quadratic-cost problems from ``z0 (B, n)``.

    ``u_init (B, T, m)`` is the warm start (clamped into the box) and fixes the horizon ``T``.
    Bounds: float, ``(m,)`` or ``(B, m)``; ``None`` is unbounded. Runs in the dtype and on the
    device of ``z0``.
    """
    cfg = config or ILQRConfig()
    if z0.ndim != 2 or u_init.ndim != 3 or u_init.shape[0] != z0.shape[0] or not u_init.shape[1]:
        raise UserError(
            "expected z0 (B, n) and u_init (B, T, m) with the same B and T >= 1, got "
            f"{tuple(z0.shape)} and {tuple(u_init.shape)}"
        )
    if not z0.is_floating_point():
        raise UserError(f"z0 must be a floating-point tensor, got {z0.dtype}")
    batch, T, m = u_init.shape
    n = z0.shape[1]
    c = batch_cost(cost, batch, n, m, z0)
    low, high = control_bounds(u_low, u_high, batch, m, z0)
    u = torch.clamp(u_init.to(z0), low.unsqueeze(1), high.unsqueeze(1))
    z1 = dynamics.step(z0, u[:, 0])
    if z1.shape != z0.shape:
        raise UserError(
            f"dynamics.step must map (B, {n}), (B, {m}) to (B, {n}) states, it gave shape "
            f"{tuple(z1.shape)}"
        )
    z = torch.cat([z0.unsqueeze(1), rollout(dynamics, z1, u[:, 1:])], dim=1)  # (B, T + 1, n)
    J = total_cost(c, z, u)
    if not bool(torch.isfinite(J).all()):
        raise UserError(
            f"dynamics.step must give finite states; the initial rollout's cost is {J.tolist()}"
        )

    kernels = _kernels(cfg.compile)
    qp_options = _graph_friendly(cfg.box_qp_options, m) if cfg.compile else cfg.box_qp_options
    l_xx = _stage_hessian(c)
    sched = _Schedule(cfg, z0)
    active = torch.ones(batch, dtype=torch.bool, device=z0.device)
    converged = torch.zeros_like(active)
    iterations = torch.zeros(batch, dtype=torch.long, device=z0.device)
    k = torch.zeros_like(u)
    K = torch.zeros(batch, T, m, n, dtype=u.dtype, device=u.device)
    tolerance = max(cfg.tolerance, torch.finfo(z0.dtype).eps)
    for _ in range(cfg.max_iterations):
        if not bool(active.any()):
            break
        iterations += active
        rows = None if bool(active.all()) else active.nonzero().squeeze(-1)
        A, Bm = _linearize(dynamics, z, u, rows)

        while True:  # raise μ where Q_uu + μI is indefinite, as often as needed
            k_new, K_new, dv, ok = _backward_pass(
                kernels, rows, c, l_xx, A, Bm, z, u, sched.mu, low, high, k, qp_options
            )
            failed = active & ~ok
            if not bool(failed.any()):
                break
            sched.increase(failed)
            active = active & ~(failed & (sched.mu > cfg.mu_max))
        k = torch.where(active[:, None, None], k_new, k)
        K = torch.where(active[:, None, None, None], K_new, K)

        # A full step would gain this little: done (unless μ still damps the step).
        small = dv.sum(-1) > -tolerance * J.abs()
        done = active & small & (sched.mu <= cfg.mu_min)
        converged, active = converged | done, active & ~done
        if not bool(active.any()):
            break

        z_new, u_new, J_new, accepted = _line_search(
            kernels, dynamics, c, z, u, J, k, K, dv, low, high, active, cfg
        )
        rel_change = J - J_new < tolerance * J.abs()
        z, u, J = z_new, u_new, J_new  # the line search keeps the old ones where it refused
        sched.decrease(accepted)
        rejected = active & ~accepted
        sched.increase(rejected)
        # Rejected although the predicted gain is below tolerance: rounding, so converged.
        done = (accepted & rel_change) | (rejected & small)
        gave_up = rejected & ~small & (sched.mu > cfg.mu_max)
        converged, active = converged | done, active & ~done & ~gave_up

    return ILQRResult(u, z, K, k, J, iterations, converged)
