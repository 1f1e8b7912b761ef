"""Recorded moves: the model's move corrected towards the training data's where they disagree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentrl.errors import UserError
from latentrl.planning import FunctionDynamics
from latentrl.planning.options.blocked_pushes import BlockedDirections
from latentrl.planning.options.kinds import Resources, Step
from latentrl.planning.options.recorded_moves import (
    MoveCorrection,
    RecordedMoves,
    RecordedMovesConfig,
    move_correction,
)
from latentrl.planning.options.registry import option_spec


def test_move_correction_adds_a_fixed_affine_term_with_exact_jacobians() -> None:
    """h(z, u) = f(z, u) + ΔB u + Δc per problem: step and linearize agree with torch.func,
    rows tile as problem r mod B, select picks, and inside BlockedDirections select reaches
    the corrected dynamics too."""
    W = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=torch.float64)
    inner = FunctionDynamics(lambda z, u: z + torch.tanh(u @ W.mT) * z.cos())
    gen = torch.Generator().manual_seed(0)
    delta_B = torch.randn(3, 2, 2, generator=gen, dtype=torch.float64)
    delta_c = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    h = MoveCorrection(inner, delta_B, delta_c)
    z = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    u = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    for b in range(3):
        expected = inner.step(z[b : b + 1], u[b : b + 1])[0] + delta_B[b] @ u[b] + delta_c[b]
        np.testing.assert_allclose(h.step(z, u)[b].numpy(), expected.numpy(), atol=1e-12)
        one = MoveCorrection(inner, delta_B[b : b + 1], delta_c[b : b + 1])
        J_z, J_u = torch.func.jacrev(
            lambda z1, u1, one=one: one.step(z1[None], u1[None])[0], argnums=(0, 1)
        )(z[b], u[b])
        A, B, c = h.linearize(z, u)
        np.testing.assert_allclose(A[b].numpy(), J_z.numpy(), atol=1e-12)
        np.testing.assert_allclose(B[b].numpy(), J_u.numpy(), atol=1e-12)
        lin = A[b] @ z[b] + B[b] @ u[b] + c[b]
        np.testing.assert_allclose(lin.numpy(), h.step(z, u)[b].numpy(), atol=1e-12)
    tiled = h.step(z.repeat(2, 1), u.repeat(2, 1))
    np.testing.assert_allclose(tiled.numpy(), h.step(z, u).repeat(2, 1).numpy())
    picked = torch.tensor([2, 0])
    np.testing.assert_allclose(h.select(picked).step(z[picked], u[picked]).numpy(),
                               h.step(z, u)[picked].numpy())  # fmt: skip
    blocked = BlockedDirections(h, torch.zeros(3, 1, 2, dtype=torch.float64))
    np.testing.assert_allclose(blocked.select(picked).step(z[picked], u[picked]).numpy(),
                               h.step(z, u)[picked].numpy())  # fmt: skip
    with pytest.raises(UserError, match="holds 3 problems; a batch of 4 rows"):
        h.step(z.repeat(2, 1)[:4], u.repeat(2, 1)[:4])


def test_the_move_is_corrected_only_where_the_model_disagrees_with_the_fit() -> None:
    B_model = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    c_model = torch.tensor([[0.1, 0.0], [0.1, 0.0]])
    B_fit = torch.tensor([[[2.0, 0.1], [0.1, 0.5]], [[1.0, 0.0], [0.0, -1.0]]])  # agrees; flips y
    c_fit = torch.tensor([[0.0, 0.2], [0.3, 0.3]])
    delta_B, delta_c = move_correction((B_model, c_model), (B_fit, c_fit))
    torch.testing.assert_close(delta_B[0], torch.zeros(2, 2))  # column cosines 0.999 and 0.98
    torch.testing.assert_close(delta_c[0], torch.zeros(2))
    torch.testing.assert_close(B_model[1] + delta_B[1], B_fit[1])  # the y column at cosine -1
    torch.testing.assert_close(c_model[1] + delta_c[1], c_fit[1])


class FixedFrames:
    """Training frames whose recorded moves near every observation fit ``B_fit``, ``c_fit``."""

    def __init__(self, B_fit: torch.Tensor, c_fit: torch.Tensor) -> None:
        self.fit, self.counts = (B_fit, c_fit), []  # type: ignore[var-annotated]

    def recorded_moves(self, obs: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.counts.append(count)
        return self.fit


def test_the_modifier_adds_the_correction_at_the_current_latent() -> None:
    """Model z + u: at any z its move is (I, 0). The fit of problem 0 agrees (B = 2 I), so
    its dynamics stay the model's; problem 1's flips x, so its dynamics move as the fit."""
    model = FunctionDynamics(lambda z, u: z + u)
    B_fit = torch.stack([2 * torch.eye(2), torch.diag(torch.tensor([-1.0, 1.0]))]).double()
    c_fit = torch.tensor([[0.5, 0.0], [0.0, 0.3]], dtype=torch.float64)
    frames = FixedFrames(B_fit, c_fit)
    option = RecordedMoves(RecordedMovesConfig(count=7), frames)  # type: ignore[arg-type]
    z = torch.tensor([[0.2, 0.1], [-0.4, 0.3]], dtype=torch.float64)
    obs = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    corrected = option.modify(model, Step(obs, z, None, None, model))
    assert frames.counts == [7] and corrected.inner is model
    u = torch.tensor([[1.0, -1.0], [1.0, 2.0]], dtype=torch.float64)
    np.testing.assert_allclose(corrected.step(z, u)[0].numpy(), (z[0] + u[0]).numpy())
    np.testing.assert_allclose(
        corrected.step(z, u)[1].numpy(), (z[1] + B_fit[1] @ u[1] + c_fit[1]).numpy(), atol=1e-12
    )
    spec = option_spec("recorded_moves")
    assert spec.kind == "dynamics" and spec.needs_frames and "roadmap" in spec.requires
    with pytest.raises(UserError, match="needs the run's training frames"):
        spec.build(RecordedMovesConfig(), Resources())
    with pytest.raises(UserError, match=r"recorded_moves\.count must be an int >= 1"):
        RecordedMovesConfig(count=0)
