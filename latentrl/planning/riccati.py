"""iLQR's batched pieces over a horizon: the backward pass's control-limited Riccati step and
its sweep from ``T - 1`` down to 0, and the line search's closed-loop rollout, each in chunks of
time steps (one call of a chunk function unrolls its steps: compiled, one graph).

Shapes: ``R`` problems (rows), horizon ``T``, state ``n``, control ``m``; per-step inputs are
``(R, T, ...)``, time second as in ``u (R, T, m)``. :mod:`latentrl.planning.ilqr` wires these
into the solver and compiles the chunk functions with ``ILQRConfig(compile=True)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from latentrl.planning.boxqp import BoxQPOptions, BoxQPStatus, box_qp, solve_free
from latentrl.planning.cost import BatchCost, residual
from latentrl.planning.dynamics import Dynamics
from latentrl.planning.smallmat import small_matmul, small_matvec


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


CHUNK_STEPS = 10
"""Most time steps per call of the closed-loop rollout's batched piece (:func:`feedback_chunk`)
and, for m = 1, of the backward pass's (:func:`riccati_chunk`; see
:func:`riccati_steps_per_call`). Compiled, a call unrolls its steps into one graph: fewer,
larger calls pay torch's per-call guards and wrapper (15-25 µs, most of a step's time at
B = 1) less often, while the compile time grows with the graph."""


def riccati_steps_per_call(m: int) -> int:
    """Most Riccati steps per call of the backward pass's batched piece: :data:`CHUNK_STEPS`
    where the box QP is closed-form (m = 1), 5 where it enumerates its 3^m faces: a larger
    graph per step, whose compile time weighs more. Measured at n = 8, m = 2, T = 50, B = 256
    (torch 2.13, 2-core CPU): the first solve in a process took 274 s with 10 steps to a call
    and 61 s with 1 (both before inputs were made contiguous), and 159 s with 5, on a cold
    inductor cache (15 s with 5 once the cache in
    ``/tmp/torchinductor_<user>`` holds the graphs); at B = 1, T = 10 a solve took 2.0-2.7 ms
    with 5 or 10 steps to a call and 2.7-3.4 ms with 1."""
    return CHUNK_STEPS if m == 1 else 5


def chunks(T: int, most: int = CHUNK_STEPS) -> list[slice]:
    """``range(T)`` in consecutive slices of one length, the largest divisor of ``T`` not above
    ``most``: one graph per horizon to compile (a shorter last chunk would be a second one)."""
    size = max(d for d in range(1, min(most, T) + 1) if T % d == 0)
    return [slice(t, t + size) for t in range(0, T, size)]


def _steps(x: Tensor, steps: slice, T: int) -> Tensor:
    """``x[:, steps]`` of ``x (R, T, ...)``; ``x`` itself for all ``T`` (no view op)."""
    return x if steps.stop - steps.start == T else x[:, steps]


def feedback_chunk(
    dynamics: Dynamics,
    offset: Tensor,
    K: Tensor,
    z: Tensor,
    low: Tensor,
    high: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """``L`` steps ``u_t = clamp(offset_t + K_t z_t)``, ``z_{t+1} = f(z_t, u_t)`` from ``z (R,
    n)`` with ``offset (R, L, m)``, ``K (R, L, m, n)``: the states ``(R, L + 1, n)``, from ``z``
    on, the controls ``(R, L, m)`` and the last state ``(R, n)`` (contiguous, as the next
    chunk's ``z``: a strided one would be another graph to compile)."""
    zs, us = [z], []
    for offset_t, K_t in zip(offset.unbind(1), K.unbind(1), strict=True):
        us.append(torch.clamp(offset_t + small_matvec(K_t, zs[-1]), low, high))
        zs.append(dynamics.step(zs[-1], us[-1]))
    return torch.stack(zs, dim=1), torch.stack(us, dim=1), zs[-1]


def closed_loop_rollout(
    dynamics: Dynamics,
    z0: Tensor,
    offset: Tensor,
    K: Tensor,
    low: Tensor,
    high: Tensor,
    chunk: Callable[..., tuple[Tensor, Tensor, Tensor]] = feedback_chunk,
) -> tuple[Tensor, Tensor]:
    """States ``(R, T + 1, n)`` and controls ``(R, T, m)`` of ``u_t = clamp(offset_t + K_t
    z_t)`` from ``z0 (R, n)``, where ``offset = ū + α k - K z̄`` ``(R, T, m)``; rows as in
    ``z0``."""
    T = offset.shape[1]
    zs, us, z = [], [], z0.contiguous()
    for t in chunks(T):
        z_t, u_t, z = chunk(dynamics, _steps(offset, t, T), _steps(K, t, T), z, low, high)
        zs.append(z_t if not zs else z_t[:, 1:])  # a chunk starts from the last one's end
        us.append(u_t)
    if len(us) == 1:
        return zs[0], us[0]
    return torch.cat(zs, dim=1), torch.cat(us, dim=1)


class SweepInputs(NamedTuple):
    """A backward pass's inputs besides the stage Hessian: per time step (``t`` second, as
    in ``u (R, T, m)``) or shared by all steps."""

    F: Tensor  # [A_t B_t] (R, T, n, n + m)
    l_x: Tensor  # stage cost gradient (R, T, n + m, 1)
    du_low: Tensor  # bounds on the control change (R, T, m)
    du_high: Tensor
    k_warm: Tensor  # box QP warm starts (R, T, m)
    reg: Tensor  # μI (R, m, m)
    V_z: Tensor  # terminal value gradient (R, n, 1)
    V_zz: Tensor  # terminal value Hessian (R, n, n)


def stage_hessian(c: BatchCost) -> Tensor:
    """The stage cost's Hessian in x = (z, u), ``blockdiag(2Q, 2R) (B, n + m, n + m)``."""
    (batch, n, _), m = c.Q.shape, c.R.shape[-1]
    l_xx = c.Q.new_zeros(batch, n + m, n + m)
    l_xx[:, :n, :n], l_xx[:, n:, n:] = 2 * c.Q, 2 * c.R
    return l_xx


def sweep_inputs(
    c: BatchCost,
    A: Tensor,
    B: Tensor,
    z: Tensor,
    u: Tensor,
    mu: Tensor,
    low: Tensor,
    high: Tensor,
    k_warm: Tensor,
) -> SweepInputs:
    """The backward pass's inputs along ``z (R, T + 1, n)``, ``u (R, T, m)`` with the
    linearisation ``A (T, R, n, n)``, ``B (T, R, n, m)``."""
    m = u.shape[-1]
    r = residual(c, z)
    # Q, R symmetric, so r Q = (Q r)ᵀ for all t at once (bmm: the fewest ops at small sizes).
    l_x = 2 * torch.cat([torch.bmm(r[:, :-1], c.Q), torch.bmm(u, c.R)], dim=-1).unsqueeze(-1)
    V_zz = 2 * c.Q_f
    return SweepInputs(
        F=torch.cat([A, B], dim=-1).transpose(0, 1),
        l_x=l_x,
        du_low=low.unsqueeze(1) - u,
        du_high=high.unsqueeze(1) - u,
        k_warm=k_warm,
        reg=mu.view(-1, 1, 1) * torch.eye(m, dtype=u.dtype, device=u.device),
        V_z=torch.bmm(V_zz, r[:, -1:].mT),
        V_zz=V_zz,
    )


def riccati_chunk(
    F: Tensor,
    l_x: Tensor,
    du_low: Tensor,
    du_high: Tensor,
    k_warm: Tensor,
    l_xx: Tensor,
    reg: Tensor,
    V_z: Tensor,
    V_zz: Tensor,
    qp_options: BoxQPOptions,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The Riccati step over ``L`` consecutive time steps (inputs per step ``(R, L, ...)`` as
    in :class:`SweepInputs`), from the value ``V_z, V_zz`` after the last one: gains
    ``k (R, L, m)``, ``K (R, L, m, n)``, predicted-decrease terms ``dv (R, 2)`` summed over
    the steps (a step ``α k`` changes the cost by about ``α dv_0 + α² dv_1``), ok flags
    ``(R,)`` and the value before the first step."""
    steps = []
    per_step = zip(*(x.unbind(1) for x in (F, l_x, du_low, du_high, k_warm)), strict=True)
    # A failed step leaves NaNs in its own rows only (every op is row-wise); status flags it.
    for F_t, l_x_t, du_low_t, du_high_t, k_warm_t in reversed(list(per_step)):
        s = riccati_step(
            F_t, l_x_t, l_xx, V_z, V_zz, reg, du_low_t, du_high_t, k_warm_t, qp_options
        )
        V_z, V_zz = s.V_z, s.V_zz
        steps.append(s)
    steps.reverse()
    k = torch.stack([s.k for s in steps], dim=1).squeeze(-1)
    K = torch.stack([s.K for s in steps], dim=1)
    dv = torch.stack([s.dv for s in steps]).sum(0)
    failed = int(BoxQPStatus.NOT_POSITIVE_DEFINITE)  # an int: dynamo cannot compare IntEnums
    ok = (torch.stack([s.status for s in steps]) != failed).all(0)
    return k, K, dv, ok, V_z, V_zz


def riccati_sweep(
    inputs: SweepInputs,
    l_xx: Tensor,
    qp_options: BoxQPOptions,
    chunk: Callable[..., tuple[Tensor, ...]] = riccati_chunk,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`riccati_chunk`'s gains, predicted-decrease terms and ok flags over all ``T``
    steps, from ``T - 1`` down to 0."""
    V_z, V_zz = inputs.V_z, inputs.V_zz
    per_step = (inputs.F, inputs.l_x, inputs.du_low, inputs.du_high, inputs.k_warm)
    T = inputs.F.shape[1]
    parts = []
    for t in reversed(chunks(T, riccati_steps_per_call(inputs.k_warm.shape[-1]))):
        k, K, dv, ok, V_z, V_zz = chunk(
            *(_steps(x, t, T) for x in per_step), l_xx, inputs.reg, V_z, V_zz, qp_options
        )
        parts.append((k, K, dv, ok))
    if len(parts) == 1:
        return parts[0]
    k, K, dv, ok = zip(*reversed(parts), strict=True)
    return torch.cat(k, 1), torch.cat(K, 1), torch.stack(dv).sum(0), torch.stack(ok).all(0)
