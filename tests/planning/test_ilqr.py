"""iLQR against exact references: finite-horizon LQR, the condensed boxed QP, batching."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.optimize import lsq_linear

from latentrl.errors import UserError
from latentrl.planning import (
    BoxQPStatus,
    FunctionDynamics,
    ILQRConfig,
    LinearDynamics,
    QuadraticCost,
    box_qp,
    ilqr,
    pendulum_dynamics,
    riccati,
    riccati_step,
    solve_ilqr,
    trajectory_cost,
)

F64 = torch.float64


def spd(gen: torch.Generator, *shape: int, floor: float = 0.1) -> torch.Tensor:
    X = torch.randn(*shape, generator=gen, dtype=F64)
    return X @ X.mT / shape[-1] + floor * torch.eye(shape[-1], dtype=F64)


def random_lq(batch: int, n: int, m: int, seed: int) -> tuple[LinearDynamics, QuadraticCost]:
    """Per-problem stable-ish A (spectral radius about 0.95-1.05), B, c, SPD Q, R, Q_f, goal."""
    gen = torch.Generator().manual_seed(seed)
    A = torch.linalg.matrix_exp(0.3 * torch.randn(batch, n, n, generator=gen, dtype=F64) / n)
    A = A / torch.linalg.eigvals(A).abs().amax(-1)[:, None, None] * 1.0
    B = torch.randn(batch, n, m, generator=gen, dtype=F64)
    c = 0.1 * torch.randn(batch, n, generator=gen, dtype=F64)
    cost = QuadraticCost(
        Q=spd(gen, batch, n, n),
        R=spd(gen, batch, m, m),
        Q_f=10 * spd(gen, batch, n, n),
        goal=torch.randn(batch, n, generator=gen, dtype=F64),
    )
    return LinearDynamics(A, B, c), cost


def lqr_reference(A, B, c, Q, R, Q_f, g, z0, T):
    """Exact affine finite-horizon LQR in float64 NumPy: V_t(z) = zᵀP z + 2 pᵀz + const."""
    P, p = Q_f, -Q_f @ g
    gains = []
    for _ in range(T):
        S = R + B.T @ P @ B
        K = np.linalg.solve(S, B.T @ P @ A)
        kk = np.linalg.solve(S, B.T @ (P @ c + p))
        Acl = A - B @ K
        p = -Q @ g + K.T @ R @ kk + Acl.T @ (P @ (c - B @ kk) + p)
        P = Q + K.T @ R @ K + Acl.T @ P @ Acl
        P = 0.5 * (P + P.T)
        gains.append((K, kk))
    gains.reverse()
    z, us, cost = z0, [], 0.0
    for K, kk in gains:
        u = -K @ z - kk
        cost += (z - g) @ Q @ (z - g) + u @ R @ u
        us.append(u)
        z = A @ z + B @ u + c
    cost += (z - g) @ Q_f @ (z - g)
    return np.array(us), cost


@pytest.mark.parametrize(("n", "m", "T"), [(3, 1, 10), (5, 2, 30), (8, 2, 50), (4, 1, 50)])
def test_unconstrained_matches_lqr(n: int, m: int, T: int) -> None:
    batch = 3
    dyn, cost = random_lq(batch, n, m, seed=n * 100 + T)
    z0 = torch.randn(batch, n, dtype=F64)
    res = solve_ilqr(dyn, z0, torch.zeros(batch, T, m, dtype=F64), cost)
    assert bool(res.converged.all())
    assert int(res.iterations.max()) <= 2
    for b in range(batch):
        u_ref, J_ref = lqr_reference(
            *(t[b].numpy() for t in (dyn.A, dyn.B, dyn.c, cost.Q, cost.R, cost.Q_f, cost.goal)),
            z0[b].numpy(),
            T,
        )
        np.testing.assert_allclose(res.u[b].numpy(), u_ref, rtol=1e-6, atol=1e-6 * abs(u_ref).max())
        assert float(res.cost[b]) == pytest.approx(J_ref, rel=1e-6)


def condensed_qp(A, B, c, Q, R, Q_f, g, z0, T):
    """The whole boxed LQ problem as one QP in U = (u_0 .. u_{T-1}): ½UᵀHU + fᵀU + const."""
    n, m = B.shape
    free = [z0]  # response to zero controls
    for _ in range(T):
        free.append(A @ free[-1] + c)
    M = np.zeros((T * n, T * m))  # z_{t+1} = free_{t+1} + Σ_{s<=t} A^{t-s} B u_s
    for t in range(T):
        for s in range(t + 1):
            M[t * n : (t + 1) * n, s * m : (s + 1) * m] = np.linalg.matrix_power(A, t - s) @ B
    Qbar = np.kron(np.eye(T), Q)
    Qbar[-n:, -n:] = Q_f
    Rbar = np.kron(np.eye(T), R)
    resid = np.concatenate(free[1:]) - np.tile(g, T)
    H = 2 * (M.T @ Qbar @ M + Rbar)
    f = 2 * M.T @ Qbar @ resid
    const = resid @ Qbar @ resid + (z0 - g) @ Q @ (z0 - g)
    return H, f, const


def test_boxed_lq_matches_condensed_qp() -> None:
    batch, n, m, T = 2, 3, 2, 15
    dyn, cost = random_lq(batch, n, m, seed=1)
    z0 = 2 * torch.randn(batch, n, dtype=F64, generator=torch.Generator().manual_seed(2))
    u0 = torch.zeros(batch, T, m, dtype=F64)
    # Per-problem, asymmetric boxes that cut the unconstrained optimum.
    scale = solve_ilqr(dyn, z0, u0, cost).u.abs().amax(-2)  # (B, m)
    low, high = -0.3 * scale, 0.2 * scale
    cfg = ILQRConfig(tolerance=1e-13, max_iterations=100)
    res = solve_ilqr(dyn, z0, u0, cost, low, high, cfg)
    assert bool(res.converged.all())
    for b in range(batch):
        H, f, const = condensed_qp(
            *(t[b].numpy() for t in (dyn.A, dyn.B, dyn.c, cost.Q, cost.R, cost.Q_f, cost.goal)),
            z0[b].numpy(),
            T,
        )
        # Generic bounded solver: ½|C U - d|² with H = CᵀC, scipy's active-set BVLS.
        C = np.linalg.cholesky(H).T
        lo, hi = np.tile(low[b].numpy(), T), np.tile(high[b].numpy(), T)
        U = lsq_linear(C, -np.linalg.solve(C.T, f), bounds=(lo, hi), method="bvls").x
        J_ref = 0.5 * U @ H @ U + f @ U + const
        active = np.isclose(U, lo) | np.isclose(U, hi)
        assert 0.1 < active.mean() < 0.9  # the bounds bind, but not everywhere
        np.testing.assert_allclose(res.u[b].reshape(-1).numpy(), U, atol=1e-6 * np.abs(U).max())
        assert float(res.cost[b]) == pytest.approx(J_ref, rel=1e-9)


@pytest.mark.slow  # torch.compile of the sweeps: about a minute on a cold cache
def test_compiled_riccati_step_gives_the_eager_solution(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.compile'd backward and line-search steps (m = 2: face enumeration; m = 1: the
    closed form) give the eager iterates, on per-problem boxes that bind (per-problem linear
    dynamics) and on the nonlinear pendulum."""
    compiled_functions = []
    real_compile = torch.compile

    def recording_compile(fn, **kwargs):
        compiled_functions.append(fn)
        return real_compile(fn, **kwargs)

    monkeypatch.setattr(ilqr, "_COMPILED", {})
    monkeypatch.setattr(torch, "compile", recording_compile)  # ilqr calls torch.compile
    batch, n, m, T = 3, 3, 2, 15
    dyn, cost = random_lq(batch, n, m, seed=1)
    z0 = 2 * torch.randn(batch, n, dtype=F64, generator=torch.Generator().manual_seed(2))
    u0 = torch.zeros(batch, T, m, dtype=F64)
    scale = solve_ilqr(dyn, z0, u0, cost).u.abs().amax(-2)
    cases = [
        (dyn, z0, u0, cost, -0.3 * scale, 0.2 * scale),
        (FunctionDynamics(pendulum_dynamics), pendulum_starts(4), torch.zeros(4, 30, 1, dtype=F64),
         pendulum_cost(4), -2.0, 2.0),
    ]  # fmt: skip
    for problem in cases:
        eager = solve_ilqr(*problem, ILQRConfig(max_iterations=30))
        compiled = solve_ilqr(*problem, ILQRConfig(max_iterations=30, compile=True))
        assert len(set(eager.iterations.tolist())) > 1  # the compiled step sees other batches
        np.testing.assert_allclose(compiled.u.numpy(), eager.u.numpy(), atol=1e-9)
        np.testing.assert_allclose(compiled.K.numpy(), eager.K.numpy(), atol=1e-8)
        assert compiled.iterations.tolist() == eager.iterations.tolist()
    assert compiled_functions == list(ilqr._kernels(False))  # made once, then shared


