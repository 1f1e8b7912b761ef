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
from functools import cache
from itertools import product
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from latentrl.planning.smallmat import small_matvec


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
    ACTIVE_SET = 7  # exact: the best of all 3^m active sets (small m; not in Tassa's code)


_RUNNING = -2


@dataclass(frozen=True)
class BoxQPOptions:
    """Method, and the projected-Newton iteration's stopping rules (Tassa's defaults)."""

    method: Literal["auto", "enumerate", "projected_newton"] = "auto"
    """``"enumerate"`` solves the QP on each of the 3^m faces of the box (free, at lower, at
    upper per dimension) at once and keeps the best feasible point: exact, a fixed number of
    batched ops without a branch on the data, for small m. ``"auto"``: closed form for m = 1;
    for larger m the unconstrained minimiser when it is inside every problem's box, else
    enumeration for m <= 3 and projected Newton beyond."""
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
    Hx = small_matvec(H, x)
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
    """``(L Lᵀ)⁻¹ rhs`` for ``L (B, m, m)`` lower triangular, ``rhs (B, m, k)``.

    Up to ``_UNROLL_MAX`` the two triangular solves are unrolled into elementwise ops over the
    batch: LAPACK loops over the matrices one by one (74 µs for B = 256 even at m = 1), and
    iLQR's box QPs call this T times per backward pass on batches of up to 3^m · B matrices.
    """
    m = L.shape[-1]
    if m == 1:
        return rhs / (L * L)
    if m > _UNROLL_MAX:
        return torch.cholesky_solve(rhs, L)
    y: list[Tensor] = []  # L y = rhs, forward
    for i in range(m):
        row = rhs[..., i, :]
        for j in range(i):
            row = row - L[..., i, j : j + 1] * y[j]
        y.append(row / L[..., i, i : i + 1])
    x: list[Tensor] = [y[0]] * m  # Lᵀ x = y, backward
    for i in reversed(range(m)):
        row = y[i]
        for j in range(i + 1, m):
            row = row - L[..., j, i : i + 1] * x[j]
        x[i] = row / L[..., i, i : i + 1]
    return torch.stack(x, dim=-2)


def free_cholesky(H: Tensor, free: Tensor) -> tuple[Tensor, Tensor]:
    """Cholesky factor of ``H ∘ (f fᵀ) + diag(1 - f)`` ``(B, m, m)`` and ok flags ``(B,)``."""
    both = free.unsqueeze(-1) & free.unsqueeze(-2)
    eye = torch.eye(H.shape[-1], dtype=H.dtype, device=H.device)
    return cholesky(torch.where(both, H, eye))


