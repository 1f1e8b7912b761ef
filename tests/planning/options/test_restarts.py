"""Restarts: random guesses in the box solved alongside the warm start, the cheapest kept."""

from __future__ import annotations

import math

import pytest
import torch
from planning_problems import F64, pendulum_planner

from latentrl.errors import UserError
from latentrl.planning import FunctionDynamics, MPCPlanner, pendulum_dynamics
from latentrl.planning.options.kinds import Solve
from latentrl.planning.options.restarts import Restarts, RestartsConfig
from latentrl.planning.options.warm_start import WarmStart


def test_restarts_keep_the_cheapest_plan() -> None:
    z = torch.tensor([[math.pi - 0.05, 0.0], [0.5, -2.0]], dtype=F64)
    single = pendulum_planner(horizon=30)
    single.reset(batch_size=2)
    single.plan(z)
    restarts = Restarts(RestartsConfig(count=3))
    multi = pendulum_planner(horizon=30, initialisers=[WarmStart(), restarts], seed=1)
    multi.reset(batch_size=2)
    multi.plan(z)
    assert single.last_plan is not None and multi.last_plan is not None
    assert multi.last_plan.u.shape == (2, 30, 1)
    assert bool((multi.last_plan.cost <= single.last_plan.cost + 1e-9).all())


def test_restarts_append_uniform_draws_in_the_box_from_the_planners_generator() -> None:
    z = torch.zeros(3, 2, dtype=F64)
    low = torch.full((3, 1), -2.0, dtype=F64)
    high = torch.tensor([[2.0], [1.0], [0.5]], dtype=F64)
    planner = pendulum_planner(horizon=7)
    solve = Solve(z, low, high, 7, planner.dynamics, planner.cost, None, 0, 0, None,
                  torch.Generator().manual_seed(4))  # fmt: skip
    first = torch.zeros(1, 3, 7, 1, dtype=F64)
    out = Restarts(RestartsConfig(count=200)).guesses(solve, first)
    assert out.shape == (201, 3, 7, 1) and torch.equal(out[0], first[0])
    unit = torch.rand(200, 3, 7, 1, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(out[1:], low[:, None] + unit.double() * (high - low)[:, None])
    assert bool((out[1:].amax((0, 2, 3)) <= high[:, 0]).all())
    assert float(out[1:, 2].max()) > 0.4  # reaches the top of the narrowest box


def test_restarts_need_a_count_and_finite_bounds() -> None:
    with pytest.raises(UserError, match=r"restarts\.count must be an int >= 1, got 0"):
        RestartsConfig(count=0)
    planner = MPCPlanner(
        FunctionDynamics(pendulum_dynamics), pendulum_planner().cost, 5,
        initialisers=[WarmStart(), Restarts(RestartsConfig(2))],
    )  # fmt: skip
    planner.reset(batch_size=1)
    with pytest.raises(UserError, match="restarts draw controls uniformly in the box"):
        planner.plan(torch.zeros(1, 2, dtype=F64))
