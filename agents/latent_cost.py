"""A state weight fitted to the task's cost: ``plan.state_scale = "cost"``.

The latent planner prices a state by ``(z - z_goal)ᵀ Q (z - z_goal)``. With ``Q = q I`` that
is the latent distance, which can order states unlike the task does (the cart-pole's latents
weigh the cart above the pole: ``latentrl diagnose``'s cost line). Here ``Q = q M``, with ``M``
the symmetric positive semi-definite matrix whose quadratic form best fits, in least squares,
the task's own state cost of the run's training transitions nearest the goal:

    (z_i - z_goal)ᵀ M (z_i - z_goal)  ≈  c(s_i, u_c) - c(s_goal, u_c)

with ``z_i`` the belief mean of the training observation x_i, ``s_i`` its true state (kept in
the dataset), ``u_c`` the action box's centre and ``c`` the env's ``cost``. Only the
:data:`FIT_SHARE` of the rows with the lowest cost are read: a quadratic can follow the cost
near the goal, not where the angles wrap. The agent still acts from pixels alone; the fit reads
the costs of the training data, the signal a reinforcement learner gets as its reward.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latentrl.agents.latent_scale import training_data_of_run
from latentrl.envs.contract import goal_observation, require_control_env, state_costs
from latentrl.errors import UserError
from latentrl.models import E2C

FIT_SAMPLE = 8192
"""Training rows (evenly spaced over the dataset) whose costs are computed."""
FIT_SHARE = 0.25
"""The share of those rows, lowest cost first, that the metric is fitted to."""
_BLOCK = 512  # observations encoded at a time


def quadratic_features(d: Tensor) -> Tensor:
    """Features ``(N, n(n+1)/2)`` of deviations ``d`` ``(N, n)`` in which ``dᵀ M d`` is
    linear in the upper triangle of a symmetric ``M`` (row-major, diagonal included):
    ``d_i d_j`` for ``i <= j``, off-diagonal ones doubled."""
    n = d.shape[1]
    rows, cols = torch.triu_indices(n, n)
    factor = torch.where(rows == cols, 1.0, 2.0).to(d.dtype)
    return d[:, rows] * d[:, cols] * factor


def symmetric_from_upper(entries: Tensor, n: int) -> Tensor:
    """The symmetric ``(n, n)`` matrix with the upper triangle ``entries`` ``(n(n+1)/2,)``."""
    rows, cols = torch.triu_indices(n, n)
    M = torch.zeros(n, n, dtype=entries.dtype, device=entries.device)
    M[rows, cols] = entries
    M[cols, rows] = entries
    return M


def nearest_psd(M: Tensor) -> Tensor:
    """The symmetric positive semi-definite matrix nearest to symmetric ``M`` ``(n, n)`` in
    the Frobenius norm: its negative eigenvalues set to zero."""
    values, vectors = torch.linalg.eigh((M + M.T) / 2)
    return (vectors * values.clamp_min(0.0)) @ vectors.T


def fit_quadratic_metric(d: Tensor, target: Tensor) -> Tensor:
    """The PSD ``M`` ``(n, n)`` with ``dᵀ M d`` the least-squares fit of ``target`` ``(N,)``
    over the deviations ``d`` ``(N, n)`` (float64), projected onto the PSD cone. Raises
    UserError when the fit is zero there: no direction of the latent rises with the cost."""
    d, target = d.double(), target.double()
    n = d.shape[1]
    if d.shape[0] < n * (n + 1) // 2:
        raise UserError(
            f"fitting the state cost needs at least {n * (n + 1) // 2} rows for a latent of "
            f"{n} dimensions, got {d.shape[0]}"
        )
    entries = torch.linalg.lstsq(quadratic_features(d), target[:, None]).solution[:, 0]
    M = nearest_psd(symmetric_from_upper(entries, n))
    if not torch.linalg.eigvalsh(M).max() > 0:
        raise UserError(
            "no direction of the latent rises with the task's cost near the goal, so "
            "plan.state_scale=cost cannot weigh it: use plan.state_scale=unit"
        )
    return M


def lowest_share(costs: np.ndarray, share: float = FIT_SHARE) -> np.ndarray:
    """Indices of the ``share`` of ``costs`` ``(N,)`` that are lowest (at least one), lowest
    first."""
    return np.argsort(costs, kind="stable")[: max(1, round(share * len(costs)))]


@torch.no_grad()
def cost_metric(model: E2C, env: Any, observations: Tensor, states: np.ndarray) -> Tensor:
    """:func:`fit_quadratic_metric` of the belief means of ``observations`` uint8
    ``(N, k, H, W)`` less the goal image's, against :func:`state_costs` of their ``states``
    ``(N, d)``, on the :func:`lowest_share` of the rows. ``(n, n)`` float64 on the model's
    device."""
    costs = state_costs(env, states)
    keep = lowest_share(costs)
    device = next(model.parameters()).device
    picked = observations[torch.as_tensor(keep)]
    latents = torch.cat(
        [
            model.initial_belief(picked[s : s + _BLOCK].to(device)).mean
            for s in range(0, len(picked), _BLOCK)
        ]
    )
    goal = torch.as_tensor(goal_observation(require_control_env(env))[None], device=device)
    z_goal = model.initial_belief(goal).mean
    return fit_quadratic_metric(latents - z_goal, torch.as_tensor(costs[keep], device=device))


def cost_metric_of_run(run_dir: Path | str, model: E2C, env: Any) -> Tensor:
    """:func:`cost_metric` over :data:`FIT_SAMPLE` rows of the run's training data, evenly
    spaced."""
    dataset = training_data_of_run(run_dir, model, "plan.state_scale=cost")
    rows = torch.linspace(0, len(dataset) - 1, min(FIT_SAMPLE, len(dataset))).round().long()
    return cost_metric(model, env, dataset.obs[rows], dataset.state[rows].numpy())
