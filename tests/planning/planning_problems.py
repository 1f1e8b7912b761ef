"""Planning problems shared by the planner and planner-option tests."""

from __future__ import annotations

import math
from typing import Any

import torch

from latentrl.planning import (
    FunctionDynamics,
    ILQRConfig,
    LinearDynamics,
    MPCPlanner,
    QuadraticCost,
    pendulum_dynamics,
)

F64 = torch.float64


def wrap(theta: torch.Tensor) -> torch.Tensor:
    return torch.remainder(theta + math.pi, 2 * math.pi) - math.pi


def pendulum_planner(horizon: int = 40, **kwargs: Any) -> MPCPlanner:
    """The oracle's recipe: true dynamics on (θ, θ̇) with θ unwrapped, cost
    wrap(θ)² + 0.1 θ̇² + 0.001 u² (θ wrapped through ``angle_dims``), terminal weight 10x."""
    Q = torch.diag(torch.tensor([1.0, 0.1], dtype=F64))
    cost = QuadraticCost(
        Q=Q, R=torch.tensor([[1e-3]], dtype=F64), Q_f=10 * Q, goal=torch.zeros(2, dtype=F64),
        angle_dims=(0,),
    )  # fmt: skip
    config = kwargs.pop("config", ILQRConfig(max_iterations=10, tolerance=1e-4))
    return MPCPlanner(
        FunctionDynamics(pendulum_dynamics), cost, horizon, -2.0, 2.0, config, **kwargs
    )


def double_integrator(dt: float = 0.1) -> LinearDynamics:
    """Point mass in the plane: z = (x, y, vx, vy), u = acceleration."""
    A = torch.eye(4, dtype=F64)
    A[0, 2] = A[1, 3] = dt
    B = torch.zeros(4, 2, dtype=F64)
    B[0, 0] = B[1, 1] = 0.5 * dt**2
    B[2, 0] = B[3, 1] = dt
    return LinearDynamics(A, B)


def double_integrator_cost(goal: torch.Tensor) -> QuadraticCost:
    Q = torch.diag(torch.tensor([1.0, 1.0, 0.1, 0.1], dtype=F64))
    return QuadraticCost(Q=Q, R=0.01 * torch.eye(2, dtype=F64), Q_f=10 * Q, goal=goal)
