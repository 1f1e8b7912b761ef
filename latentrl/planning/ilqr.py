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

The backward pass's and the line search's pieces over the horizon are in
:mod:`latentrl.planning.riccati`. The cost, with its angle wrapping (the pendulum oracle plans
on unwrapped ``(θ, θ̇)``), is in :mod:`latentrl.planning.cost`; its public names are
re-exported here for older imports.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple, TypeVar

import torch
from torch import Tensor

from latentrl.errors import UserError
from latentrl.planning.boxqp import ENUMERATE_MAX, BoxQPOptions
from latentrl.planning.cost import (
    BatchCost,
    QuadraticCost,
    batch_cost,
    total_cost,
    trajectory_cost,
    wrap_angles,
)
from latentrl.planning.dynamics import Dynamics, can_select, rollout, select_problems
from latentrl.planning.riccati import (
    RiccatiStep,
    closed_loop_rollout,
    feedback_chunk,
    riccati_chunk,
    riccati_step,
    riccati_sweep,
    stage_hessian,
    sweep_inputs,
)
from latentrl.planning.smallmat import small_matvec

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
    """Run the backward pass's Riccati steps, the line search's closed-loop steps (with
    ``dynamics.step``), each a chunk of time steps to a call (:mod:`latentrl.planning.riccati`),
    and its choice of step sizes through ``torch.compile``: fused kernels instead of ~100 small ops
    per time step (for 2 <= m <= 3 the box QP then enumerates its faces, with no branch on the
    data). The first solves of each (n, m, dtype, device, dynamics) compile for seconds to a
    minute; worth it where the same shapes are solved many times (MPC). torch recompiles a
    function at most ``torch._dynamo.config.recompile_limit`` times (8) per process, then warns
    and runs it eagerly."""

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
        return t.expand(batch, m).contiguous()  # one stride for every compiled call

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
    inputs = sweep_inputs(c, A, B, z, u, mu, low, high, k_taken)
    k, K, dv, ok = riccati_sweep(inputs, l_xx, qp_options, kernels.riccati_chunk)
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
        z_try, u_try = closed_loop_rollout(
            step_dynamics,
            tile(z_bar[:, 0]),
            offset.reshape(reps * batch, T, m),
            tile(K),
            tile(low),
            tile(high),
            kernels.feedback_chunk,
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
    (:attr:`ILQRConfig.compile`): the Python around them only loops over chunks of time steps
    and selects problems."""

    riccati_chunk: Callable[..., tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]]
    feedback_chunk: Callable[..., tuple[Tensor, Tensor, Tensor]]
    pick_steps: Callable[..., tuple[Tensor, Tensor, Tensor, Tensor]]


def _kernels(compiled: bool) -> _Kernels:
    functions = (riccati_chunk, feedback_chunk, _pick_steps)
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
    l_xx = stage_hessian(c)
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
