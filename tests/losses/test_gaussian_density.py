"""Log-densities and entropies of diagonal Gaussians against torch.distributions."""

from __future__ import annotations

import torch
from torch.distributions import Independent, Normal

from latentrl.losses.gaussian_density import (
    gaussian_entropy,
    gaussian_log_density,
    pairwise_gaussian_log_density,
)

F64 = torch.float64


def diagonal(mean: torch.Tensor, logvar: torch.Tensor) -> Independent:
    return Independent(Normal(mean, torch.exp(0.5 * logvar)), 1)


def test_the_log_density_and_entropy_match_torch_distributions() -> None:
    g = torch.Generator().manual_seed(0)
    mean, x = torch.randn(7, 4, generator=g, dtype=F64), torch.randn(7, 4, generator=g, dtype=F64)
    logvar = 3 * torch.randn(7, 4, generator=g, dtype=F64)
    reference = diagonal(mean, logvar)
    torch.testing.assert_close(gaussian_log_density(x, mean, logvar), reference.log_prob(x))
    torch.testing.assert_close(gaussian_entropy(logvar), reference.entropy())


def test_the_pairwise_log_density_is_every_point_against_every_gaussian() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, generator=g, dtype=F64)
    mean = torch.randn(6, 3, generator=g, dtype=F64)
    logvar = torch.randn(6, 3, generator=g, dtype=F64)
    scores = pairwise_gaussian_log_density(x, mean, logvar)
    assert scores.shape == (5, 6)
    for i in range(5):
        for j in range(6):
            expected = diagonal(mean[j], logvar[j]).log_prob(x[i])
            torch.testing.assert_close(scores[i, j], expected)
