"""Blocked pushes: a push that moved the latent too little is dropped from the dynamics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentrl.errors import UserError
from latentrl.planning import FunctionDynamics
from latentrl.planning.options.blocked_pushes import (
    MAX_BLOCKED,
    BlockedDirections,
    BlockedPushes,
    BlockedPushesConfig,
    blocked_directions,
    update_blocked,
)
from latentrl.planning.options.kinds import Episode, Step


def test_blocked_directions_are_the_actions_that_moved_the_latent_too_little() -> None:
    u = torch.tensor([[2.0, 2.0], [2.0, 0.0], [0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    predicted = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    moved = torch.tensor([[0.1, 0.0], [0.9, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    d, free = blocked_directions(moved, predicted, u, ratio=0.5)
    # blocked: moved 0.1 of a predicted 1.41; free: 0.9 of 1; no action; no predicted move
    np.testing.assert_allclose(d.numpy(), [[0.5**0.5, 0.5**0.5], [0, 0], [0, 0], [0, 0]])
    assert free.tolist() == [False, True, False, False]  # only a tried move that worked frees


def test_blocked_dynamics_drop_pushes_into_blocked_directions_exactly() -> None:
    """g(z, u) = f(z, u - Σ max(0, d_kᵀu) d_k): a push into a blocked direction moves nothing,
    pulling away and moving across move as before, two blocks at a corner stop both pushes;
    linearize gives g's exact Jacobian; rows tile as problem r mod B; select picks."""
    W = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=torch.float64)
    inner = FunctionDynamics(lambda z, u: z + torch.tanh(u @ W.mT))
    root = 0.5**0.5
    d = torch.tensor(
        [
            [[1.0, 0.0], [0.0, 0.0]],  # a wall on the right
            [[1.0, 0.0], [0.0, 0.0]],
            [[root, root], [-root, root]],  # a corner: down-right and down-left blocked
            [[0.0, 0.0], [0.0, 0.0]],  # nothing blocked
        ],
        dtype=torch.float64,
    )
    g = BlockedDirections(inner, d)
    z = torch.tensor([[0.2, -0.1], [0.3, 0.4], [0.0, 0.1], [0.5, 0.5]], dtype=torch.float64)
    u = torch.tensor([[1.5, -0.7], [-1.5, -0.7], [0.0, 2.0], [1.5, -0.7]], dtype=torch.float64)
    seen = torch.tensor([[0.0, -0.7], [-1.5, -0.7], [0.0, 0.0], [1.5, -0.7]], dtype=torch.float64)
    np.testing.assert_allclose(g.step(z, u).numpy(), inner.step(z, seen).numpy(), atol=1e-12)
    A, B, c = g.linearize(z, u)
    for b in range(4):  # g's exact Jacobian at each problem's (z, u)
        one = BlockedDirections(inner, d[b : b + 1])
        J_z, J_u = torch.func.jacrev(
            lambda z1, u1, one=one: one.step(z1[None], u1[None])[0], argnums=(0, 1)
        )(z[b], u[b])
        np.testing.assert_allclose(A[b].numpy(), J_z.numpy(), atol=1e-12)
        np.testing.assert_allclose(B[b].numpy(), J_u.numpy(), atol=1e-12)
    np.testing.assert_allclose(B[0, :, 0].numpy(), [0.0, 0.0])  # pushing right: no effect
    np.testing.assert_allclose(B[2].numpy(), np.zeros((2, 2)), atol=1e-12)  # the corner
    lin = (A @ z[..., None] + B @ u[..., None]).squeeze(-1) + c
    np.testing.assert_allclose(lin.numpy(), g.step(z, u).numpy(), atol=1e-12)
    tiled = g.step(z.repeat(3, 1), u.repeat(3, 1))  # line-search tiling: row j·B + b
    np.testing.assert_allclose(tiled.numpy(), g.step(z, u).repeat(3, 1).numpy())
    np.testing.assert_allclose(g.select(torch.tensor([3])).step(z[3:], u[3:]).numpy(),
                               inner.step(z[3:], u[3:]).numpy())  # fmt: skip
    with pytest.raises(UserError, match="holds 4 problems; a batch of 6 rows"):
        g.step(z.repeat(2, 1)[:6], u.repeat(2, 1)[:6])


