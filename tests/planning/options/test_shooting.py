"""Shooting: bang-bang guesses rolled out, the cheapest one and the warm start handed on."""

from __future__ import annotations

import math

import pytest
import torch
from planning_problems import F64, pendulum_planner

from latentrl.errors import UserError
from latentrl.planning import MPCPlanner
from latentrl.planning import mpc as mpc_module
from latentrl.planning.cost import QuadraticCost, approach_cost, batch_cost
from latentrl.planning.dynamics import LinearDynamics
from latentrl.planning.options.kinds import Solve
from latentrl.planning.options.shooting import Shooting, ShootingConfig
from latentrl.planning.options.warm_start import WarmStart


def solve_at(planner: MPCPlanner, z: torch.Tensor, step: int = 0) -> Solve:
    """What the shooting sees at a solve of ``planner`` from ``z (B, 2)`` in the ±2 box."""
    low = torch.full((z.shape[0], 1), -2.0, dtype=F64)
    return Solve(z, low, -low, planner.horizon, planner.dynamics, planner.cost, None, 0, step,
                 None, planner._generator)  # fmt: skip


def test_shooting_starts_from_a_guess_no_worse_than_the_warm_start() -> None:
    z = torch.tensor([[math.pi - 0.05, 0.0], [0.5, -2.0]], dtype=F64)
    planner = pendulum_planner(horizon=20, seed=3)
    zeros = torch.zeros(1, 2, 20, 1, dtype=F64)
    guess = Shooting(ShootingConfig(count=64)).guesses(solve_at(planner, z), zeros)[0]
    assert guess.shape == (2, 20, 1) and bool((guess.abs() == 2.0).all())  # a bang-bang one
    tiled = mpc_module._tile_cost(planner.cost, 2, 2)
    both = torch.cat([zeros[0], guess])
    costs = mpc_module.batch_cost(tiled, 4, 2, 1, z)
    states = mpc_module.rollout(planner.dynamics, z.repeat(2, 1), both)
    J = mpc_module.total_cost(costs, states, both)
    assert bool((J[2:] < J[:2]).all())  # cheaper than doing nothing, for both problems
    with pytest.raises(UserError, match="finite bounds"):
        shooting = Shooting(ShootingConfig(count=4))
        unbounded = MPCPlanner(
            planner.dynamics, planner.cost, 20, initialisers=[WarmStart(), shooting]
        )
        unbounded.reset(batch_size=2)
        unbounded.plan(z)


