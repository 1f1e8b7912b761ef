"""Box QP against scipy, free sets, the embedded Cholesky factor and the unrolled Cholesky."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import lsq_linear, minimize

from latentrl.planning import boxqp
from latentrl.planning.boxqp import (
    BoxQPOptions,
    BoxQPStatus,
    box_qp,
    cholesky,
    cholesky_solve,
    solve_free,
)
from latentrl.planning.smallmat import small_matmul, small_matvec

F64 = torch.float64


def random_problems(
    batch: int, m: int, seed: int, dtype: torch.dtype = F64
) -> tuple[torch.Tensor, ...]:
    """SPD H (condition ~1e2), a gradient large enough that bounds bind, boxes around 0."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(batch, m, m, generator=gen, dtype=F64)
    H = X @ X.mT + 0.1 * torch.eye(m, dtype=F64)
    g = 3 * torch.randn(batch, m, generator=gen, dtype=F64)
    lower = -0.2 - torch.rand(batch, m, generator=gen, dtype=F64)
    upper = 0.2 + torch.rand(batch, m, generator=gen, dtype=F64)
    return tuple(t.to(dtype) for t in (H, g, lower, upper))


def scipy_box_qp(H: np.ndarray, g: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """A generic bounded minimiser. (L-BFGS-B stalled 0.5 away from the optimum on one of these
    problems, condition ~1e2; SLSQP is an active-set method and lands within ~1e-8.)"""
    res = minimize(
        lambda x: (0.5 * x @ H @ x + g @ x, H @ x + g),
        np.zeros_like(g),
        jac=True,
        method="SLSQP",
        bounds=list(zip(lower, upper, strict=True)),
        options={"ftol": 1e-16, "maxiter": 1000},
    )
    return res.x


def bvls_box_qp(H: np.ndarray, g: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Exact reference: the QP as bounded least squares ``½|C x - d|²`` with ``H = CᵀC``, solved
    by scipy's finite active-set BVLS."""
    C = np.linalg.cholesky(H).T
    d = -np.linalg.solve(C.T, g)
    return lsq_linear(C, d, bounds=(lower, upper), method="bvls", tol=1e-15).x


def reference_free_set(H, g, x, lower, upper, tol=1e-7):
    grad = H @ x + g
    at_low = np.abs(x - lower) < tol
    at_high = np.abs(x - upper) < tol
    return ~((at_low & (grad > 0)) | (at_high & (grad < 0)))


METHODS = [
    *((m, "auto") for m in range(1, 7)),
    *((m, "projected_newton") for m in (1, 2, 3)),
    *((m, "enumerate") for m in (1, 4)),
]


@pytest.mark.parametrize(("m", "method"), METHODS)
def test_matches_scipy_with_active_bounds(m: int, method: str) -> None:
    H, g, lower, upper = random_problems(64, m, seed=m)
    res = box_qp(H, g, lower, upper, options=BoxQPOptions(method=method))  # type: ignore[arg-type]
    assert bool((res.status >= 0).all())
    clamped_total, free_total = 0, 0
    for b in range(64):
        args = [t[b].numpy() for t in (H, g, lower, upper)]
        x_ref = scipy_box_qp(*args)
        np.testing.assert_allclose(res.x[b].numpy(), x_ref, atol=1e-6)
        np.testing.assert_allclose(res.x[b].numpy(), bvls_box_qp(*args), atol=1e-10)
        free_ref = reference_free_set(*args[:2], x_ref, *args[2:])
        np.testing.assert_array_equal(res.free[b].numpy(), free_ref)
        clamped_total += int((~free_ref).sum())
        free_total += int(free_ref.sum())
    # The random problems really exercise both sets.
    assert clamped_total > 0.1 * 64 * m
    assert free_total > 0.1 * 64 * m


@pytest.mark.parametrize(("m", "method"), [(1, "auto"), (3, "enumerate"), (3, "projected_newton")])
def test_free_cholesky_and_solve(m: int, method: str) -> None:
    H, g, lower, upper = random_problems(32, m, seed=10 + m)
    res = box_qp(H, g, lower, upper, options=BoxQPOptions(method=method))  # type: ignore[arg-type]
    rhs = torch.randn(32, m, 5, dtype=F64)
    out = solve_free(res.chol, res.free, rhs)
    for b in range(32):
        f = res.free[b]
        L = res.chol[b]
        # L Lᵀ is H on the free block, identity elsewhere.
        np.testing.assert_allclose((L @ L.T)[f][:, f].numpy(), H[b][f][:, f].numpy(), atol=1e-12)
        expected = np.zeros((m, 5))
        if f.any():
            expected[f.numpy()] = np.linalg.solve(H[b][f][:, f].numpy(), rhs[b][f].numpy())
        np.testing.assert_allclose(out[b].numpy(), expected, atol=1e-10)


def test_unbounded_is_newton_step_and_status() -> None:
    H, g, _, _ = random_problems(16, 3, seed=3)
    inf = torch.full((3,), float("inf"), dtype=F64)
    res = box_qp(H, g, -inf, inf)
    np.testing.assert_allclose(res.x.numpy(), -torch.linalg.solve(H, g).numpy(), atol=1e-12)
    assert bool((res.status == BoxQPStatus.UNCONSTRAINED).all())
    assert bool(res.free.all())


def test_projected_newton_warm_start_at_solution_stops_at_once() -> None:
    H, g, lower, upper = random_problems(32, 5, seed=7)
    cold = box_qp(H, g, lower, upper)
    warm = box_qp(H, g, lower, upper, x0=cold.x)
    constrained = cold.status != BoxQPStatus.UNCONSTRAINED
    assert bool(constrained.any())
    assert int(warm.iterations[constrained].max()) == 0
    assert int(cold.iterations[constrained].max()) >= 2
    np.testing.assert_allclose(warm.x.numpy(), cold.x.numpy(), atol=1e-12)


@pytest.mark.parametrize("m", [2, 5])
def test_float32_close_to_float64(m: int) -> None:
    H, g, lower, upper = random_problems(64, m, seed=5)
    ref = box_qp(H, g, lower, upper)
    res = box_qp(*(t.float() for t in (H, g, lower, upper)))
    assert res.x.dtype == torch.float32
    np.testing.assert_allclose(res.x.double().numpy(), ref.x.numpy(), atol=2e-4)
    assert float((res.free == ref.free).float().mean()) > 0.98


@pytest.mark.parametrize("method", ["enumerate", "projected_newton"])
def test_indefinite_hessian_is_reported(method: str) -> None:
    H = torch.stack([torch.eye(2, dtype=F64), -torch.eye(2, dtype=F64)])
    g = torch.tensor([[0.1, 0.1], [0.1, 0.1]], dtype=F64)
    one = torch.ones(2, dtype=F64)
    res = box_qp(H, g, -one, one, options=BoxQPOptions(method=method))  # type: ignore[arg-type]
    assert res.status.tolist() == [BoxQPStatus.UNCONSTRAINED, BoxQPStatus.NOT_POSITIVE_DEFINITE]
    inf = torch.full((2,), float("inf"), dtype=F64)
    scalar = box_qp(-H[:, :1, :1], g[:, :1], -inf[:1], inf[:1])
    assert scalar.status.tolist() == [BoxQPStatus.NOT_POSITIVE_DEFINITE, BoxQPStatus.UNCONSTRAINED]


@pytest.mark.parametrize("m", [1, 2, 4, 6])
def test_cholesky_matches_torch(m: int) -> None:
    X = torch.randn(8, m, m, dtype=F64)
    H = X @ X.mT + 0.1 * torch.eye(m, dtype=F64)
    L, ok = cholesky(H)
    assert bool(ok.all())
    np.testing.assert_allclose(L.numpy(), torch.linalg.cholesky(H).numpy(), atol=1e-12)
    rhs = torch.randn(8, m, 2, dtype=F64)
    np.testing.assert_allclose(
        cholesky_solve(L, rhs).numpy(), torch.linalg.solve(H, rhs).numpy(), atol=1e-10
    )
    _, ok_bad = cholesky(-H)
    assert not bool(ok_bad.any())


def test_faces_traced_by_torch_compile_match_the_cached_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu = torch.device("cpu")
    cached = {m: boxqp._faces(m, cpu) for m in (1, 2, 3)}
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    for m, (at_low, at_up) in cached.items():
        traced_low, traced_up = boxqp._faces(m, cpu)
        assert torch.equal(traced_low, at_low) and torch.equal(traced_up, at_up)
        assert not (at_low[0].any() or at_up[0].any())  # face 0: every dimension free
        assert at_low.shape == (3**m, m) and not (at_low & at_up).any()


def test_small_matmul_traced_equals_matmul() -> None:
    """The broadcast-and-sum form used while compiling equals ``@``, batch dims broadcast.
    Dynamo traces it (so the compiling branch runs) with the eager backend: inductor's code
    generation would add seconds and nothing this test asserts."""
    gen = torch.Generator().manual_seed(5)
    cases = [
        (torch.randn(4, 3, 5, generator=gen), torch.randn(4, 5, 2, generator=gen)),
        (torch.randn(6, 3, generator=gen), torch.randn(3, 3, generator=gen)),  # rows @ shared
        (torch.randn(2, 7, 4, 4, generator=gen), torch.randn(2, 1, 4, 1, generator=gen)),
    ]
    compiled = torch.compile(small_matmul, backend="eager")
    for a, b in cases:
        torch.testing.assert_close(compiled(a, b), a @ b)
        assert small_matmul(a, b).equal(a @ b)  # eager: the plain product
    M, v = torch.randn(5, 3, 4, generator=gen), torch.randn(5, 4, generator=gen)
    traced = torch.compile(small_matvec, backend="eager")
    torch.testing.assert_close(traced(M, v), (M @ v[..., None])[..., 0])