def solve_free(chol: Tensor, free: Tensor, rhs: Tensor) -> Tensor:
    """``H_ff⁻¹ rhs`` on free rows, 0 on clamped rows: ``rhs (B, m)`` or ``(B, m, k)``."""
    vector = rhs.ndim == free.ndim
    R = rhs.unsqueeze(-1) if vector else rhs
    out = cholesky_solve(chol, R * free.unsqueeze(-1))
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
    (``±inf`` allowed), warm start ``x0 (B, m)`` for projected Newton (clamped into the box;
    default 0). With ``m = 1`` the answer is the clamped Newton step; otherwise, when the
    unconstrained minimisers of all problems are feasible they are returned at once, else
    :class:`BoxQPOptions` ``method`` decides: face enumeration, or Tassa's projected Newton
    with an Armijo line search (problems that have stopped stay put while others iterate).
    """
    opts = options or BoxQPOptions()
    batch, m = g.shape
    lower, upper = lower.to(g), upper.to(g)
    method = opts.method
    if method == "auto":
        method = "scalar" if m == 1 else "enumerate" if m <= ENUMERATE_MAX else ""
    if method == "scalar":
        return _box_qp_scalar(H, g, lower, upper)
    lower, upper = lower.expand(batch, m), upper.expand(batch, m)
    if opts.method == "enumerate":  # asked for: no data-dependent branch (torch.compile)
        return _box_qp_enumerate(H, g, lower, upper)
    chol, ok = cholesky(H)
    x_newton = -cholesky_solve(chol, g.unsqueeze(-1)).squeeze(-1)
    inside = ok & ((x_newton >= lower) & (x_newton <= upper)).all(-1)
    status = torch.where(inside, int(BoxQPStatus.UNCONSTRAINED), _RUNNING).to(torch.long)
    free = torch.ones_like(g, dtype=torch.bool)
    if bool(inside.all()):  # nothing binds: the Newton step, all dimensions free
        return BoxQPResult(x_newton, free, chol, status, torch.zeros_like(status))
    if method == "enumerate":
        return _box_qp_enumerate(H, g, lower, upper)
    x0 = torch.zeros_like(g) if x0 is None else x0.to(g)
    x = torch.where(inside.unsqueeze(-1), x_newton, torch.clamp(x0, lower, upper))
    return _projected_newton(H, g, lower, upper, BoxQPResult(x, free, chol, status, status), opts)


def _box_qp_scalar(H: Tensor, g: Tensor, lower: Tensor, upper: Tensor) -> BoxQPResult:
    """``m = 1``: the clamped Newton step is exact (kept short: iLQR calls it T times)."""
    h = H[:, :, 0]
    newton = -g / h
    x = torch.clamp(newton, lower, upper)
    # Clamped exactly when the Newton step leaves the box: then the gradient at the bound
    # points outwards (h > 0), the free_set rule. A non-PD h gives a NaN factor, flagged.
    free = (newton >= lower) & (newton <= upper)
    chol = torch.where(free, h.sqrt(), 1.0).unsqueeze(-1)
    code = torch.where(free[:, 0], int(BoxQPStatus.UNCONSTRAINED), int(BoxQPStatus.ALL_CLAMPED))
    status = torch.where(h[:, 0] > 0, code, int(BoxQPStatus.NOT_POSITIVE_DEFINITE))
    return BoxQPResult(x, free, chol, status, torch.zeros_like(status))


ENUMERATE_MAX = 3  # "auto" enumerates the faces up to this m


def _faces(m: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Masks ``(3^m, m)`` of the dimensions held at the lower and at the upper bound; face 0
    has every dimension free (``itertools.product`` order)."""
    if torch.compiler.is_compiling():  # m may be symbolic there: digits by tensor ops
        place = 3 ** torch.arange(m - 1, -1, -1, device=device)
        codes = torch.arange(3**m, device=device).unsqueeze(-1) // place % 3
        return codes == 1, codes == 2
    return _cached_faces(m, device)


@cache
def _cached_faces(m: int, device: torch.device) -> tuple[Tensor, Tensor]:
    codes = torch.tensor(list(product((0, 1, 2), repeat=m)), device=device)
    return codes == 1, codes == 2


def _box_qp_enumerate(H: Tensor, g: Tensor, lower: Tensor, upper: Tensor) -> BoxQPResult:
    """Exact solution by trying every face: on a face the clamped dimensions sit at their
    bounds and the free ones solve the reduced Newton system. The optimum lies in the relative
    interior of some face and is that face's minimiser, so the cheapest feasible one wins."""
    batch, m = g.shape
    at_low, at_up = _faces(m, g.device)  # (P, m)
    n_faces = at_low.shape[0]
    free = ~(at_low | at_up)
    fixed = torch.where(at_low, lower[:, None], torch.where(at_up, upper[:, None], 0.0))
    H_all = H.unsqueeze(1).expand(batch, n_faces, m, m)
    chol, ok = free_cholesky(H_all, free.expand(batch, n_faces, m))
    rhs = -(g.unsqueeze(1) + small_matvec(H_all, fixed))  # (B, P, m)
    x = torch.where(free, solve_free(chol, free.expand(batch, n_faces, m), rhs), fixed)
    in_box = (x >= lower[:, None]) & (x <= upper[:, None]) & torch.isfinite(x)
    value = qp_value(H_all, g.unsqueeze(1).expand(batch, n_faces, m), x)
    value = torch.where(ok & in_box.all(-1) & torch.isfinite(value), value, torch.inf)
    best = value.argmin(-1)
    rows = torch.arange(batch, device=g.device)
    best_free = free[best]
    # Face 0 has every dimension free: its factor exists iff H is positive definite.
    status = torch.where(
        best_free.all(-1),
        int(BoxQPStatus.UNCONSTRAINED),
        torch.where(best_free.any(-1), int(BoxQPStatus.ACTIVE_SET), int(BoxQPStatus.ALL_CLAMPED)),
    )
    status = torch.where(ok[:, 0], status, int(BoxQPStatus.NOT_POSITIVE_DEFINITE))
    return BoxQPResult(x[rows, best], best_free, chol[rows, best], status, torch.zeros_like(status))


