"""The goal check against answers known in closed form: least-squares holding actions, the
box share, the push agreement, and the whole check on a linear env whose model is exact,
mirrored, or drifting, and whose encoder orders states by the task's cost or not."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import Tensor

from latentrl.diagnostics.goal_check import (
    box_share,
    holding_action,
    measure_goal,
    opposite_pushes,
    push_agreement,
)
from latentrl.diagnostics.ranks import rank_correlation
from latentrl.diagnostics.report import cost_line, figures, goal_lines, summary_metrics

A_TRUE = np.array([[1.0, 0.1], [-0.2, 0.95]])
B_TRUE = np.array([[0.0], [0.3]])


class LinearEnv:
    """s' = A s + B u on a 2-D box, goal at the origin; an observation is the state itself;
    the cost sᵀ diag(weights) s + uᵀu."""

    state_space = spaces.Box(-5.0, 5.0, shape=(2,), dtype=np.float64)
    angle_dims: tuple[int, ...] = ()

    def __init__(self, weights: tuple[float, float] = (1.0, 1.0)) -> None:
        self.weights = np.asarray(weights)

    def sample_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-5.0, 5.0, size=(n, 2))

    def cost(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return (states**2 @ self.weights) + (actions**2).sum(-1)

    def is_valid(self, states: np.ndarray) -> np.ndarray:
        return np.ones(len(states), dtype=bool)

    def goal_state(self) -> np.ndarray:
        return np.zeros(2)

    def observe(self, states: np.ndarray) -> np.ndarray:
        return np.asarray(states, dtype=np.float64).copy()

    def next_states(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return states @ A_TRUE.T + actions @ B_TRUE.T


class LinearModel:
    """f(z, u) = A z + B u + o as planner dynamics."""

    def __init__(self, B: np.ndarray, o: np.ndarray | None = None) -> None:
        self.A = torch.as_tensor(A_TRUE)
        self.B = torch.as_tensor(B)
        self.o = torch.as_tensor(np.zeros(2) if o is None else o)

    def step(self, z: Tensor, u: Tensor) -> Tensor:
        return z @ self.A.T + u @ self.B.T + self.o

    def linearize(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch = z.shape[0]
        return self.A.expand(batch, 2, 2), self.B.expand(batch, 2, 1), self.o.expand(batch, 2)


def check(
    model: LinearModel,
    low: float = -2.0,
    high: float = 2.0,
    env: LinearEnv | None = None,
    encode: Callable[[np.ndarray], Tensor] = torch.as_tensor,
) -> dict:
    return measure_goal(
        LinearEnv() if env is None else env,
        encode,
        model,
        np.array([low]),
        np.array([high]),
        typical_move=0.5,
        posterior_std=0.1,
        states=16,
        steps=4,
        rng=np.random.default_rng(0),
    )


def test_the_holding_action_is_the_least_squares_one() -> None:
    rng = np.random.default_rng(1)
    B, drift, centre = rng.normal(size=(5, 2)), rng.normal(size=5), rng.normal(size=2)
    u, residual = holding_action(*(torch.as_tensor(a) for a in (drift, B, centre)))
    expected = np.linalg.lstsq(B, -drift, rcond=None)[0]
    np.testing.assert_allclose(u.numpy() - centre, expected, atol=1e-10)
    np.testing.assert_allclose(B.T @ residual.numpy(), 0.0, atol=1e-10)  # orthogonal to B
    square = rng.normal(size=(2, 2))
    u, residual = holding_action(
        torch.as_tensor(drift[:2]), torch.as_tensor(square), torch.zeros(2)
    )
    np.testing.assert_allclose(u.numpy(), -np.linalg.solve(square, drift[:2]), atol=1e-10)
    np.testing.assert_allclose(residual.numpy(), 0.0, atol=1e-10)


def test_the_box_share_is_the_farthest_reach_from_the_centre() -> None:
    low, high = torch.tensor([-1.0, 0.0]), torch.tensor([3.0, 1.0])
    assert box_share(torch.tensor([1.0, 0.5]), low, high) == 0.0
    assert box_share(torch.tensor([3.0, 0.5]), low, high) == 1.0
    assert box_share(torch.tensor([2.0, 2.0]), low, high) == 3.0  # (2 - 0.5) / 0.5


def test_the_push_agreement_reads_direction_and_size() -> None:
    true = torch.tensor([[1.0, 2.0], [0.0, 1.0], [3.0, 0.0]])
    predicted = torch.stack([true[0], -2 * true[1], torch.tensor([0.0, 5.0])])
    cosine, size = push_agreement(true, predicted)
    np.testing.assert_allclose(cosine.numpy(), [1.0, -1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(size.numpy(), [1.0, 2.0, 5.0 / 3.0], atol=1e-12)


def test_opposite_pushes_are_opposite_corners() -> None:
    low, high = np.array([-1.0, 0.0, 2.0]), np.array([1.0, 4.0, 3.0])
    plus, minus = opposite_pushes(low, high, 50, np.random.default_rng(0))
    np.testing.assert_allclose(plus + minus, np.broadcast_to(low + high, plus.shape))
    np.testing.assert_allclose(
        np.abs(plus - (low + high) / 2), np.broadcast_to((high - low) / 2, plus.shape)
    )
    assert (plus[:, 0] == 1.0).all() and len({tuple(p) for p in plus}) > 1


def test_an_exact_model_holds_its_goal_and_pushes_as_the_env() -> None:
    g = check(LinearModel(B_TRUE))
    assert g["drift"] == pytest.approx(0.0, abs=1e-12) and g["holding_box_share"] == 0.0
    np.testing.assert_allclose(g["push"]["cosine"]["mean"], 1.0, atol=1e-12)
    np.testing.assert_allclose(g["push"]["size_ratio"]["mean"], 1.0, atol=1e-12)
    assert g["push"]["wrong_way"] == [0.0] * 4
    assert g["control_gain"] == pytest.approx(0.3 / 0.5)
    # opposite pushes of +-2 differ by 4 in u: one step moves the state by B * 4 = (0, 1.2)
    assert g["push"]["effect_in_std"][0] == pytest.approx(1.2 / 0.1)


def test_a_mirrored_push_points_the_wrong_way() -> None:
    g = check(LinearModel(-B_TRUE))
    np.testing.assert_allclose(g["push"]["cosine"]["mean"], -1.0, atol=1e-12)
    assert g["push"]["wrong_way"] == [1.0] * 4


def test_a_drift_beyond_the_box_cannot_be_held() -> None:
    g = check(LinearModel(B_TRUE, o=np.array([0.0, 0.9])))  # holding takes u = -3
    assert g["drift"] == pytest.approx(0.9 / 0.5)
    assert g["holding_action"] == pytest.approx([-3.0])
    assert g["holding_box_share"] == pytest.approx(1.5)
    assert g["holding_residual"] == pytest.approx(0.0, abs=1e-12)
    shifted = check(LinearModel(B_TRUE, o=np.array([0.0, 0.9])), low=-4.0, high=0.0)
    assert shifted["holding_box_share"] == pytest.approx(0.5)  # u = -3 in a box centred at -2


def test_an_encoder_that_keeps_the_costs_order_ranks_states_as_the_task() -> None:
    cost = check(LinearModel(B_TRUE))["cost"]  # identity encoder, cost |s|² + const
    assert cost["states"] == 16
    for where in ("near_goal", "anywhere"):
        part = cost[where]
        assert part["rank_correlation"] == pytest.approx(1.0)
        distance, task = np.asarray(part["latent_distance"]), np.asarray(part["task_cost"])
        np.testing.assert_allclose(task - distance, 0.0, atol=1e-12)  # u = 0 at the box's centre
    near = np.asarray(cost["near_goal"]["latent_distance"])
    assert near.max() <= 2 * (0.2 * 5.0) ** 2 + 1e-12  # within a fifth of the box of the goal


def test_an_encoder_that_weighs_the_wrong_coordinate_ranks_states_otherwise() -> None:
    env = LinearEnv(weights=(0.0, 1.0))  # the task prices s_2 alone; the latent s_1 alone
    first_only = torch.tensor([1.0, 0.0], dtype=torch.float64)
    cost = check(
        LinearModel(B_TRUE), env=env, encode=lambda obs: torch.as_tensor(obs) * first_only
    )["cost"]
    for where in ("near_goal", "anywhere"):
        part = cost[where]
        s1 = np.asarray(part["latent_distance"])  # s_1², independent of s_2² under uniform draws
        expected = rank_correlation(s1, np.asarray(part["task_cost"]))
        assert part["rank_correlation"] == pytest.approx(expected)
        assert abs(part["rank_correlation"]) < 0.5
    collapsed = check(
        LinearModel(B_TRUE), encode=lambda obs: torch.zeros(len(obs), 2, dtype=torch.float64)
    )
    assert collapsed["cost"]["near_goal"]["rank_correlation"] is None


def test_the_cost_line_says_when_the_order_is_unlike_the_tasks_and_older_reports_read() -> None:
    g = check(LinearModel(B_TRUE))
    assert len(goal_lines(g)) == 3 and goal_lines(g)[-1] == cost_line(g["cost"])
    assert "rank correlation 1.00, and as many states from the whole state box with 1.00" in (
        cost_line(g["cost"])
    )
    assert cost_line(g["cost"]).endswith("(1: the same order)")
    low = {**g["cost"], "near_goal": {**g["cost"]["near_goal"], "rank_correlation": 0.3}}
    assert cost_line(low).endswith("orders states near the goal unlike the task's")
    flat = {**g["cost"], "near_goal": {**g["cost"]["near_goal"], "rank_correlation": None}}
    assert "rank correlation undefined (a constant distance)" in cost_line(flat)
    older = {key: value for key, value in g.items() if key != "cost"}  # before the cost check
    assert len(goal_lines(older)) == 2 and "diagnose/cost_rank_near_goal" not in summary_metrics(
        {"goal": older}
    )
    assert summary_metrics({"goal": g})["diagnose/cost_rank_anywhere"] == pytest.approx(1.0)
    assert figures({"goal": older})["goal"].shape == (400, 550, 3)
    assert figures({"goal": g})["goal"].shape == (400, 1100, 3)