def test_blocked_directions_pile_up_while_stuck_and_clear_on_a_move() -> None:
    kept = torch.zeros(3, 3, 2)
    kept[:, 0] = torch.tensor([1.0, 0.0])  # every problem: right blocked
    new = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])  # problem 0: down blocked too
    moved = torch.tensor([False, True, False])  # problem 1 moved; problem 2 did not push
    after = update_blocked(kept, new, moved)
    np.testing.assert_array_equal(after[0].numpy(), [[0, 1], [1, 0], [0, 0]])  # latest first
    assert not after[1].any()
    np.testing.assert_array_equal(after[2].numpy(), kept[2].numpy())
    full = update_blocked(after, torch.tensor([[-1.0, 0.0]] * 3), torch.zeros(3, dtype=torch.bool))
    np.testing.assert_array_equal(full[0].numpy(), [[-1, 0], [0, 1], [1, 0]])  # at most K
    np.testing.assert_array_equal(
        update_blocked(full, torch.tensor([[0.0, -1.0]] * 3), torch.zeros(3, dtype=torch.bool))[0]
        .numpy(), [[0, -1], [-1, 0], [0, 1]],
    )  # fmt: skip


def test_the_modifier_blocks_a_push_that_did_not_move_and_forgets_it_at_a_reset() -> None:
    """The model predicts z + u; problem 0 did not move (blocked), problem 1 moved as predicted
    (free). The next step's dynamics drop problem 0's push into that direction only."""
    model = FunctionDynamics(lambda z, u: z + u)
    option = BlockedPushes(BlockedPushesConfig(ratio=0.5))
    option.reset(Episode(torch.zeros(1, 4, 4, dtype=torch.uint8), torch.zeros(2), 2))
    frames = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    z0 = torch.zeros(2, 2, dtype=torch.float64)
    u = torch.tensor([[1.0, 0.0], [0.0, -2.0]], dtype=torch.float64)
    first = option.modify(model, Step(frames, z0, None, None, model))
    assert first is model and option.blocked is None  # nothing to compare yet
    z1 = torch.tensor([[0.1, 0.0], [0.0, -2.0]], dtype=torch.float64)
    wrapped = option.modify(model, Step(frames, z1, z0, u, model))
    assert isinstance(wrapped, BlockedDirections) and wrapped.inner is model
    assert option.blocked is not None and option.blocked.shape == (2, MAX_BLOCKED, 2)
    np.testing.assert_array_equal(option.blocked[0, 0].numpy(), [1.0, 0.0])
    assert not option.blocked[1].any() and not option.blocked[0, 1:].any()
    push = torch.tensor([[3.0, 1.0], [3.0, 1.0]], dtype=torch.float64)
    np.testing.assert_allclose(wrapped.step(z1, push).numpy(), [[0.1, 1.0], [3.0, -1.0]])
    np.testing.assert_allclose(wrapped.step(z1, -push).numpy(), [[-2.9, -1.0], [-3.0, -3.0]])
    option.reset(Episode(torch.zeros(1, 4, 4, dtype=torch.uint8), torch.zeros(2), 2))
    assert option.blocked is None
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(
            UserError, match=r"blocked_pushes\.ratio must be a finite number in \(0, 1\]"
        ):
            BlockedPushesConfig(ratio=bad)