def _projected_newton(
    H: Tensor, g: Tensor, lower: Tensor, upper: Tensor, start: BoxQPResult, opts: BoxQPOptions
) -> BoxQPResult:
    """Tassa's boxQP iteration for the problems whose status is running (``start.x`` feasible);
    the others keep ``start``. Each problem's free set and factor are those at its final x."""
    min_grad = opts.min_grad if opts.min_grad is not None else _default_min_grad(g.dtype)
    grad_scale = 1 + g.abs().amax(-1)
    x, out_free, out_chol, status = start.x, start.free, start.chol, start.status
    value = qp_value(H, g, x)
    old_value = value
    iterations = torch.zeros_like(status)
    for it in range(opts.max_iterations):
        grad = g + small_matvec(H, x)
        free = free_set(grad, x, lower, upper)
        chol, ok = free_cholesky(H, free)
        running = status == _RUNNING
        out_free = torch.where(running.unsqueeze(-1), free, out_free)
        out_chol = torch.where(running[:, None, None], chol, out_chol)
        # Newton step on the free set with clamped dims held: -H_ff⁻¹ grad_f (zero elsewhere).
        search = -solve_free(chol, free, grad)
        slope = (search * grad).sum(-1)
        grad_norm = torch.linalg.vector_norm(grad * free, dim=-1)
        # Stopping tests in Tassa's order; the first that holds names the status.
        code = torch.where(~(slope < 0), int(BoxQPStatus.NO_DESCENT), _RUNNING)
        code = torch.where(grad_norm < min_grad * grad_scale, int(BoxQPStatus.SMALL_GRADIENT), code)
        code = torch.where(ok, code, int(BoxQPStatus.NOT_POSITIVE_DEFINITE))
        code = torch.where(free.any(-1), code, int(BoxQPStatus.ALL_CLAMPED))
        if it > 0:
            small = old_value - value < opts.min_rel_improve * old_value.abs()
            code = torch.where(small, int(BoxQPStatus.SMALL_IMPROVEMENT), code)
        status = torch.where(running, code, status)
        pending = status == _RUNNING
        if not bool(pending.any()):
            break
        iterations += pending
        old_value = value

        step = torch.ones_like(value)
        new_x, new_value = x, value
        while True:  # Armijo backtracking, per problem
            cand = torch.clamp(x + step.unsqueeze(-1) * search, lower, upper)
            cand_value = qp_value(H, g, cand)
            accept = pending & ((cand_value - value) / (step * slope) >= opts.armijo)
            new_x = torch.where(accept.unsqueeze(-1), cand, new_x)
            new_value = torch.where(accept, cand_value, new_value)
            pending = pending & ~accept
            step = torch.where(pending, step * opts.step_decrease, step)
            failed = pending & (step < opts.min_step)
            status = torch.where(failed, int(BoxQPStatus.LINE_SEARCH_FAILED), status)
            pending = pending & ~failed
            if not bool(pending.any()):
                break
        x, value = new_x, new_value
    else:  # out of iterations: the last step moved x, so refactor there
        moved = status == _RUNNING
        status = torch.where(moved, int(BoxQPStatus.MAX_ITERATIONS), status)
        free = free_set(g + small_matvec(H, x), x, lower, upper)
        chol, ok = free_cholesky(H, free)
        out_free = torch.where(moved.unsqueeze(-1), free, out_free)
        out_chol = torch.where(moved[:, None, None], chol, out_chol)
        status = torch.where(moved & ~ok, int(BoxQPStatus.NOT_POSITIVE_DEFINITE), status)
    return BoxQPResult(x, out_free, out_chol, status, iterations)
