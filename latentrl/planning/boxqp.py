"""Batched box-constrained QP by projected Newton (Tassa, Mansard & Todorov, ICRA 2014).

Solves, for each problem of a batch, ``min_x 0.5 xᵀ H x + gᵀ x`` s.t. ``lower <= x <= upper``
with ``H`` symmetric positive definite. Besides ``x`` it returns the free set (the dimensions
not held at a bound) and a Cholesky factor of ``H`` restricted to it, which control-limited DDP
needs for its feedback gains ``K = -H_ff⁻¹ Q_ux`` (zero rows on clamped dimensions).

Free sets differ between the problems of a batch, so the restriction is stored embedded:
``chol`` is the Cholesky factor of ``H_free = H ∘ (f fᵀ) + diag(1 - f)`` (``f`` the free mask),
which is ``H_ff`` on the free block and the identity on the clamped one. :func:`solve_free`
applies ``H_ff⁻¹`` with it and leaves zeros on clamped rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

import torch
from torch import Tensor


class BoxQPStatus(IntEnum):
    """Why the solver stopped (the numbering follows Tassa's ``boxQP.m``)."""

    NOT_POSITIVE_DEFINITE = -1  # H restricted to the free set has no Cholesky factor: failure
    NO_DESCENT = 0  # Newton direction not a descent direction: only rounding, so converged
    MAX_ITERATIONS = 1
    LINE_SEARCH_FAILED = 2
    UNCONSTRAINED = 3  # the unconstrained minimiser is feasible (or m = 1, interior)
    SMALL_IMPROVEMENT = 4
    SMALL_GRADIENT = 5
    ALL_CLAMPED = 6


_RUNNING = -2


@dataclass(frozen=True)
class BoxQPOptions:
    """Stopping rules and line search of the projected-Newton iteration (Tassa's defaults)."""

    max_iterations: int = 100
    min_grad: float | None = None
    """Stop when the free gradient's norm is below ``min_grad * (1 + |g|_∞)``; ``None``:
    1e-8 in float64, 1e-5 in lower precision (rounding floor of the gradient)."""
    min_rel_improve: float = 1e-8
    step_decrease: float = 0.6
    min_step: float = 1e-22
    armijo: float = 0.1


class BoxQPResult(NamedTuple):
    """Solution of a batch of box QPs."""

    x: Tensor
    """Minimisers, ``(B, m)``."""
    free: Tensor
    """Free-set mask at ``x``, bool ``(B, m)``: False where ``x`` sits at a bound and the
    gradient pushes outwards."""
    chol: Tensor
    """Lower Cholesky factor of ``H ∘ (f fᵀ) + diag(1 - f)``, ``(B, m, m)``."""
    status: Tensor
    """:class:`BoxQPStatus` codes, int64 ``(B,)``."""
    iterations: Tensor
    """Newton iterations per problem, int64 ``(B,)`` (0 for the closed forms)."""


def qp_value(H: Tensor, g: Tensor, x: Tensor) -> Tensor:
    """``0.5 xᵀ H x + gᵀ x`` for ``H (B, m, m)``, ``g, x (B, m)`` -> ``(B,)``."""
    Hx = (H @ x.unsqueeze(-1)).squeeze(-1)
    return (x * (0.5 * Hx + g)).sum(-1)


def free_set(grad: Tensor, x: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """Free mask ``(B, m)`` from the gradient ``g + H x`` at ``x``: not (at the lower bound
    with gradient > 0 or at the upper bound with gradient < 0)."""
    clamped = ((x == lower) & (grad > 0)) | ((x == upper) & (grad < 0))
    return ~clamped


# Up to this size the Cholesky factorisation is unrolled into elementwise ops: on a busy CPU
# (other processes on all cores) torch.linalg.cholesky_ex of even a (1, 2, 2) batch took 7 ms
# median, waiting for MKL's threads, against 7 µs idle; cholesky_solve was unaffected.
_UNROLL_MAX = 4


def cholesky(H: Tensor) -> tuple[Tensor, Tensor]:
    """Lower Cholesky factor of SPD ``H (B, m, m)`` and ok flags ``(B,)`` (False: not PD)."""
    m = H.shape[-1]
    if m > _UNROLL_MAX:
        L, info = torch.linalg.cholesky_ex(H)
        return L, info == 0
    L = torch.zeros_like(H)
    pivots = []
    for j in range(m):
        col = H[..., j:, j]
        if j > 0:
            col = col - (L[..., j:, :j] * L[..., j : j + 1, :j]).sum(-1)
        pivot = col[..., :1]
        pivots.append(pivot)
        # A failed problem gets pivot 1 to stay finite; its ok flag carries the failure.
        L[..., j:, j] = col / torch.where(pivot > 0, pivot, 1.0).sqrt()
    return L, (torch.cat(pivots, dim=-1) > 0).all(-1)


def cholesky_solve(L: Tensor, rhs: Tensor) -> Tensor:
    """``(L Lᵀ)⁻¹ rhs`` for ``L (B, m, m)`` lower triangular, ``rhs (B, m, k)``."""
    return torch.cholesky_solve(rhs, L)


def free_cholesky(H: Tensor, free: Tensor) -> tuple[Tensor, Tensor]:
    """Cholesky factor of ``H ∘ (f fᵀ) + diag(1 - f)`` ``(B, m, m)`` and ok flags ``(B,)``."""
    both = free.unsqueeze(-1) & free.unsqueeze(-2)
    eye = torch.eye(H.shape[-1], dtype=H.dtype, device=H.device)
    return cholesky(torch.where(both, H, eye))


def solve_free(chol: Tensor, free: Tensor, rhs: Tensor) -> Tensor:
    """``H_ff⁻¹ rhs`` on free rows, 0 on clamped rows: ``rhs (B, m)`` or ``(B, m, k)``."""
    vector = rhs.ndim == free.ndim
    R = rhs.unsqueeze(-1) if vector else rhs
    out = cholesky_solve(chol, R * free.unsqueeze(-1).to(R.dtype))
    return out.squeeze(-1) if vector else out


def _default_min_grad(dtype: torch.dtype) -> float:
    return 1e-8 if dtype == torch.float64 else 1e-5


def box_qp(
    H: Tensor,
    g: Tensor,
    lower: Tensor,
    upper: Tensor,
    x0: Tensor | None = None,
    options: BoxQPOptions | None = None,
) -> BoxQPResult:
    """Solve ``min 0.5 xᵀHx + gᵀx`` s.t. ``lower <= x <= upper`` for a batch.

    ``H (B, m, m)`` SPD (regularise before calling), ``g (B, m)``, bounds ``(B, m)`` or ``(m,)``
    (``±inf`` allowed), warm start ``x0 (B, m)`` (clamped into the box; default 0). With
    ``m = 1`` the answer is the clamped Newton step; otherwise a feasible unconstrained minimiser
    is returned at once and the remaining problems run Tassa's projected Newton with an Armijo
    line search. Problems that have stopped are left untouched while the others iterate.
    """
    opts = options or BoxQPOptions()
    batch, m = g.shape
    lower = lower.to(g).expand(batch, m)
    upper = upper.to(g).expand(batch, m)
    if m == 1:
        return _box_qp_scalar(H, g, lower, upper)
    chol, ok = cholesky(H)
    x_newton = -cholesky_solve(chol, g.unsqueeze(-1)).squeeze(-1)
    inside = ok & ((x_newton >= lower) & (x_newton <= upper)).all(-1)
    status = torch.where(inside, int(BoxQPStatus.UNCONSTRAINED), _RUNNING).to(torch.long)
    iterations = torch.zeros_like(status)
    x0 = torch.zeros_like(g) if x0 is None else x0.to(g)
    if bool(inside.all()):  # nothing binds: the Newton step, all dimensions free
        return BoxQPResult(x_newton, torch.ones_like(g, dtype=torch.bool), chol, status, iterations)
    x = torch.where(inside.unsqueeze(-1), x_newton, torch.clamp(x0, lower, upper))
    x, status, iterations = _projected_newton(H, g, lower, upper, x, status, opts)
    free = free_set(g + (H @ x.unsqueeze(-1)).squeeze(-1), x, lower, upper)
    chol, ok = free_cholesky(H, free)
    status = torch.where(ok, status, int(BoxQPStatus.NOT_POSITIVE_DEFINITE))
    return BoxQPResult(x, free, chol, status, iterations)


def _box_qp_scalar(H: Tensor, g: Tensor, lower: Tensor, upper: Tensor) -> BoxQPResult:
    """``m = 1``: the clamped Newton step is exact (kept short: iLQR calls it T times)."""
    h = H[:, :, 0]
    x = torch.clamp(-g / h, lower, upper)
    free = free_set(g + h * x, x, lower, upper)
    pd = h > 0
    chol = torch.where(free & pd, h.sqrt(), 1.0).unsqueeze(-1)
    status = torch.where(
        pd[:, 0],
        torch.where(free[:, 0], int(BoxQPStatus.UNCONSTRAINED), int(BoxQPStatus.ALL_CLAMPED)),
        int(BoxQPStatus.NOT_POSITIVE_DEFINITE),
    )
    return BoxQPResult(x, free, chol, status, torch.zeros_like(status))


def _projected_newton(
    H: Tensor,
    g: Tensor,
    lower: Tensor,
    upper: Tensor,
    x: Tensor,
    status: Tensor,
    opts: BoxQPOptions,
) -> tuple[Tensor, Tensor, Tensor]:
    """Tassa's boxQP iteration on the problems whose ``status`` is running; ``x`` feasible."""
    min_grad = opts.min_grad if opts.min_grad is not None else _default_min_grad(g.dtype)
    grad_scale = 1 + g.abs().amax(-1)
    value = qp_value(H, g, x)
    old_value = value
    iterations = torch.zeros_like(status)

    def stop(mask: Tensor, code: int) -> Tensor:
        """Mark running problems in ``mask`` as stopped with ``code``; returns the marked."""
        hit = mask & (status == _RUNNING)
        status.masked_fill_(hit, code)
        return hit

    for it in range(opts.max_iterations):
        if it > 0:
            improvement = old_value - value
            stop(
                improvement < opts.min_rel_improve * old_value.abs(), BoxQPStatus.SMALL_IMPROVEMENT
            )
        running = status == _RUNNING
        if not bool(running.any()):
            break
        iterations += running
        old_value = value
        grad = g + (H @ x.unsqueeze(-1)).squeeze(-1)
        free = free_set(grad, x, lower, upper)
        stop(~free.any(-1), BoxQPStatus.ALL_CLAMPED)
        chol, ok = free_cholesky(H, free)
        stop(~ok, BoxQPStatus.NOT_POSITIVE_DEFINITE)
        grad_norm = torch.linalg.vector_norm(grad * free, dim=-1)
        stop(grad_norm < min_grad * grad_scale, BoxQPStatus.SMALL_GRADIENT)
        # Newton step on the free set with clamped dims held: -H_ff⁻¹ grad_f (zero elsewhere).
        search = -solve_free(chol, free, grad)
        slope = (search * grad).sum(-1)
        stop(~(slope < 0), BoxQPStatus.NO_DESCENT)

        pending = status == _RUNNING
        step = torch.ones_like(value)
        new_x, new_value = x, value
        while bool(pending.any()):
            cand = torch.clamp(x + step.unsqueeze(-1) * search, lower, upper)
            cand_value = qp_value(H, g, cand)
            accept = pending & ((cand_value - value) / (step * slope) >= opts.armijo)
            new_x = torch.where(accept.unsqueeze(-1), cand, new_x)
            new_value = torch.where(accept, cand_value, new_value)
            pending = pending & ~accept
            step = torch.where(pending, step * opts.step_decrease, step)
            too_small = pending & (step < opts.min_step)
            pending = pending & ~stop(too_small, BoxQPStatus.LINE_SEARCH_FAILED)
        x, value = new_x, new_value

    status.masked_fill_(status == _RUNNING, int(BoxQPStatus.MAX_ITERATIONS))
    return x, status, iterations
