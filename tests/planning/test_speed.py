"""The speed cost: its augmented cost and dynamics against direct sums and Jacobians, and the
planner's solve against the condensed LQ problem with the moves charged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentrl.errors import UserError
from latentrl.planning import (
    FunctionDynamics,
    ILQRConfig,
    LinearDynamics,
    MPCPlanner,
    QuadraticCost,
    trajectory_cost,
)
from latentrl.planning.speed import PreviousStateDynamics, speed_cost, with_previous

F64 = torch.float64


def spd(gen: torch.Generator, n: int) -> torch.Tensor:
    X = torch.randn(n, n, generator=gen, dtype=F64)
    return X @ X.mT / n + 0.1 * torch.eye(n, dtype=F64)


def lq_problem(n: int = 3, m: int = 2, seed: int = 0) -> tuple[LinearDynamics, QuadraticCost]:
    gen = torch.Generator().manual_seed(seed)
    A = torch.eye(n, dtype=F64) + 0.1 * torch.randn(n, n, generator=gen, dtype=F64)
    B = torch.randn(n, m, generator=gen, dtype=F64)
    c = 0.1 * torch.randn(n, generator=gen, dtype=F64)
    cost = QuadraticCost(
        Q=spd(gen, n), R=0.1 * spd(gen, m), Q_f=3 * spd(gen, n),
        goal=torch.randn(n, generator=gen, dtype=F64),
    )  # fmt: skip
    return LinearDynamics(A, B, c), cost


def test_the_augmented_cost_is_the_goal_cost_plus_every_move() -> None:
    gen = torch.Generator().manual_seed(1)
    _, cost = lq_problem()
    W = spd(gen, 3)
    batch, T = 4, 6
    z = torch.randn(batch, T + 1, 3, generator=gen, dtype=F64)
    u = torch.randn(batch, T, 2, generator=gen, dtype=F64)
    previous = torch.cat([z[:, :1], z[:, :-1]], dim=1)  # the first state's previous: itself
    x = with_previous(z, previous)
    moves = z[:, 1:] - z[:, :-1]
    by_hand = trajectory_cost(cost, z, u) + torch.einsum("btn,nk,btk->b", moves, W, moves)
    torch.testing.assert_close(trajectory_cost(speed_cost(cost, W), x, u), by_hand)


def test_per_problem_weights_are_augmented_row_by_row() -> None:
    gen = torch.Generator().manual_seed(2)
    Q = torch.stack([spd(gen, 2), spd(gen, 2)])
    cost = QuadraticCost(
        Q=Q, R=torch.eye(1, dtype=F64), Q_f=2 * Q, goal=torch.ones(2, 2, dtype=F64)
    )
    W = spd(gen, 2)
    augmented = speed_cost(cost, W)
    assert augmented.Q.shape == (2, 4, 4) and augmented.goal.shape == (2, 4)
    torch.testing.assert_close(augmented.Q[1, :2, :2], Q[1] + W)
    torch.testing.assert_close(augmented.Q_f[0, :2, 2:], -W)
    torch.testing.assert_close(augmented.Q[0, 2:, 2:], W)


def test_the_augmented_linearisation_is_the_jacobian_of_its_step() -> None:
    gen = torch.Generator().manual_seed(3)
    M = torch.randn(3, 3, generator=gen, dtype=F64)
    V = torch.randn(3, 2, generator=gen, dtype=F64)
    dynamics = PreviousStateDynamics(
        FunctionDynamics(lambda z, u: z + 0.1 * torch.tanh(z @ M.T + u @ V.T)), 3
    )
    x = torch.randn(5, 6, generator=gen, dtype=F64)
    u = torch.randn(5, 2, generator=gen, dtype=F64)
    A, B, c = dynamics.linearize(x, u)
    for row in range(5):
        jx, ju = torch.func.jacrev(dynamics.step, argnums=(0, 1))(
            x[row : row + 1], u[row : row + 1]
        )
        torch.testing.assert_close(A[row], jx[0, :, 0])
        torch.testing.assert_close(B[row], ju[0, :, 0])
    affine = (A @ x.unsqueeze(-1)).squeeze(-1) + (B @ u.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(c, dynamics.step(x, u) - affine)


def condensed_with_moves(
    dynamics: LinearDynamics, cost: QuadraticCost, W: torch.Tensor, z0: torch.Tensor, T: int
) -> np.ndarray:
    """Controls (T, m) minimising the goal cost plus Σ_t (z_{t+1} - z_t)ᵀ W (z_{t+1} - z_t)
    for linear dynamics without bounds: one linear system in U = (u_0 .. u_{T-1})."""
    A, B, c = (t.numpy() for t in (dynamics.A, dynamics.B, dynamics.c))
    Q, R, Q_f, g, Wn = (t.numpy() for t in (cost.Q, cost.R, cost.Q_f, cost.goal, W))
    n, m = B.shape
    free = [z0.numpy()]
    for _ in range(T):
        free.append(A @ free[-1] + c)
    M = np.zeros(((T + 1) * n, T * m))  # z_t = free_t + M_t U, z_0 fixed
    for t in range(1, T + 1):
        for s in range(t):
            M[t * n : (t + 1) * n, s * m : (s + 1) * m] = np.linalg.matrix_power(A, t - 1 - s) @ B
    F = np.concatenate(free)
    goal_weights = np.kron(np.eye(T + 1), Q)
    goal_weights[-n:, -n:] = Q_f
    D = np.zeros((T * n, (T + 1) * n))  # moves z_{t+1} - z_t
    for t in range(T):
        D[t * n : (t + 1) * n, t * n : (t + 1) * n] = -np.eye(n)
        D[t * n : (t + 1) * n, (t + 1) * n : (t + 2) * n] = np.eye(n)
    S = goal_weights + D.T @ np.kron(np.eye(T), Wn) @ D
    residual = F - np.tile(g, T + 1)
    H = M.T @ S @ M + np.kron(np.eye(T), R)
    f = M.T @ S @ residual
    return np.linalg.solve(H, -f).reshape(T, m)


def test_the_planner_solves_the_lq_problem_with_its_moves_charged() -> None:
    dynamics, cost = lq_problem()
    W = 5 * torch.eye(3, dtype=F64)
    z0 = torch.tensor([[0.5, -1.0, 2.0]], dtype=F64)
    T = 12
    planner = MPCPlanner(dynamics, cost, T, config=ILQRConfig(tolerance=1e-12), speed_weight=W)
    planner.reset(batch_size=1)
    u = planner.plan(z0)
    expected = condensed_with_moves(dynamics, cost, W, z0[0], T)
    plan = planner.last_plan
    assert plan is not None and plan.z.shape == (1, T + 1, 6)
    np.testing.assert_allclose(plan.u[0].numpy(), expected, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(u[0].numpy(), expected[0], rtol=1e-7, atol=1e-9)
    predicted = planner.predicted_states
    assert predicted is not None and predicted.shape == (1, T + 1, 3)
    torch.testing.assert_close(predicted[:, 0], z0)
    # Without the weight the moves are dearer than with it, and the plan differs.
    plain = MPCPlanner(dynamics, cost, T, config=ILQRConfig(tolerance=1e-12))
    plain.reset(batch_size=1)
    plain.plan(z0)
    assert plain.last_plan is not None and plain.predicted_states is not None

    def moves(z: torch.Tensor) -> float:
        step = z[0, 1:] - z[0, :-1]
        return float(torch.einsum("tn,nk,tk->", step, W, step))

    assert moves(predicted) < 0.9 * moves(plain.predicted_states)


def test_a_zero_weight_plans_as_without_one() -> None:
    dynamics, cost = lq_problem(seed=4)
    z0 = torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(5))
    with_zero = MPCPlanner(dynamics, cost, 8, -0.5, 0.5, speed_weight=torch.zeros(3, 3, dtype=F64))
    without = MPCPlanner(dynamics, cost, 8, -0.5, 0.5)
    for planner in (with_zero, without):
        planner.reset(batch_size=3)
    for _ in range(3):
        u = with_zero.plan(z0)
        torch.testing.assert_close(u, without.plan(z0), rtol=1e-6, atol=1e-8)
        z0 = dynamics.step(z0, u)


def test_between_replans_the_feedback_sees_the_previous_state() -> None:
    """With an exact model the executed states follow the stored plan, the augmented feedback
    sees no deviation, and the controls are the plan's own."""
    dynamics, cost = lq_problem(seed=6)
    planner = MPCPlanner(
        dynamics, cost, 10, -1.0, 1.0, replan_every=4, speed_weight=torch.eye(3, dtype=F64)
    )
    planner.reset(batch_size=1)
    z = torch.tensor([[1.0, 0.0, -1.0]], dtype=F64)
    controls = []
    for _ in range(4):
        controls.append(planner.plan(z))
        z = dynamics.step(z, controls[-1])
    plan = planner.last_plan
    assert plan is not None
    torch.testing.assert_close(torch.cat(controls), plan.u[0, :4], rtol=0, atol=1e-12)


def test_bad_speed_weights_are_refused() -> None:
    dynamics, cost = lq_problem()
    with pytest.raises(UserError, match=r"must be \(3, 3\)"):
        MPCPlanner(dynamics, cost, 5, speed_weight=torch.eye(2, dtype=F64))
    angled = QuadraticCost(cost.Q, cost.R, cost.Q_f, cost.goal, angle_dims=(0,))
    with pytest.raises(UserError, match="without wrapped angles"):
        MPCPlanner(dynamics, angled, 5, speed_weight=torch.eye(3, dtype=F64))
