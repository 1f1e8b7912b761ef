"""The transition's KL (closed form against torch.distributions, E2C's own term and Monte
Carlo) and the linearization's rollouts."""

from __future__ import annotations

import torch
from torch.distributions import MultivariateNormal, kl_divergence

from latentrl.diagnostics.transition_check import (
    kl_full_diag,
    kl_monte_carlo,
    linear_rollout,
    linearization_error,
    predicted_next,
    rollout_errors,
    transition_noise_variance,
)
from latentrl.losses.gaussian_kl import kl_linear_transition
from latentrl.models import E2C, Gaussian, ModelConfig
from latentrl.models.filtering import FilteringE2C


def random_gaussians(batch: int = 5, n: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    L = torch.randn(batch, n, n, generator=g, dtype=torch.float64)
    cov = L @ L.transpose(-1, -2) + 0.1 * torch.eye(n, dtype=torch.float64)
    mean1 = torch.randn(batch, n, generator=g, dtype=torch.float64)
    mean2 = torch.randn(batch, n, generator=g, dtype=torch.float64)
    logvar2 = torch.randn(batch, n, generator=g, dtype=torch.float64)
    return mean1, cov, mean2, logvar2


def test_the_closed_form_kl_matches_torch_distributions() -> None:
    mean1, cov, mean2, logvar2 = random_gaussians()
    expected = kl_divergence(
        MultivariateNormal(mean1, cov), MultivariateNormal(mean2, torch.diag_embed(logvar2.exp()))
    )
    torch.testing.assert_close(kl_full_diag(mean1, cov, mean2, logvar2), expected)


def test_the_monte_carlo_kl_agrees_with_the_closed_form_within_its_standard_error() -> None:
    mean1, cov, mean2, logvar2 = random_gaussians(batch=8, seed=1)
    closed = kl_full_diag(mean1, cov, mean2, logvar2)
    mc, se = kl_monte_carlo(mean1, cov, mean2, logvar2, 20000, torch.Generator().manual_seed(3))
    z = (mc - closed) / se
    assert z.abs().max() < 4.0, z
    assert (se < 0.05 * closed.abs() + 0.05).all()


def test_predicted_next_gives_e2c_s_own_transition_kl() -> None:
    torch.manual_seed(0)
    config = ModelConfig((1, 8, 8), 1, latent_dim=3, hidden_sizes=(16,), transition_noise=0.2)
    model = E2C(config).double()
    q_t = Gaussian(torch.randn(6, 3).double(), torch.randn(6, 3).double())
    u = torch.randn(6, 1).double()
    q_next = Gaussian(torch.randn(6, 3).double(), torch.randn(6, 3).double())
    mean, cov = predicted_next(model, q_t, u)
    lin = model.transition(q_t.mean, u)
    expected = kl_linear_transition(mean, q_t.logvar, lin.V, lin.R, q_next.mean, q_next.logvar, 0.2)
    torch.testing.assert_close(kl_full_diag(mean, cov, q_next.mean, q_next.logvar), expected)
    torch.testing.assert_close(model.step(q_t.mean, u), mean)


def test_the_noise_is_the_kind_s_own() -> None:
    config = ModelConfig((1, 8, 8), 1, latent_dim=2, hidden_sizes=(8,), transition_noise=0.3)
    torch.testing.assert_close(transition_noise_variance(E2C(config)), torch.full((2,), 0.09))
    filtering = FilteringE2C(config)
    expected = filtering.process_noise.logvar().exp()
    torch.testing.assert_close(transition_noise_variance(filtering), expected)


def test_a_linear_rollout_by_hand() -> None:
    A = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])  # a quarter turn per step
    B = torch.tensor([[[0.0], [1.0]]])
    c = torch.tensor([[1.0, 0.0]])
    out = linear_rollout(A, B, c, torch.tensor([[1.0, 0.0]]), torch.tensor([[[0.0], [2.0]]]))
    # z1 = (0, -1) + (1, 0) = (1, -1); z2 = (-1, -1) + (0, 2) + (1, 0) = (0, 1)
    torch.testing.assert_close(out, torch.tensor([[[1.0, -1.0], [0.0, 1.0]]]))


def test_a_globally_linear_model_is_its_own_linearization() -> None:
    torch.manual_seed(1)
    config = ModelConfig((1, 8, 8), 1, latent_dim=3, hidden_sizes=(8,), global_transition=True)
    model = E2C(config).double()
    z0, actions = torch.randn(4, 3).double(), torch.randn(4, 6, 1).double()
    targets = torch.randn(4, 6, 3).double()
    errors = rollout_errors(model, z0, actions, targets, torch.ones(3).double())
    torch.testing.assert_close(errors["linear"], errors["model"])
    radii = [0.1, 1.0]
    steps = linearization_error(model, z0, actions[:, 0], radii, torch.ones(3).double())
    assert steps.shape == (4, 2) and steps.max() < 1e-9
    # a nonlinear transition: the error grows with the distance from the point
    nonlinear = E2C(ModelConfig((1, 8, 8), 1, latent_dim=3, hidden_sizes=(8,))).double()
    steps = linearization_error(nonlinear, z0, actions[:, 0], [0.01, 1.0], torch.ones(3).double())
    assert (steps[:, 1] > steps[:, 0]).all()
    errors = rollout_errors(nonlinear, z0, actions, targets, torch.ones(3).double())
    assert not torch.allclose(errors["linear"], errors["model"])
    torch.testing.assert_close(errors["linear"][:, 0], errors["model"][:, 0])  # one step: equal
