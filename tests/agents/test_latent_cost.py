"""plan.state_scale = "cost": the planner's state weight fitted to the task's cost."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from latentrl.agents import LatentMPCAgent
from latentrl.agents.latent_cost import (
    cost_metric,
    fit_quadratic_metric,
    lowest_share,
    nearest_psd,
    quadratic_features,
    symmetric_from_upper,
)
from latentrl.checkpoint import load_model
from latentrl.config import PlanConfig
from latentrl.data import load_transitions
from latentrl.envs import make_env, require_control_env, state_costs
from latentrl.errors import UserError


def random_psd(n: int, rank: int, rng: np.random.Generator) -> torch.Tensor:
    L = torch.as_tensor(rng.normal(size=(n, rank)))
    return L @ L.T


def test_the_features_make_the_quadratic_form_linear_in_the_upper_triangle() -> None:
    rng = np.random.default_rng(0)
    M = torch.as_tensor(rng.normal(size=(4, 4)))
    M = M + M.T
    d = torch.as_tensor(rng.normal(size=(30, 4)))
    rows, cols = torch.triu_indices(4, 4)
    np.testing.assert_allclose(
        quadratic_features(d) @ M[rows, cols], torch.einsum("bi,ij,bj->b", d, M, d), rtol=1e-12
    )
    assert torch.equal(symmetric_from_upper(M[rows, cols], 4), M)


def test_the_nearest_psd_matrix_drops_the_negative_eigenvalues() -> None:
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    M = torch.as_tensor(Q @ np.diag([2.0, -1.0, 0.5]) @ Q.T)
    np.testing.assert_allclose(nearest_psd(M), Q @ np.diag([2.0, 0.0, 0.5]) @ Q.T, atol=1e-12)
    psd = random_psd(3, 3, rng)
    np.testing.assert_allclose(nearest_psd(psd), psd, atol=1e-12)


def test_an_exact_quadratic_cost_is_recovered_and_a_noisy_one_fitted_in_least_squares() -> None:
    rng = np.random.default_rng(2)
    M = random_psd(5, 2, rng)  # semi-definite: rank 2 of 5
    d = torch.as_tensor(rng.normal(size=(400, 5)))
    cost = torch.einsum("bi,ij,bj->b", d, M, d)
    np.testing.assert_allclose(fit_quadratic_metric(d, cost), M, atol=1e-8)
    noisy = cost + torch.as_tensor(rng.normal(scale=0.1, size=400))
    features = quadratic_features(d).numpy()
    expected = np.linalg.lstsq(features, noisy.numpy(), rcond=None)[0]
    fitted = fit_quadratic_metric(d, noisy)
    unprojected = symmetric_from_upper(torch.as_tensor(expected), 5)
    np.testing.assert_allclose(fitted, nearest_psd(unprojected), atol=1e-10)


def test_a_cost_no_direction_rises_with_or_too_few_rows_are_refused() -> None:
    d = torch.as_tensor(np.random.default_rng(3).normal(size=(50, 3)))
    with pytest.raises(UserError, match="no direction of the latent rises with the task's cost"):
        fit_quadratic_metric(d, -(d**2).sum(-1))
    with pytest.raises(UserError, match="needs at least 6 rows for a latent of 3 dimensions"):
        fit_quadratic_metric(d[:5], (d[:5] ** 2).sum(-1))


def test_a_latent_that_is_the_state_gets_the_tasks_own_weights() -> None:
    """On the cart-pole (cost 0.1 x² + θ² + 0.1 θ̇², angle wrapped, + 0.001 u²), with the
    state as the latent, the fit to the lowest-cost quarter is the cost's diagonal: no angle
    among them wraps."""
    env = make_env("latentrl/CartpoleSwingup-v0")
    try:
        task = require_control_env(env)
        states = task.sample_states(2000, np.random.default_rng(4))
        costs = state_costs(env, states)
        keep = lowest_share(costs)
    finally:
        env.close()
    theta = (states[:, 1] + np.pi) % (2 * np.pi) - np.pi
    by_hand = 0.1 * states[:, 0] ** 2 + theta**2 + 0.1 * states[:, 3] ** 2
    np.testing.assert_allclose(costs, by_hand, rtol=1e-12)
    assert len(keep) == 500 and costs[keep].max() <= np.quantile(costs, 0.25)
    assert np.abs(states[keep, 1]).max() < 2.0  # far from the wrap at ±π
    deviations = torch.as_tensor(states[keep] - task.goal_state())
    metric = fit_quadratic_metric(deviations, torch.as_tensor(costs[keep]))
    np.testing.assert_allclose(metric, np.diag([0.1, 1.0, 0.0, 0.1]), atol=1e-8)


def test_the_agent_plans_with_the_metric_fitted_to_its_runs_data(planar_run: Path) -> None:
    plan = PlanConfig(horizon=5, max_iterations=2, q=2.0, q_f=30.0, state_scale="cost")
    env = make_env("latentrl/Planar-v0")
    try:
        agent = LatentMPCAgent.from_run(planar_run, env, plan=plan)
        model, _ = load_model(planar_run, "cpu")
        data = load_transitions(planar_run.parent / "planar_data")
        metric = cost_metric(model, env, data.obs, data.state.numpy())  # every row: <= 8192
    finally:
        env.close()
    cost = agent.planner.cost
    assert torch.allclose(cost.Q, 2.0 * metric.to(cost.Q.dtype))
    assert torch.allclose(cost.Q_f, 30.0 * metric.to(cost.Q.dtype))
    assert not torch.allclose(metric, metric[0, 0] * torch.eye(len(metric), dtype=metric.dtype))
    (planar_run / "run.json").write_text(json.dumps({"dataset": str(planar_run / "gone")}))
    env = make_env("latentrl/Planar-v0")
    try:
        with pytest.raises(UserError, match=r"^plan.state_scale=cost needs the run's training"):
            LatentMPCAgent.from_run(planar_run, env, plan=plan)
    finally:
        env.close()
