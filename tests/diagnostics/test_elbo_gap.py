"""log p(x) by importance sampling, the IWAE bound and the ELBO, on a linear Gaussian VAE
whose log p(x) and posterior are known in closed form."""

from __future__ import annotations

import math

import pytest
import torch
from linear_gaussian import LinearGaussian, kl_to_posterior

from latentrl.diagnostics.elbo_gap import (
    effective_sample_size,
    elbo_gap,
    iwae_bounds,
    iwae_ks,
    log_mean_exp,
)
from latentrl.models import Gaussian


def diagonal_q(
    model: LinearGaussian, x: torch.Tensor, widen: float = 1.0, shift: float = 0.0
) -> Gaussian:
    """A diagonal q near the posterior: its means moved by ``shift`` marginal stds, its
    marginal variances times ``widen``."""
    mean, S = model.posterior(x)
    std = torch.diagonal(S).sqrt()
    logvar = torch.log(torch.diagonal(S) * widen).expand_as(mean)
    return Gaussian(mean + shift * std, logvar)


def test_importance_sampling_matches_the_closed_form_log_px_within_a_tenth_of_a_nat() -> None:
    model = LinearGaussian.random(d=6, n=2, s=0.5)
    x = model.sample_x(16)
    q = diagonal_q(model, x, widen=2.0, shift=0.5)
    generator = torch.Generator().manual_seed(0)
    result = elbo_gap(model.log_likelihood(x), q, samples=5000, chunk=700, generator=generator)
    exact = model.log_px(x)
    assert (result.log_px - exact).abs().max() < 0.1
    # q is off the posterior: a real gap, which the importance-sampling estimate closes
    kl = kl_to_posterior(model, x, q)
    assert kl.min() > 0.2
    torch.testing.assert_close(result.gap, kl, atol=0.1, rtol=0.0)
    # the ELBO is E_q log p(x|z) - KL(q || prior) = log p(x) - KL(q || posterior)
    torch.testing.assert_close(result.elbo, exact - kl, atol=0.1, rtol=0.0)


def test_the_iwae_bound_rises_with_k_from_the_elbo_to_log_px() -> None:
    model = LinearGaussian.random(d=6, n=2, s=0.5, seed=3)
    x = model.sample_x(32, seed=4)
    q = diagonal_q(model, x, widen=0.3)  # a poor, narrow proposal: a wide gap
    result = elbo_gap(model.log_likelihood(x), q, 2000, 500, torch.Generator().manual_seed(1))
    curve = result.iwae.mean(0)
    assert result.ks == (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
    assert (curve[1:] - curve[:-1] > -0.01).all(), curve
    assert curve[-1] - curve[0] > 0.3
    assert abs(float(curve[0] - result.elbo.mean())) < 0.1  # L_1 is the ELBO
    assert float((model.log_px(x) - curve[-1]).mean()) > -0.02  # still a lower bound


def test_a_diagonal_q_equal_to_the_posterior_has_no_gap() -> None:
    model = LinearGaussian.orthogonal()
    x = model.sample_x(8)
    q = diagonal_q(model, x)
    result = elbo_gap(model.log_likelihood(x), q, 64, 64)
    torch.testing.assert_close(result.log_px, model.log_px(x), atol=1e-9, rtol=0)
    # the ELBO's E_q log p(x|z) is a Monte Carlo mean over the 64 draws: near, not at, log p(x)
    assert result.gap.abs().max() < 0.3
    torch.testing.assert_close(result.ess, torch.full((8,), 64.0, dtype=torch.float64))


def test_log_mean_exp_groups_and_ess_by_hand() -> None:
    log_w = torch.log(torch.tensor([[1.0, 3.0, 2.0, 6.0]], dtype=torch.float64))
    assert float(log_mean_exp(log_w)) == pytest.approx(math.log(3.0))
    # k = 2: groups (1, 3) and (2, 6): mean of log 2 and log 4
    bounds = iwae_bounds(log_w, [1, 2, 4])
    assert float(bounds[0, 0]) == pytest.approx(float(log_w.mean()))
    assert float(bounds[0, 1]) == pytest.approx((math.log(2.0) + math.log(4.0)) / 2)
    assert float(bounds[0, 2]) == pytest.approx(math.log(3.0))
    assert float(effective_sample_size(log_w)[0]) == pytest.approx(144 / 50)
    assert float(log_mean_exp(torch.tensor([1000.0, 1000.0]))) == pytest.approx(1000.0)
    with pytest.raises(ValueError, match="k=5"):
        iwae_bounds(log_w, [5])


def test_iwae_ks() -> None:
    assert iwae_ks(1) == [1]
    assert iwae_ks(7) == [1, 2, 5, 7]
    assert iwae_ks(5000) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
