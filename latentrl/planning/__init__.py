"""Planning in a (latent) state space: dynamics protocol, box QP, iLQR and receding-horizon MPC."""

from latentrl.planning.boxqp import BoxQPOptions, BoxQPResult, BoxQPStatus, box_qp, solve_free
from latentrl.planning.dynamics import (
    Dynamics,
    FunctionDynamics,
    LinearDynamics,
    pendulum_dynamics,
)
from latentrl.planning.ilqr import (
    ILQRConfig,
    ILQRResult,
    QuadraticCost,
    riccati_step,
    rollout,
    solve_ilqr,
    trajectory_cost,
)
from latentrl.planning.mpc import MPCPlanner

__all__ = [
    "BoxQPOptions",
    "BoxQPResult",
    "BoxQPStatus",
    "Dynamics",
    "FunctionDynamics",
    "ILQRConfig",
    "ILQRResult",
    "LinearDynamics",
    "MPCPlanner",
    "QuadraticCost",
    "box_qp",
    "pendulum_dynamics",
    "riccati_step",
    "rollout",
    "solve_free",
    "solve_ilqr",
    "trajectory_cost",
]
