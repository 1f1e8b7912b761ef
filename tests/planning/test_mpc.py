"""Receding-horizon iLQR: pendulum swing-up, a boxed double integrator, replanning, guesses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from planning_problems import (
    F64,
    double_integrator,
    double_integrator_cost,
    pendulum_planner,
    wrap,
)

from latentrl.errors import UserError
from latentrl.planning import LinearDynamics, MPCPlanner, QuadraticCost, pendulum_dynamics
from latentrl.planning import mpc as mpc_module
from latentrl.planning.cost import goal_distance
from latentrl.planning.options.warm_start import WarmStart, WarmStartConfig


def test_pendulum_swing_up_from_hanging() -> None:
    starts = torch.tensor([[math.pi, 0.0], [math.pi - 0.2, 0.0], [math.pi + 0.1, 0.5]], dtype=F64)
    planner = pendulum_planner()
    planner.reset(batch_size=3)
    z, upright_steps = starts, torch.zeros(3)
    for _ in range(100):
        u = planner.plan(z)
        assert u.shape == (3, 1) and float(u.abs().max()) <= 2.0
        z = pendulum_dynamics(z, u)
        upright_steps += wrap(z[:, 0]).abs() <= math.pi / 6
    assert float(wrap(z[:, 0]).abs().max()) < 0.2
    assert float(z[:, 1].abs().max()) < 0.5
    assert float(upright_steps.min()) >= 35  # swing-up takes about 50 of the 100 steps
    assert planner.predicted_states is not None
    assert planner.predicted_states.shape == (3, 41, 2)


def run_double_integrator(warm_start: str, steps: int = 40) -> tuple[torch.Tensor, int]:
    dyn = double_integrator()
    goal = torch.tensor([[2.0, -1.0, 0.0, 0.0], [-1.0, 0.5, 0.0, 0.0]], dtype=F64)
    initialisers = [WarmStart(WarmStartConfig(fill=warm_start))]  # type: ignore[arg-type]
    planner = MPCPlanner(
        dyn, double_integrator_cost(goal), 15, -1.0, 1.0, initialisers=initialisers
    )
    planner.reset(batch_size=2)
    z, iterations = torch.zeros(2, 4, dtype=F64), 0
    for _ in range(steps):
        u = planner.plan(z)
        assert planner.last_plan is not None
        iterations += int(planner.last_plan.iterations.sum())
        z = dyn.step(z, u)
    return z - goal, iterations


def test_double_integrator_reaches_goal_and_warm_start_saves_iterations() -> None:
    error_cold, cold = run_double_integrator("none")
    error_warm, warm = run_double_integrator("repeat")
    assert float(error_warm.abs().max()) < 0.05
    # Same problems solved to the same tolerance: same closed loop.
    np.testing.assert_allclose(error_warm.numpy(), error_cold.numpy(), atol=1e-6)
    # The box binds early on (the goals are 2 away at |u| <= 1), so a cold start needs several
    # iterations per solve; a shifted plan is nearly optimal already (measured 167 vs 320).
    assert warm < 0.7 * cold


def test_replan_every_executes_stored_plan() -> None:
    dyn = double_integrator()
    goal = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=F64)
    planner = MPCPlanner(dyn, double_integrator_cost(goal), 15, -1.0, 1.0, replan_every=4)
    planner.reset(batch_size=1)
    z, plans, states = torch.zeros(1, 4, dtype=F64), [], []
    for _ in range(8):
        u = planner.plan(z)
        plans.append(planner.last_plan)
        states.append(z)
        z = dyn.step(z, u)
    assert plans[0] is plans[3] and plans[4] is plans[7] and plans[3] is not plans[4]
    # The model is exact, so the executed states follow the stored plan's prediction.
    first = plans[0]
    assert first is not None
    executed = torch.cat(states[:4])
    np.testing.assert_allclose(executed.numpy(), first.z[0, :4].numpy(), atol=1e-12)


def test_feedback_between_replans_wraps_angles() -> None:
    """Between replans the stored plan's feedback sees θ modulo 2π: an env reporting θ in
    [-π, π] gets the same control as the unwrapped state."""
    # Swung up once already: the plan's θ is near 2π, where the env reports θ near 0.
    z = torch.tensor([[2 * math.pi + 0.1, 0.0]], dtype=F64)
    controls = []
    for shift in (0.0, -2 * math.pi):
        planner = pendulum_planner(horizon=20, replan_every=5)
        planner.reset()
        planner.plan(z)
        assert planner.last_plan is not None
        assert float(planner.last_plan.K[0, 1].abs().max()) > 1.0  # the feedback really acts
        plan = planner.last_plan
        z1 = plan.z[:, 1] + torch.tensor([0.02 + shift, 0.02], dtype=F64)
        u1 = planner.plan(z1)
        expected = plan.u[:, 1] + plan.K[:, 1] @ torch.tensor([0.02, 0.02], dtype=F64)
        np.testing.assert_allclose(u1.numpy(), expected.numpy(), atol=1e-12)
        controls.append(u1)
    assert abs(float(controls[0][0, 0])) < 2.0  # unsaturated: the feedback term shows


def test_float32_plans() -> None:
    dyn = double_integrator()
    dyn32 = LinearDynamics(dyn.A.float(), dyn.B.float())
    cost = double_integrator_cost(torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=F64))
    cost32 = QuadraticCost(cost.Q.float(), cost.R.float(), cost.Q_f.float(), cost.goal.float())
    z = torch.zeros(1, 4, dtype=torch.float32)
    planner = MPCPlanner(dyn32, cost32, 15, -1.0, 1.0)
    planner.reset()
    for _ in range(40):
        u = planner.plan(z)
        assert u.dtype == torch.float32
        z = dyn32.step(z, u)
    assert float((z[0] - cost32.goal).abs().max()) < 0.02


def test_planner_errors() -> None:
    with pytest.raises(UserError, match="replan_every"):
        pendulum_planner(horizon=5, replan_every=6)
    planner = pendulum_planner(horizon=5)
    planner.reset(batch_size=2)
    with pytest.raises(UserError, match="batch_size=2"):
        planner.plan(torch.zeros(3, 2, dtype=F64))


def test_bang_bang_sequences_sit_on_the_bounds_in_blocks() -> None:
    sequences = mpc_module.bang_bang_sequences(500, 30, 2, torch.Generator().manual_seed(0))
    assert sequences.shape == (500, 30, 2)
    assert set(sequences.unique().tolist()) == {0.0, 1.0}
    again = mpc_module.bang_bang_sequences(500, 30, 2, torch.Generator().manual_seed(0))
    assert torch.equal(sequences, again)
    # blocks of 5 steps on average (T / 6); a fresh corner repeats the old one half the time
    # per control, so each control changes value about every 10 steps
    changes = (sequences[:, 1:] != sequences[:, :-1]).float().mean()
    assert 0.07 < float(changes) < 0.13
    assert float(sequences.mean()) == pytest.approx(0.5, abs=0.03)


def test_cheapest_guess_takes_the_lowest_rollout_cost_per_problem() -> None:
    dyn = double_integrator()
    goal = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=F64)
    cost = double_integrator_cost(goal)
    z = torch.zeros(2, 4, dtype=F64)
    z[1, 0] = 2.0  # problem 1 starts beyond the goal: it wants to push left
    T = 10
    push = lambda a: torch.full((2, T, 2), a, dtype=F64).index_fill(2, torch.tensor([1]), 0.0)  # noqa: E731
    guesses = torch.cat([push(0.0), push(1.0), push(-1.0)])  # row j·B + b: guess j, problem b
    chosen = mpc_module.cheapest_guess(dyn, z, guesses, cost)
    assert chosen.shape == (2, T, 2)
    assert torch.equal(chosen[0], push(1.0)[0]) and torch.equal(chosen[1], push(-1.0)[1])
    # by hand, through solve-free rollouts: each chosen guess costs least for its problem
    costs = []
    for j in range(3):
        z_t, total = z.clone(), torch.zeros(2, dtype=F64)
        for t in range(T):
            u = guesses[j * 2 : j * 2 + 2, t]
            d = z_t - goal
            total += (d @ cost.Q * d).sum(-1) + (u @ cost.R * u).sum(-1)
            z_t = dyn.step(z_t, u)
        d = z_t - goal
        costs.append(total + (d @ cost.Q_f * d).sum(-1))
    assert torch.stack(costs).argmin(0).tolist() == [1, 2]


def test_goal_distance_is_the_q_norm_of_the_wrapped_residual() -> None:
    planner = pendulum_planner()
    z = torch.tensor([[math.pi - 0.1, 1.0], [-3.0, -2.0], [0.0, 0.0]], dtype=F64)
    by_hand = torch.sqrt(wrap(z[:, 0]) ** 2 + 0.1 * z[:, 1] ** 2)
    assert torch.allclose(goal_distance(planner.cost, z), by_hand)
    assert float(by_hand[0]) == pytest.approx(math.sqrt((math.pi - 0.1) ** 2 + 0.1))


def test_several_guesses_are_solved_together_and_the_cheapest_solution_kept() -> None:
    """With two guesses per problem the planner solves both (as one tiled batch) and keeps,
    per problem, the solution that costs less: the same as solving each guess alone."""

    class TwoGuesses:
        def reset(self) -> None:
            pass

        def guesses(self, solve, guesses):  # type: ignore[no-untyped-def]
            B, T, m = solve.z.shape[0], solve.horizon, solve.m
            return torch.stack([torch.full((B, T, m), -2.0, dtype=F64),
                                torch.full((B, T, m), 2.0, dtype=F64)])  # fmt: skip

    z = torch.tensor([[math.pi - 0.3, 0.0], [math.pi + 0.3, 0.0]], dtype=F64)
    both = pendulum_planner(horizon=15, initialisers=[TwoGuesses()])
    both.reset(batch_size=2)
    both.plan(z)
    costs = []
    for value in (-2.0, 2.0):
        one = pendulum_planner(horizon=15)  # the warm start: u_init at the first solve
        one.reset(batch_size=2, u_init=torch.full((2, 15, 1), value, dtype=F64))
        one.plan(z)
        assert one.last_plan is not None
        costs.append(one.last_plan.cost)
    assert both.last_plan is not None
    expected = torch.stack(costs).min(0).values
    torch.testing.assert_close(both.last_plan.cost, expected)
    assert bool((costs[0] != costs[1]).all())  # the two guesses lead to different plans
    empty = pendulum_planner(horizon=5, initialisers=[])
    empty.reset(batch_size=2)
    with pytest.raises(UserError, match="gave no control sequence"):
        empty.plan(z)
