"""The curvature term: its penalty on known dynamics, and the term inside the objective."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch

from latentrl.losses import CurvatureConfig, LossConfig, curvature_penalty, objective
from latentrl.models import E2C

F64 = torch.float64


class QuadraticDynamics:
    """f(z, u) = M (z, u) + 1/2 [(z, u)^T H_i (z, u)]_i: a stand-in for the model's ``step``."""

    def __init__(self, n: int, m: int, quadratic: bool, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.linear = torch.randn(n, n + m, generator=g, dtype=F64)
        hessians = torch.randn(n, n + m, n + m, generator=g, dtype=F64)
        self.hessians = (hessians + hessians.transpose(1, 2)) * float(quadratic)

    def step(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        x = torch.cat([z, u], dim=-1)
        return x @ self.linear.T + 0.5 * torch.einsum("bj,ijk,bk->bi", x, self.hessians, x)


def test_the_curvature_penalty_is_zero_for_affine_dynamics() -> None:
    affine = QuadraticDynamics(3, 2, quadratic=False)
    z, u = torch.randn(16, 3, dtype=F64), torch.randn(16, 2, dtype=F64)
    penalty = curvature_penalty(affine, z, u, 0.5)  # type: ignore[arg-type]
    torch.testing.assert_close(penalty, torch.zeros(16, dtype=F64), atol=1e-20, rtol=0)


@pytest.mark.parametrize("radius", [1e-2, 0.3, 2.0])
def test_the_curvature_penalty_is_a_quarter_of_the_squared_second_derivative(
    radius: float,
) -> None:
    dynamics = QuadraticDynamics(3, 2, quadratic=True)
    z, u = torch.randn(16, 3, dtype=F64), torch.randn(16, 2, dtype=F64)
    penalty = curvature_penalty(
        dynamics,  # type: ignore[arg-type]
        z,
        u,
        radius,
        generator=torch.Generator().manual_seed(7),
    )
    # the same unit directions, drawn as the penalty draws them: z's part, then u's
    g = torch.Generator().manual_seed(7)
    d = torch.randn(z.shape, dtype=F64, generator=g)
    e = torch.randn(u.shape, dtype=F64, generator=g)
    direction = torch.cat([d, e], dim=-1)
    second = torch.einsum("bj,ijk,bk->bi", direction, dynamics.hessians, direction)
    torch.testing.assert_close(penalty, 0.25 * second.square().sum(-1))  # for every radius
    with pytest.raises(ValueError, match="radius must be > 0"):
        curvature_penalty(dynamics, z, u, 0.0)  # type: ignore[arg-type]


def test_the_curvature_term_is_weighted_and_shapes_encoder_and_transition(
    tiny_model: Callable[..., E2C], blob_transitions: Callable[..., tuple[torch.Tensor, ...]]
) -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(8)
    zero = dataclasses.replace
    config = LossConfig(
        reconstruction=zero(LossConfig().reconstruction, weight=0.0),
        prediction=zero(LossConfig().prediction, weight=0.0),
        kl_prior=zero(LossConfig().kl_prior, weight=0.0),
        kl_transition=zero(LossConfig().kl_transition, weight=0.0),
        curvature=CurvatureConfig(weight=3.0, radius=0.1),
    )
    loss, metrics = objective(model, x, u, x_next, config)
    assert metrics["loss/curvature"] > 0
    torch.testing.assert_close(loss.detach(), 3.0 * metrics["loss/curvature"])
    loss.backward()
    for part in ("encoder.", "transition_net."):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(part)]
        assert any(g is not None and g.abs().max() > 0 for g in grads), part
    decoder = [p.grad for n, p in model.named_parameters() if n.startswith("decoder.")]
    assert all(g is None or g.abs().max() == 0 for g in decoder)  # images play no part


def test_the_radius_sets_the_neighbourhood(
    tiny_model: Callable[..., E2C], blob_transitions: Callable[..., tuple[torch.Tensor, ...]]
) -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(8)

    def curvature(radius: float) -> torch.Tensor:
        torch.manual_seed(0)
        config = LossConfig(curvature=CurvatureConfig(weight=1.0, radius=radius))
        return objective(model, x, u, x_next, config)[1]["loss/curvature"]

    assert not torch.equal(curvature(0.1), curvature(2.0))
