"""The PCC objective: each part against torch.distributions on the same draws, its gradients,
its settings, and PCC's curvature in its own (Taylor) form."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from latentrl.errors import UserError
from latentrl.kinds import build_model, model_kind
from latentrl.losses import LossConfig, PCCLossConfig, linearization_error, pcc_objective
from latentrl.losses.curvature import jacobian_vector_product
from latentrl.models import ModelConfig
from latentrl.models.pcc import PCC

F64 = torch.float64


def tiny_pcc(seed: int = 0) -> PCC:
    torch.manual_seed(seed)
    config = ModelConfig(
        obs_shape=(2, 8, 8),
        action_dim=1,
        latent_dim=2,
        kind="pcc",
        hidden_sizes=(32,),
        transition_hidden_sizes=(16,),
    )
    model = build_model(config).to(F64)
    assert isinstance(model, PCC)
    return model


def diagonal(mean: torch.Tensor, std: torch.Tensor) -> Independent:
    return Independent(Normal(mean, std), 1)


def image_log_likelihood(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return Bernoulli(logits=logits, validate_args=False).log_prob(target).sum((1, 2, 3))


def test_every_part_matches_torch_distributions_on_the_same_draws(
    blob_transitions: Callable[..., tuple[torch.Tensor, ...]],
) -> None:
    model = tiny_pcc()
    x, u, x_next = blob_transitions(6)
    config = PCCLossConfig(lambda_p=0.5, lambda_c=2.0, lambda_cur=3.0, curvature_radius=0.3)
    torch.manual_seed(3)
    total, metrics = pcc_objective(model, x, u, x_next, config)

    torch.manual_seed(3)  # the objective's draws, in its order
    u = u.to(F64)
    target, target_next = x.to(F64) / 255, x_next.to(F64) / 255
    q_t, q_next = model.encode(target), model.encode(target_next)
    z_next = q_next.mean + q_next.std * torch.randn_like(q_next.mean)
    back = model.backward(z_next, target, u)
    z_back = back.mean + back.std * torch.randn_like(back.mean)
    dynamics = model.transition_density(z_back, u)
    z_t = q_t.mean + q_t.std * torch.randn_like(q_t.mean)
    d = 0.3 * torch.randn(z_t.shape, dtype=F64)
    e = 0.3 * torch.randn(u.shape, dtype=F64)

    encoder_t, encoder_next = diagonal(q_t.mean, q_t.std), diagonal(q_next.mean, q_next.std)
    consistency = (
        kl_divergence(diagonal(back.mean, back.std), encoder_t)
        - encoder_next.entropy()
        - diagonal(dynamics.mean, dynamics.std).log_prob(z_next)
    )
    prediction = consistency - image_log_likelihood(model.decode(z_next), target_next)
    deterministic = -image_log_likelihood(model.decode(model.step(q_t.mean, u)), target_next)
    reconstruction = -image_log_likelihood(model.decode(z_t), target)
    standard = diagonal(torch.zeros_like(z_t), torch.ones_like(z_t))
    kl_prior = kl_divergence(encoder_t, standard)
    A, B, _ = model.linearize(z_t, u)
    taylor = model.step(z_t + d, u + e) - model.step(z_t, u)
    taylor = taylor - torch.einsum("bij,bj->bi", A, d) - torch.einsum("bij,bj->bi", B, e)
    curvature = taylor.square().sum(-1)

    expected = {
        "loss/prediction": prediction.mean(),
        "loss/consistency": consistency.mean(),
        "loss/curvature": curvature.mean(),
        "loss/deterministic": deterministic.mean(),
        "loss/reconstruction": reconstruction.mean(),
        "loss/kl_prior": kl_prior.mean(),
    }
    for key, value in expected.items():
        torch.testing.assert_close(metrics[key], value.detach(), msg=key)
    weighted = (
        0.5 * prediction + 2.0 * consistency + 3.0 * curvature + 0.3 * deterministic
    ) + 0.01 * (reconstruction + kl_prior)
    torch.testing.assert_close(total, weighted.mean())
    assert float(curvature.mean().detach()) > 0  # the tiny transition network is not affine


def test_the_gradient_reaches_every_part_and_the_decoder_only_through_images(
    blob_transitions: Callable[..., tuple[torch.Tensor, ...]],
) -> None:
    x, u, x_next = blob_transitions(8)
    model = tiny_pcc()
    pcc_objective(model, x, u, x_next, PCCLossConfig())[0].backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name

    # without the terms that decode images, the decoder gets nothing and the rest still trains
    model = tiny_pcc()
    latent_only = PCCLossConfig(lambda_p=0.0, deterministic_weight=0.0, vae_weight=0.0)
    pcc_objective(model, x, u, x_next, latent_only)[0].backward()
    for name, parameter in model.named_parameters():
        reached = parameter.grad is not None and bool(parameter.grad.abs().sum() > 0)
        assert reached == (not name.startswith("decoder.")), name


def test_the_kind_reads_loss_pcc_and_trains_on_single_transitions(
    blob_transitions: Callable[..., tuple[torch.Tensor, ...]],
) -> None:
    kind = model_kind("pcc")
    assert kind.loss_sections() == ("pcc", "goal_cost") and kind.model_class is PCC
    loss = LossConfig(pcc=PCCLossConfig(lambda_cur=0.0))
    assert kind.window(loss) == 1 and not kind.whole_windows
    x, u, x_next = blob_transitions(4)
    model = tiny_pcc()
    torch.manual_seed(0)
    via_kind = kind.compute(model, x, u, x_next, loss)[0]
    torch.manual_seed(0)
    torch.testing.assert_close(via_kind, pcc_objective(model, x, u, x_next, loss.pcc)[0])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lambda_p", -1.0, r"loss\.pcc\.lambda_p must be a finite number >= 0"),
        ("lambda_cur", float("inf"), r"loss\.pcc\.lambda_cur must be a finite number"),
        ("vae_weight", "0.1", r"loss\.pcc\.vae_weight must be a finite number"),
        ("curvature_radius", 0.0, r"loss\.pcc\.curvature_radius must be a finite number > 0"),
    ],
)
def test_bad_settings_are_user_errors(field: str, value: object, message: str) -> None:
    with pytest.raises(UserError, match=message):
        dataclasses.replace(PCCLossConfig(), **{field: value})


# --- curvature in PCC's own form ------------------------------------------------------------


class QuadraticStep:
    """f(z, u) = M (z, u) + 1/2 [(z, u)^T H_i (z, u)]_i, a stand-in for a model's ``step``."""

    def __init__(self, n: int, m: int, quadratic: bool) -> None:
        g = torch.Generator().manual_seed(0)
        self.linear = torch.randn(n, n + m, generator=g, dtype=F64)
        hessians = torch.randn(n, n + m, n + m, generator=g, dtype=F64)
        self.hessians = (hessians + hessians.transpose(1, 2)) * float(quadratic)

    def step(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        x = torch.cat([z, u], dim=-1)
        return x @ self.linear.T + 0.5 * torch.einsum("bj,ijk,bk->bi", x, self.hessians, x)


@pytest.mark.parametrize("radius", [0.05, 0.5])
def test_the_taylor_error_is_half_the_second_derivative_squared(radius: float) -> None:
    z, u = torch.randn(9, 3, dtype=F64), torch.randn(9, 2, dtype=F64)
    affine = QuadraticStep(3, 2, quadratic=False)
    error = linearization_error(affine, z, u, radius)  # type: ignore[arg-type]
    torch.testing.assert_close(error, torch.zeros(9, dtype=F64), atol=1e-24, rtol=0)

    quadratic = QuadraticStep(3, 2, quadratic=True)
    error = linearization_error(
        quadratic,  # type: ignore[arg-type]
        z,
        u,
        radius,
        generator=torch.Generator().manual_seed(5),
    )
    g = torch.Generator().manual_seed(5)
    d = radius * torch.randn(z.shape, dtype=F64, generator=g)
    e = radius * torch.randn(u.shape, dtype=F64, generator=g)
    step = torch.cat([d, e], dim=-1)
    second = 0.5 * torch.einsum("bj,ijk,bk->bi", step, quadratic.hessians, step)
    torch.testing.assert_close(error, second.square().sum(-1))  # exact: f is quadratic
    with pytest.raises(ValueError, match="radius must be > 0"):
        linearization_error(quadratic, z, u, -1.0)  # type: ignore[arg-type]


def test_the_jacobian_vector_product_is_the_models_exact_linearisation() -> None:
    model = tiny_pcc()
    z, u = torch.randn(6, 2, dtype=F64, requires_grad=True), torch.randn(6, 1, dtype=F64)
    d, e = torch.randn(6, 2, dtype=F64), torch.randn(6, 1, dtype=F64)
    f, slope = jacobian_vector_product(model, z, u, d, e)
    A, B, _ = model.linearize(z, u)
    torch.testing.assert_close(f, model.step(z, u))
    torch.testing.assert_close(slope, torch.einsum("bij,bj->bi", A, d) + (B @ e[..., None])[..., 0])
    assert slope.requires_grad  # training differentiates through it, into z and the weights
    (z_grad,) = torch.autograd.grad(slope.square().sum(), z)
    assert z_grad.abs().sum() > 0
    # validation runs without gradients: the same value
    generator = torch.Generator().manual_seed(2)
    with_grad = linearization_error(model, z, u, 0.3, generator)
    with torch.no_grad():
        without = linearization_error(model, z, u, 0.3, torch.Generator().manual_seed(2))
    torch.testing.assert_close(without, with_grad.detach())