@pytest.mark.parametrize(("steps", "shots"), [(None, 5), (2, 2)])
def test_shooting_only_in_the_first_steps_after_reset(
    steps: int | None, shots: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = mpc_module.cheapest_guess

    def counting(*args):  # type: ignore[no-untyped-def]
        calls.append(len(calls))
        return original(*args)

    monkeypatch.setattr("latentrl.planning.options.shooting.cheapest_guess", counting)
    shooting = Shooting(ShootingConfig(count=8, steps=steps))
    planner = pendulum_planner(horizon=10, initialisers=[WarmStart(), shooting])
    z = torch.tensor([[math.pi - 0.05, 0.0]], dtype=F64)
    for _ in range(2):  # reset starts the count again
        planner.reset(batch_size=1)
        for _ in range(5):
            planner.plan(z)
    assert len(calls) == 2 * shots
    with pytest.raises(UserError, match=r"shooting\.steps must be an int >= 1 or null"):
        ShootingConfig(steps=0)


def test_shooting_beyond_keeps_the_warm_start_of_problems_near_the_goal() -> None:
    planner = pendulum_planner(horizon=20, seed=3)
    shooting = Shooting(ShootingConfig(count=64, beyond=0.5))
    hanging = torch.tensor([[math.pi - 0.05, 0.0], [math.pi - 0.05, 0.0]], dtype=F64)
    zeros = torch.zeros(1, 2, 20, 1, dtype=F64)
    shooting.guesses(solve_at(planner, hanging, step=0), zeros)  # start distances: about π
    # problem 0 within half its start distance (0.5 rad from upright), problem 1 beyond it
    z = torch.tensor([[0.5, 0.0], [math.pi - 0.5, 0.0]], dtype=F64)
    guess = shooting.guesses(solve_at(planner, z, step=1), zeros)[0]
    assert torch.equal(guess[0], zeros[0, 0])
    assert bool((guess[1].abs() == 2.0).all())  # a bang-bang sequence
    near = torch.tensor([[0.5, 0.0], [-1.0, 0.0]], dtype=F64)
    state = planner._generator.get_state()
    assert torch.equal(shooting.guesses(solve_at(planner, near, step=2), zeros), zeros)
    assert torch.equal(planner._generator.get_state(), state)  # no candidates drawn
    with pytest.raises(UserError, match=r"shooting\.beyond must be a finite number >= 0"):
        ShootingConfig(beyond=-0.1)
    with pytest.raises(UserError, match=r"shooting\.count must be an int >= 1"):
        ShootingConfig(count=0)


def test_shooting_scores_its_candidates_with_its_own_terminal_weight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scored: list[QuadraticCost] = []
    original = mpc_module.cheapest_guess

    def spying(dynamics, z, guesses, cost):  # type: ignore[no-untyped-def]
        scored.append(cost)
        return original(dynamics, z, guesses, cost)

    monkeypatch.setattr("latentrl.planning.options.shooting.cheapest_guess", spying)
    planner = pendulum_planner(horizon=20, seed=3)
    z = torch.tensor([[math.pi - 0.05, 0.0]], dtype=F64)
    zeros = torch.zeros(1, 1, 20, 1, dtype=F64)
    Shooting(ShootingConfig(count=8, terminal_weight=50.0)).guesses(solve_at(planner, z), zeros)
    Shooting(ShootingConfig(count=8)).guesses(solve_at(planner, z), zeros)
    torch.testing.assert_close(scored[0].Q_f, 50.0 * planner.cost.Q)
    assert torch.equal(scored[0].Q, planner.cost.Q) and torch.equal(scored[0].R, planner.cost.R)
    assert not torch.equal(planner.cost.Q_f, 50.0 * planner.cost.Q)  # the test tells them apart
    assert scored[1] is planner.cost
    with pytest.raises(UserError, match=r"shooting\.terminal_weight must be a finite number"):
        ShootingConfig(terminal_weight=-1.0)


def test_the_approach_cost_charges_each_step_the_closest_state_so_far() -> None:
    generator = torch.Generator().manual_seed(0)
    batch, horizon, n, m = 3, 6, 2, 1
    Q = torch.diag(torch.tensor([2.0, 0.5], dtype=F64))
    R = torch.tensor([[0.3]], dtype=F64)
    goal = torch.tensor([0.2, -1.0], dtype=F64)
    cost = QuadraticCost(Q=Q, R=R, Q_f=100 * Q, goal=goal, angle_dims=(0,))
    z = 4 * torch.randn(batch, horizon + 1, n, generator=generator, dtype=F64)
    u = torch.randn(batch, horizon, m, generator=generator, dtype=F64)
    J = approach_cost(batch_cost(cost, batch, n, m, z), z, u)
    for b in range(batch):
        closest, by_hand = math.inf, 0.0
        for t in range(horizon + 1):
            r = z[b, t] - goal
            r[0] = math.remainder(float(r[0]), 2 * math.pi)  # the angle's nearest copy
            closest = min(closest, float(r @ Q @ r))
            if t > 0:
                by_hand += closest + float(u[b, t - 1] @ R @ u[b, t - 1])
        assert math.isclose(float(J[b]), by_hand, rel_tol=1e-12)  # Q_f plays no part


def test_approach_scoring_prefers_passing_the_goal_to_staying_short_of_it() -> None:
    # z' = z + u on a line, goal 0, start 3: a guess that crosses the goal at step 2 and runs on
    # to 3 costs more by the planner's total (its end is far) than one that creeps to 1 and
    # stays, and less by the approach score (it came to the goal, the other never did).
    dynamics = LinearDynamics(torch.eye(1, dtype=F64), torch.eye(1, dtype=F64))
    Q = torch.eye(1, dtype=F64)
    cost = QuadraticCost(Q=Q, R=1e-3 * Q, Q_f=Q, goal=torch.zeros(1, dtype=F64))
    start = torch.tensor([[3.0]], dtype=F64)
    through = torch.tensor([-1.5, -1.5, -1.0, -1.0, -1.0, -1.0], dtype=F64)
    short = torch.tensor([-1.0, -1.0, 0.0, 0.0, 0.0, 0.0], dtype=F64)
    guesses = torch.stack([through, short])[:, :, None]
    by_cost = mpc_module.cheapest_guess(dynamics, start, guesses, cost)
    by_approach = mpc_module.cheapest_guess(dynamics, start, guesses, cost, approach_cost)
    assert torch.equal(by_cost[0], short[:, None])
    assert torch.equal(by_approach[0], through[:, None])


def test_shooting_with_approach_scoring_ranks_by_the_approach_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scores: list[object] = []
    original = mpc_module.cheapest_guess

    def spying(dynamics, z, guesses, cost, score=mpc_module.total_cost):  # type: ignore[no-untyped-def]
        scores.append(score)
        return original(dynamics, z, guesses, cost, score)

    monkeypatch.setattr("latentrl.planning.options.shooting.cheapest_guess", spying)
    planner = pendulum_planner(horizon=20, seed=3)
    z = torch.tensor([[math.pi - 0.05, 0.0]], dtype=F64)
    zeros = torch.zeros(1, 1, 20, 1, dtype=F64)
    Shooting(ShootingConfig(count=8, score="approach")).guesses(solve_at(planner, z), zeros)
    Shooting(ShootingConfig(count=8)).guesses(solve_at(planner, z), zeros)
    assert scores == [approach_cost, mpc_module.total_cost]
    with pytest.raises(UserError, match=r"shooting\.score must be one of 'cost', 'approach'"):
        ShootingConfig(score="closest")
    with pytest.raises(UserError, match=r"score = 'approach' does not read it: set it to null"):
        ShootingConfig(score="approach", terminal_weight=10.0)


def test_lookahead_scores_candidates_over_more_steps_and_keeps_the_winners_first_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = mpc_module.cheapest_guess

    def spying(dynamics, z, guesses, cost):  # type: ignore[no-untyped-def]
        best = original(dynamics, z, guesses, cost)
        seen.append((guesses, best))
        return best

    monkeypatch.setattr("latentrl.planning.options.shooting.cheapest_guess", spying)
    planner = pendulum_planner(horizon=20, seed=3)
    z = torch.tensor([[math.pi - 0.05, 0.0], [0.5, -2.0]], dtype=F64)
    warm = torch.full((1, 2, 20, 1), 0.7, dtype=F64)
    guess = Shooting(ShootingConfig(count=16, lookahead=50)).guesses(solve_at(planner, z), warm)
    (scored, best) = seen[0]
    assert scored.shape == ((1 + 16) * 2, 50, 1)  # warm start and candidates, 50 steps each
    torch.testing.assert_close(scored[:2, :20], warm[0])
    assert bool((scored[:2, 20:] == 0).all())  # the warm start continued by zero controls
    assert best.shape == (2, 50, 1) and torch.equal(guess[0], best[:, :20])


def test_lookahead_extends_guesses_with_zero_clamped_into_the_box() -> None:
    from latentrl.planning.options.shooting import extend_with_zeros, search_length

    guesses = torch.ones(2, 2, 3, 1, dtype=F64)
    low = torch.tensor([[0.5], [-1.0]], dtype=F64)  # problem 0's box leaves zero out
    longer = extend_with_zeros(guesses, 5, low, low + 2.0)
    assert longer.shape == (2, 2, 5, 1) and torch.equal(longer[:, :, :3], guesses)
    assert bool((longer[:, 0, 3:] == 0.5).all()) and bool((longer[:, 1, 3:] == 0.0).all())
    assert extend_with_zeros(guesses, 3, low, low + 2.0) is guesses
    assert search_length(None, 40) == 40 and search_length(80, 40) == 80
    with pytest.raises(UserError, match=r"lookahead=30 is shorter than plan\.horizon=40"):
        search_length(30, 40)
    with pytest.raises(UserError, match=r"shooting\.lookahead must be an int >= 1 or null"):
        ShootingConfig(lookahead=0)