def test_one_sided_blocks_never_hold_a_direction_and_its_opposite() -> None:
    """A contact blocks pushes into it, never out of it: a new blocked direction drops the kept
    ones at an obtuse angle to it. With one control the planner keeps the other sign."""
    kept = torch.zeros(2, 3, 2)
    kept[0, 0] = torch.tensor([1.0, 0.0])  # problem 0: right blocked
    kept[0, 1] = torch.tensor([0.0, 1.0])  # and down
    kept[1, 0] = torch.tensor([0.6, 0.8])  # problem 1: one direction
    new = torch.tensor([[-1.0, 0.0], [0.8, -0.6]])  # left (against right); one at 90 degrees
    stuck = torch.zeros(2, dtype=torch.bool)
    one_sided = update_blocked(kept, new, stuck, one_sided=True)
    np.testing.assert_array_equal(one_sided[0].numpy(), [[-1, 0], [0, 0], [0, 1]])
    np.testing.assert_allclose(one_sided[1].numpy(), [[0.8, -0.6], [0.6, 0.8], [0, 0]])
    both = update_blocked(kept, new, stuck)  # the default keeps both sides
    np.testing.assert_array_equal(both[0].numpy(), [[-1, 0], [1, 0], [0, 1]])
    # one control (a pendulum's torque): + then - blocked leaves - alone, so a push still acts
    model = FunctionDynamics(lambda z, u: z + u)
    torque = torch.zeros(1, MAX_BLOCKED, 1, dtype=torch.float64)
    for sign in (1.0, -1.0):
        new = torch.tensor([[sign]], dtype=torch.float64)
        torque = update_blocked(torque, new, torch.zeros(1, dtype=torch.bool), one_sided=True)
    g = BlockedDirections(model, torque)
    z = torch.zeros(1, 1, dtype=torch.float64)
    assert float(g.step(z, torch.tensor([[0.5]], dtype=torch.float64))) == 0.5
    assert float(g.step(z, torch.tensor([[-0.5]], dtype=torch.float64))) == 0.0
    with pytest.raises(UserError, match=r"blocked_pushes\.one_sided must be true or false"):
        BlockedPushesConfig(one_sided=1)  # type: ignore[arg-type]


def test_a_push_predicted_to_move_little_is_not_judged() -> None:
    """least_move: only a push the model expected to move the latent by at least that share of
    the episode's largest predicted move can count as blocked; a smaller one counts as followed
    (a balancing pendulum's pushes), so it also clears the kept directions."""
    u = torch.tensor([[1.0], [1.0]], dtype=torch.float64)
    predicted = torch.tensor([[0.2], [1.0]], dtype=torch.float64)
    still = torch.zeros(2, 1, dtype=torch.float64)
    d, free = blocked_directions(still, predicted, u, ratio=0.5)
    assert d[:, 0].tolist() == [1.0, 1.0] and free.tolist() == [False, False]
    d, free = blocked_directions(still, predicted, u, 0.5, least=torch.tensor([0.5, 0.5]))
    assert d[:, 0].tolist() == [0.0, 1.0] and free.tolist() == [True, False]
    # the modifier: a full push moves as predicted, then a small and a full one do not
    model = FunctionDynamics(lambda z, u: z + u)
    option = BlockedPushes(BlockedPushesConfig(ratio=0.5, one_sided=True, least_move=0.5))
    option.reset(Episode(torch.zeros(1, 4, 4, dtype=torch.uint8), torch.zeros(1), 1))
    frames = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
    z0, z1 = torch.zeros(1, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64)
    option.modify(model, Step(frames, z1, z0, torch.tensor([[1.0]], dtype=torch.float64), model))
    assert option.blocked is not None and not option.blocked.any()
    small = torch.tensor([[-0.3]], dtype=torch.float64)
    option.modify(model, Step(frames, z1, z1, small, model))
    assert not option.blocked.any()  # predicted 0.3 < 0.5 of the largest, 1.0: not judged
    option.modify(model, Step(frames, z1, z1, torch.tensor([[-1.0]], dtype=torch.float64), model))
    assert option.blocked[0, 0].tolist() == [-1.0]
    with pytest.raises(UserError, match=r"blocked_pushes\.least_move must be a finite number"):
        BlockedPushesConfig(least_move=1.5)
