"""The reparameterised and score-function estimators of the encoder's gradient: the same
mean (the true gradient, known in closed form for a linear Gaussian model), very different
variances."""

from __future__ import annotations

import torch
from linear_gaussian import LinearGaussian
from torch import nn

from latentrl.diagnostics.gradient_variance import (
    ESTIMATORS,
    estimator_surrogates,
    gradient_moments,
)
from latentrl.models import Gaussian


class LinearEncoder(nn.Module):
    """q_phi(z | x) = N(U x + c, diag exp(v)): 2 x 6 + 2 + 2 parameters."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.U = nn.Parameter(0.3 * torch.randn(2, 6, generator=g, dtype=torch.float64))
        self.c = nn.Parameter(torch.zeros(2, dtype=torch.float64))
        self.v = nn.Parameter(torch.full((2,), -1.0, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> Gaussian:
        mean = x @ self.U.T + self.c
        return Gaussian(mean, self.v.expand_as(mean))


def test_both_estimators_are_unbiased_and_the_score_function_is_noisier() -> None:
    model = LinearGaussian.random(d=6, n=2, s=0.5, seed=2)
    x = model.sample_x(1, seed=3)
    encoder = LinearEncoder()
    parameters = list(encoder.parameters())
    truth = torch.autograd.grad(model.expected_log_likelihood(x, encoder(x)).sum(), parameters)
    truth = torch.cat([g.reshape(-1) for g in truth])
    surrogates = estimator_surrogates(
        model.log_likelihood(x),
        lambda: encoder(x),
        draws=1,
        generator=torch.Generator().manual_seed(0),
    )
    assert list(surrogates) == list(ESTIMATORS)
    repeats = 600
    moments = {name: gradient_moments(f, parameters, repeats) for name, f in surrogates.items()}
    for name, (mean, trace) in moments.items():
        # E|mean - truth|^2 = trace / repeats for an unbiased estimator: a ratio near 1 (a
        # chi with 1 to 16 degrees of freedom, as one or all directions dominate the trace)
        error = (mean - truth).norm() / (trace / repeats).sqrt()
        assert error < 3.0, (name, float(error))
    traces = {name: float(trace) for name, (_, trace) in moments.items()}
    assert traces["score_function"] > 10 * traces["reparameterized"], traces
    assert traces["score_function_baseline"] < traces["score_function"], traces


def test_the_trace_of_the_covariance_of_a_known_estimator() -> None:
    weight = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    generator = torch.Generator().manual_seed(0)

    def surrogate() -> torch.Tensor:  # gradient a * eps, eps ~ N(0, I): covariance diag a^2
        a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
        eps = torch.randn(3, generator=generator, dtype=torch.float64)
        return (weight * a * eps).sum()

    mean, trace = gradient_moments(surrogate, [weight], 2000)
    assert abs(float(trace) - 14.0) < 1.2
    assert mean.abs().max() < 0.1
