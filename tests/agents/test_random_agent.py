"""The random agent: uniform in the box, reproducible from its seed."""

from __future__ import annotations

import numpy as np
import pytest

from latentrl.agents import Agent, RandomAgent
from latentrl.errors import UserError


def test_actions_are_uniform_in_the_box_and_seeded() -> None:
    agent = RandomAgent(np.array([-2.0, 0.0]), np.array([2.0, 1.0]), seed=3)
    assert isinstance(agent, Agent)
    goal = np.zeros((1, 4, 4), np.uint8)
    agent.reset(goal, 5_000)
    u = agent.act(np.zeros((5_000, 1, 4, 4), np.uint8), np.zeros((5_000, 2)))
    assert u.shape == (5_000, 2) and u.dtype == np.float32
    assert u[:, 0].min() >= -2.0 and u[:, 0].max() <= 2.0
    assert u[:, 1].min() >= 0.0 and u[:, 1].max() <= 1.0
    np.testing.assert_allclose(u.mean(axis=0), [0.0, 0.5], atol=0.05)
    np.testing.assert_allclose(u.std(axis=0), [4 / np.sqrt(12), 1 / np.sqrt(12)], rtol=0.05)
    agent.reset(goal, 5_000)  # a reset restarts the generator: the same actions again
    np.testing.assert_array_equal(agent.act(np.zeros((5_000, 1, 4, 4), np.uint8), None), u)


def test_bad_boxes_and_batches_are_refused() -> None:
    with pytest.raises(UserError, match="finite action box"):
        RandomAgent(np.array([-np.inf]), np.array([1.0]))
    with pytest.raises(UserError, match="low must be <= high"):
        RandomAgent(np.array([1.0]), np.array([0.0]))
    agent = RandomAgent(np.array([-1.0]), np.array([1.0]))
    agent.reset(np.zeros((1, 4, 4), np.uint8), 2)
    with pytest.raises(UserError, match="batch_size=2 but got 3"):
        agent.act(np.zeros((3, 1, 4, 4), np.uint8), None)