def pendulum_cost(batch: int, dtype: torch.dtype = F64, terminal: float = 10.0) -> QuadraticCost:
    """Pendulum-v1's cost weights, θ wrapped; heavier terminal weight."""
    Q = torch.diag(torch.tensor([1.0, 0.1], dtype=dtype))
    return QuadraticCost(
        Q=Q,
        R=torch.tensor([[1e-3]], dtype=dtype),
        Q_f=terminal * Q,
        goal=torch.zeros(batch, 2, dtype=dtype),
        angle_dims=(0,),
    )


def pendulum_starts(batch: int, dtype: torch.dtype = F64) -> torch.Tensor:
    theta = torch.linspace(math.pi - 0.4, math.pi + 0.4, batch, dtype=dtype)
    return torch.stack([theta, torch.linspace(-1.0, 1.0, batch, dtype=dtype)], dim=1)


def test_batched_equals_one_by_one() -> None:
    batch, T = 4, 30
    dyn = FunctionDynamics(pendulum_dynamics)
    z0 = pendulum_starts(batch)
    u0 = 0.5 * torch.randn(batch, T, 1, dtype=F64, generator=torch.Generator().manual_seed(0))
    cost = pendulum_cost(batch)
    cfg = ILQRConfig(max_iterations=15)
    together = solve_ilqr(dyn, z0, u0, cost, -2.0, 2.0, cfg)
    assert len(set(together.iterations.tolist())) > 1  # problems really stop at different times
    for b in range(batch):
        alone_cost = QuadraticCost(cost.Q, cost.R, cost.Q_f, cost.goal[b : b + 1], (0,))
        alone = solve_ilqr(dyn, z0[b : b + 1], u0[b : b + 1], alone_cost, -2.0, 2.0, cfg)
        np.testing.assert_allclose(together.u[b].numpy(), alone.u[0].numpy(), atol=1e-10)
        assert int(together.iterations[b]) == int(alone.iterations[0])
        assert float(together.cost[b]) == pytest.approx(float(alone.cost[0]), rel=1e-12)


