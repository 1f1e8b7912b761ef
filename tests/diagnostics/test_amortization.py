"""Per-image variational parameters: the ascent reaches the exact posterior where the
Gaussian family holds it, so the approximation gap vanishes and the amortization gap remains."""

from __future__ import annotations

import torch
from linear_gaussian import LinearGaussian

from latentrl.diagnostics.amortization import (
    fit_per_image,
    late_improvement,
    monte_carlo_elbo,
    parameter_counts,
)
from latentrl.models import Gaussian


def test_the_ascent_finds_the_exact_posterior_and_closes_the_gap() -> None:
    model = LinearGaussian.orthogonal(d=6, n=2, s=0.5)
    x = model.sample_x(8)
    mean, S = model.posterior(x)
    # a poor amortized q: means off by one, variances 4x too wide
    start = Gaussian(mean + 1.0, torch.log(4 * torch.diagonal(S)).expand_as(mean))
    fit = fit_per_image(
        model.log_likelihood(x),
        start,
        steps=400,
        samples=16,
        learning_rate=0.05,
        record_every=20,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(fit.q.mean, mean, atol=0.1, rtol=0)
    torch.testing.assert_close(fit.q.var, torch.diagonal(S).expand_as(mean), atol=0, rtol=0.25)
    exact = model.log_px(x)
    fitted = model.expected_log_likelihood(x, fit.q) - 0.5 * (
        fit.q.var + fit.q.mean.square() - 1 - fit.q.logvar
    ).sum(-1)
    assert (exact - fitted).abs().max() < 0.02  # no approximation gap left
    amortized = model.expected_log_likelihood(x, start) - 0.5 * (
        start.var + start.mean.square() - 1 - start.logvar
    ).sum(-1)
    assert (fitted - amortized).min() > 0.5  # the amortization gap the fit removed
    assert fit.steps[0] == 0 and fit.steps[-1] == 400 and len(fit.steps) == 21
    assert (fit.history[-1] > fit.history[0] + 0.5).all()
    assert late_improvement(fit).abs().max() < 0.05  # converged


def test_monte_carlo_elbo_is_unbiased_for_the_closed_form() -> None:
    model = LinearGaussian.random()
    x = model.sample_x(4)
    q = Gaussian(torch.zeros(4, 2, dtype=torch.float64), torch.zeros(4, 2, dtype=torch.float64))
    eps = torch.randn(20000, 4, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    estimate = monte_carlo_elbo(model.log_likelihood(x), q, eps)
    exact = model.expected_log_likelihood(x, q)  # KL(N(0, I) || N(0, I)) = 0
    torch.testing.assert_close(estimate, exact, atol=0.0, rtol=0.02)


def test_parameter_counts_of_the_notes() -> None:
    counts = parameter_counts(theta=1000, phi=300, latent_dim=3, images=500)
    assert counts == {"per_image": 1000 + 2 * 3 * 500, "amortized": 1300}
