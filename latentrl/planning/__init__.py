"""Planning in a (latent) state space: dynamics protocol, quadratic cost, box QP, iLQR and
receding-horizon MPC."""

from latentrl.planning.boxqp import BoxQPOptions, BoxQPResult, BoxQPStatus, box_qp, solve_free
from latentrl.planning.cost import QuadraticCost, trajectory_cost, wrap_angles
from latentrl.planning.dynamics import (
    Dynamics,
    FunctionDynamics,
    LinearDynamics,
    SelectableDynamics,
    pendulum_dynamics,
    rollout,
    select_problems,
)
from latentrl.planning.ilqr import ILQRConfig, ILQRResult, control_bounds, riccati_step, solve_ilqr
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
    "SelectableDynamics",
    "box_qp",
    "control_bounds",
    "pendulum_dynamics",
    "riccati_step",
    "rollout",
    "select_problems",
    "solve_free",
    "solve_ilqr",
    "trajectory_cost",
    "wrap_angles",
]