class RowCountingDynamics:
    """Pendulum dynamics without ``select``, recording how many rows each call gets."""

    def __init__(self) -> None:
        self.inner = FunctionDynamics(pendulum_dynamics)
        self.step_rows: list[int] = []
        self.linearize_rows: list[int] = []

    def step(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        self.step_rows.append(z.shape[0])
        return self.inner.step(z, u)

    def linearize(self, z: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.linearize_rows.append(z.shape[0])
        return self.inner.linearize(z, u)


class SelectableRowCountingDynamics(RowCountingDynamics):
    def select(self, index: torch.Tensor) -> SelectableRowCountingDynamics:
        return self


def test_line_search_orders_and_problem_selection_give_the_same_solution() -> None:
    """Step sizes one by one (dynamics without ``select``), full step first then the rest for
    the problems that refused it (with ``select``), and all at once: the same iterates; with
    ``select`` finished problems are no longer stepped or linearised."""
    batch, T = 5, 30
    z0, u0 = pendulum_starts(batch), torch.zeros(batch, T, 1, dtype=F64)
    cfg = ILQRConfig(max_iterations=15)
    results, dynamics = [], []
    for dyn, config in [
        (RowCountingDynamics(), cfg),
        (SelectableRowCountingDynamics(), cfg),
        (SelectableRowCountingDynamics(), replace(cfg, parallel_line_search=True)),
    ]:
        results.append(solve_ilqr(dyn, z0, u0, pendulum_cost(batch), -2.0, 2.0, config))
        dynamics.append(dyn)
    one_by_one, full_first, parallel = results
    assert len(set(one_by_one.iterations.tolist())) > 1  # problems stop at different times
    for other in (full_first, parallel):
        np.testing.assert_allclose(other.u.numpy(), one_by_one.u.numpy(), atol=1e-10)
        assert other.iterations.tolist() == one_by_one.iterations.tolist()
    # Without select every call carries all problems (times T in linearize); with it, fewer.
    assert set(dynamics[0].step_rows) == {batch}
    assert set(dynamics[0].linearize_rows) == {T * batch}
    assert min(dynamics[1].step_rows) < batch and min(dynamics[1].linearize_rows) < T * batch
    assert sum(dynamics[1].step_rows) < sum(dynamics[0].step_rows)


def test_linear_dynamics_select_keeps_each_problem() -> None:
    dyn, cost = random_lq(4, 3, 2, seed=3)
    index = torch.tensor([2, 0])
    selected = dyn.select(index)
    z, u = torch.randn(6, 3, dtype=F64), torch.randn(6, 2, dtype=F64)
    for r in range(6):  # row r of the selection is problem index[r mod 2]
        p = int(index[r % 2])
        expected = dyn.A[p] @ z[r] + dyn.B[p] @ u[r] + dyn.c[p]
        np.testing.assert_allclose(selected.step(z, u)[r].numpy(), expected.numpy(), atol=1e-12)
    shared = LinearDynamics(dyn.A[0], dyn.B[0])
    assert shared.select(index) is shared
    # Per-problem boxed problems that finish at different times: batched = one by one.
    z0 = 2 * torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(4))
    u0 = torch.zeros(4, 20, 2, dtype=F64)
    together = solve_ilqr(dyn, z0, u0, cost, -0.5, 0.4, ILQRConfig(tolerance=1e-12))
    assert len(set(together.iterations.tolist())) > 1
    for b in range(4):
        one = LinearDynamics(dyn.A[b], dyn.B[b], dyn.c[b])
        one_cost = QuadraticCost(*(t[b] for t in (cost.Q, cost.R, cost.Q_f)), cost.goal[b : b + 1])
        alone = solve_ilqr(one, z0[b : b + 1], u0[b : b + 1], one_cost, -0.5, 0.4,
                           ILQRConfig(tolerance=1e-12))  # fmt: skip
        np.testing.assert_allclose(together.u[b].numpy(), alone.u[0].numpy(), atol=1e-9)


def test_pendulum_swing_up_plan_float32_and_float64() -> None:
    """One open-loop plan from near hanging reaches upright in both precisions.

    (The problem has many local minima, e.g. spinning over twice; from exactly θ = π the two
    precisions break the symmetry to different sides, so start 0.3 rad off.)"""
    results = {}
    for dtype in (torch.float32, torch.float64):
        z0 = torch.tensor([[math.pi - 0.3, 0.0]], dtype=dtype)
        cost = pendulum_cost(1, dtype, terminal=100.0)
        res = solve_ilqr(
            FunctionDynamics(pendulum_dynamics),
            z0,
            torch.zeros(1, 60, 1, dtype=dtype),
            cost,
            -2.0,
            2.0,
            ILQRConfig(max_iterations=100, tolerance=1e-5),
        )
        assert res.u.dtype == dtype and res.z.dtype == dtype and res.K.dtype == dtype
        assert bool(res.converged.all())
        assert float(res.u.abs().max()) <= 2.0
        end = res.z[0, -1].double()
        assert abs(float(end[0])) < 0.01 and abs(float(end[1])) < 0.01
        # The reported cost is the cost of the returned trajectory.
        recomputed = trajectory_cost(cost, res.z, res.u)
        assert float(recomputed[0]) == pytest.approx(float(res.cost[0]), rel=1e-5)
        results[dtype] = float(res.cost[0])
    assert results[torch.float32] == pytest.approx(results[torch.float64], rel=1e-4)


def test_riccati_step_against_formulas() -> None:
    """Unconstrained: k = -(Q_uu + μI)⁻¹Q_u, K = -(Q_uu + μI)⁻¹Q_uz, and with μ = 0 the exact
    value update; boxed: k is the box QP solution and K has zero rows where k is clamped."""
    gen = torch.Generator().manual_seed(4)
    batch, n, m = 16, 4, 3
    A = torch.randn(batch, n, n, generator=gen, dtype=F64)
    B = torch.randn(batch, n, m, generator=gen, dtype=F64)
    l_z = torch.randn(batch, n, 1, generator=gen, dtype=F64)
    l_u = torch.randn(batch, m, 1, generator=gen, dtype=F64)
    V_z = torch.randn(batch, n, 1, generator=gen, dtype=F64)
    l_zz, l_uu, V_zz = spd(gen, batch, n, n), spd(gen, batch, m, m), spd(gen, batch, n, n)
    F, l_x = torch.cat([A, B], -1), torch.cat([l_z, l_u], 1)
    l_xx = torch.zeros(batch, n + m, n + m, dtype=F64)
    l_xx[:, :n, :n], l_xx[:, n:, n:] = l_zz, l_uu
    eye = torch.eye(m, dtype=F64).expand(batch, m, m)
    inf = torch.full((batch, m), math.inf, dtype=F64)
    # Textbook DDP expansion (Tassa et al. 2014, eq. 5) written out block by block.
    Q_z = l_z + A.mT @ V_z
    Q_u = l_u + B.mT @ V_z
    Q_zz = l_zz + A.mT @ V_zz @ A
    Q_uu = l_uu + B.mT @ V_zz @ B
    Q_uz = B.mT @ V_zz @ A

    s = riccati_step(F, l_x, l_xx, V_z, V_zz, 0.5 * eye, -inf, inf)
    H = Q_uu + 0.5 * eye
    np.testing.assert_allclose(s.k.numpy(), -torch.linalg.solve(H, Q_u).numpy(), atol=1e-10)
    np.testing.assert_allclose(s.K.numpy(), -torch.linalg.solve(H, Q_uz).numpy(), atol=1e-10)
    # Predicted change terms kᵀQ_u and ½kᵀQ_uu k, with the unregularised Q_uu.
    dv_terms = torch.cat([s.k.mT @ Q_u, 0.5 * s.k.mT @ Q_uu @ s.k], -1).squeeze(1)
    np.testing.assert_allclose(s.dv.numpy(), dv_terms.numpy(), atol=1e-10)
    assert s.status.tolist() == [BoxQPStatus.UNCONSTRAINED] * batch

    s0 = riccati_step(F, l_x, l_xx, V_z, V_zz, 0 * eye, -inf, inf)
    V_zz_ref = Q_zz - Q_uz.mT @ torch.linalg.solve(Q_uu, Q_uz)
    V_z_ref = Q_z - Q_uz.mT @ torch.linalg.solve(Q_uu, Q_u)
    np.testing.assert_allclose(s0.V_zz.numpy(), V_zz_ref.numpy(), atol=1e-9)
    np.testing.assert_allclose(s0.V_z.numpy(), V_z_ref.numpy(), atol=1e-9)
    # Predicted change of the full Newton step: kᵀQ_u + ½kᵀQ_uu k = -½ Q_uᵀQ_uu⁻¹Q_u.
    dv_ref = -0.5 * Q_u.mT @ torch.linalg.solve(Q_uu, Q_u)
    np.testing.assert_allclose(s0.dv.sum(-1).numpy(), dv_ref.reshape(-1).numpy(), atol=1e-9)

    # Boxed, μ > 0: k from the box QP; V from Tassa's eq. 11 with the unregularised Q_uu.
    low, high = -0.2 * torch.ones(batch, m, dtype=F64), 0.2 * torch.ones(batch, m, dtype=F64)
    boxed = riccati_step(F, l_x, l_xx, V_z, V_zz, 0.5 * eye, low, high)
    qp = box_qp(H, Q_u[..., 0], low, high)
    np.testing.assert_allclose(boxed.k[..., 0].numpy(), qp.x.numpy(), atol=1e-10)
    clamped = ~qp.free
    assert bool(clamped.any())
    assert float(boxed.K[clamped].abs().max()) == 0.0
    k, K = boxed.k, boxed.K
    V_zz_11 = Q_zz + K.mT @ Q_uu @ K + K.mT @ Q_uz + Q_uz.mT @ K
    V_z_11 = Q_z + K.mT @ Q_uu @ k + K.mT @ Q_u + Q_uz.mT @ k
    np.testing.assert_allclose(boxed.V_zz.numpy(), V_zz_11.numpy(), atol=1e-9)
    np.testing.assert_allclose(boxed.V_z.numpy(), V_z_11.numpy(), atol=1e-9)


def test_function_dynamics_jacobians_and_tiling() -> None:
    z = pendulum_starts(5)
    u = torch.linspace(-1.5, 1.5, 5, dtype=F64)[:, None]
    A, B, c = FunctionDynamics(pendulum_dynamics).linearize(z, u)
    dt = 0.05
    th = z[:, 0]
    np.testing.assert_allclose(A[:, 1, 0].numpy(), (15 * torch.cos(th) * dt).numpy(), atol=1e-12)
    np.testing.assert_allclose(A[:, 0, 0].numpy(), (1 + 15 * torch.cos(th) * dt**2).numpy())
    np.testing.assert_allclose(B[:, :, 0].numpy(), np.tile([3 * dt**2, 3 * dt], (5, 1)))
    f = pendulum_dynamics(z, u)
    np.testing.assert_allclose(
        (A @ z[..., None] + B @ u[..., None])[..., 0].numpy() + c.numpy(), f.numpy(), atol=1e-12
    )
    # LinearDynamics with per-problem matrices: row r of a stacked batch is problem r mod P.
    dyn, _ = random_lq(2, 3, 1, seed=0)
    zz, uu = torch.randn(6, 3, dtype=F64), torch.randn(6, 1, dtype=F64)
    out = dyn.step(zz, uu)
    np.testing.assert_allclose(
        out[3].numpy(), (dyn.A[1] @ zz[3] + dyn.B[1] @ uu[3] + dyn.c[1]).numpy()
    )


def test_user_errors_are_clear() -> None:
    dyn, cost = random_lq(2, 3, 1, seed=0)
    z0, u0 = torch.zeros(2, 3, dtype=F64), torch.zeros(2, 5, 1, dtype=F64)
    with pytest.raises(UserError, match="u_init"):
        solve_ilqr(dyn, z0, torch.zeros(3, 5, 1, dtype=F64), cost)
    with pytest.raises(UserError, match="u_low must be <= u_high"):
        solve_ilqr(dyn, z0, u0, cost, 1.0, -1.0)
    with pytest.raises(UserError, match=r"cost\.Q must be"):
        solve_ilqr(dyn, z0, u0, QuadraticCost(torch.eye(2), cost.R, cost.Q_f, cost.goal))
    with pytest.raises(UserError, match="alphas"):
        ILQRConfig(alphas=(2.0,))
    with pytest.raises(UserError, match=r"to \(B, 3\) states, it gave shape \(2, 2\)"):
        solve_ilqr(FunctionDynamics(lambda z, u: z[:, :2]), z0, u0, cost)
    with pytest.raises(UserError, match="finite states"):
        solve_ilqr(FunctionDynamics(lambda z, u: z + math.inf), z0, u0, cost)


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    """Everything follows z0 onto the GPU (cost, bounds and LinearDynamics may stay on the
    CPU); LQ exactly, the nonlinear pendulum in both precisions."""
    dyn, cost = random_lq(4, 5, 2, seed=3)
    z0, u0 = torch.randn(4, 5, dtype=F64), torch.zeros(4, 30, 2, dtype=F64)
    cpu = solve_ilqr(dyn, z0, u0, cost, -0.5, 0.5)
    gpu = solve_ilqr(dyn, z0.cuda(), u0.cuda(), cost, -0.5, 0.5)
    assert gpu.u.is_cuda and gpu.K.is_cuda
    np.testing.assert_allclose(gpu.u.cpu().numpy(), cpu.u.numpy(), atol=1e-8)

    pend = FunctionDynamics(pendulum_dynamics)
    for dtype in (torch.float32, torch.float64):
        cfg = ILQRConfig(max_iterations=100, tolerance=1e-5, parallel_line_search=True)
        z0 = pendulum_starts(8, dtype)
        cost = pendulum_cost(8, dtype, terminal=100.0)
        cpu = solve_ilqr(pend, z0, torch.zeros(8, 40, 1, dtype=dtype), cost, -2.0, 2.0, cfg)
        gpu_cost = QuadraticCost(cost.Q, cost.R, cost.Q_f, cost.goal.cuda(), (0,))
        u0 = torch.zeros(8, 40, 1, dtype=dtype, device="cuda")
        gpu = solve_ilqr(pend, z0.cuda(), u0, gpu_cost, -2.0, 2.0, cfg)
        assert gpu.u.dtype == dtype and bool(gpu.converged.all())
        # Rounding may pick a different local optimum now and then: compare in aggregate.
        assert float(gpu.cost.sum()) == pytest.approx(float(cpu.cost.sum()), rel=0.05)


def test_float32_stops_at_its_resolution() -> None:
    """A tolerance below float32's resolution: steps predicted to gain less than about one
    unit in the last place of J are refused by the line search (no visible decrease), and
    the solver stops there instead of raising μ for ten more iterations; float32 then needs
    no more iterations than float64 and ends at the same cost."""
    gen = torch.Generator().manual_seed(8150)
    n, m, T, batch = 8, 1, 50, 64
    A = torch.linalg.matrix_exp(0.5 * torch.randn(n, n, generator=gen, dtype=F64))
    A = 0.99 * A / torch.linalg.eigvals(A).abs().max()
    B = 0.5 * torch.randn(n, m, generator=gen, dtype=F64)
    z0 = torch.randn(batch, n, generator=gen, dtype=F64)
    goal = 2 * torch.randn(batch, n, generator=gen, dtype=F64)
    results = {}
    for dtype in (torch.float32, F64):
        eye = torch.eye(n, dtype=dtype)
        cost = QuadraticCost(eye, 0.1 * torch.eye(m, dtype=dtype), 10 * eye, goal.to(dtype))
        dyn = LinearDynamics(A.to(dtype), B.to(dtype))
        u0 = torch.zeros(batch, T, m, dtype=dtype)
        cfg = ILQRConfig(max_iterations=30, tolerance=1e-8)
        results[dtype] = solve_ilqr(dyn, z0.to(dtype), u0, cost, -1.0, 1.0, cfg)
    f32, f64 = results[torch.float32], results[F64]
    assert bool(f32.converged.all()) and bool(f64.converged.all())
    assert int(f32.iterations.max()) <= int(f64.iterations.max()) + 1
    np.testing.assert_allclose(f32.cost.double().numpy(), f64.cost.numpy(), rtol=1e-5)


@pytest.mark.slow  # torch.compile of the sweeps: about a minute on a cold cache
def test_compiled_solve_with_selected_problems_stays_within_the_recompile_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Per-problem dynamics restricted to the problems still iterating (a new object each
    time) must look alike to the compiled step, or every selection recompiles it until torch
    gives up and runs it eagerly. Measured with torch 2.13: 5 graphs of each compiled
    function here, 8 of the closed-loop step when a selection dropped the converted
    parameters; the limit is set to 6, and hitting it raises."""
    torch._dynamo.reset()
    monkeypatch.setattr(ilqr, "_COMPILED", {})
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 6)
    monkeypatch.setattr(torch._dynamo.config, "fail_on_recompile_limit_hit", True)
    dyn, cost = random_lq(6, 3, 2, seed=1)
    z0 = 2 * torch.randn(6, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    u0 = torch.zeros(6, 15, 2, dtype=F64)
    cfg = ILQRConfig(max_iterations=30, compile=True)
    compiled = solve_ilqr(dyn, z0, u0, cost, -0.3, 0.2, cfg)
    assert len(set(compiled.iterations.tolist())) > 1  # problems leave at different times
    eager = solve_ilqr(dyn, z0, u0, cost, -0.3, 0.2, ILQRConfig(max_iterations=30))
    np.testing.assert_allclose(compiled.u.numpy(), eager.u.numpy(), atol=1e-9)


def test_time_steps_are_split_into_chunks_of_one_length() -> None:
    """One chunk length per horizon (each length is a graph to compile), the largest that
    divides T up to the cap; the chunks cover 0 .. T - 1 once, in order."""
    lengths = {T: {c.stop - c.start for c in riccati.chunks(T)} for T in (1, 7, 10, 13, 15, 40, 50)}
    assert lengths == {1: {1}, 7: {7}, 10: {10}, 13: {1}, 15: {5}, 40: {10}, 50: {10}}
    assert [t for c in riccati.chunks(50) for t in range(c.start, c.stop)] == list(range(50))
    assert {c.stop - c.start for c in riccati.chunks(50, most=1)} == {1}
    assert [riccati.riccati_steps_per_call(m) for m in (1, 2, 3)] == [riccati.CHUNK_STEPS, 5, 5]
