"""Two estimators of the gradient of E_{z ~ q_phi(z|x)}[log p(x | z)] w.r.t. phi, the encoder.

With M draws (M = ``eps.shape[0]``):

- reparameterised: (1/M) sum_j grad_phi log p(x | mu_phi(x) + sigma_phi(x) eps_j);
- score function (REINFORCE): (1/M) sum_j grad_phi log q_phi(z_j | x) (log p(x | z_j) - b),
  z_j drawn and held fixed; b = 0 without a baseline, or a baseline that does not depend on
  the draws (here log p(x | mu_phi(x)), the reward at q's mean), which leaves the mean of the
  estimator unchanged since E_q[grad log q] = 0.

The ELBO's other term, -KL(q || N(0, I)), has a closed form whose gradient is exact in every
estimator, so it adds nothing to their variances and is left out. Both are written as
surrogate scalars whose autograd gradient is the estimate; :func:`gradient_moments` repeats
one with fresh draws and returns the mean and the trace of the covariance of the estimates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from latentrl.diagnostics.latent_model import LogLikelihood, reparameterize
from latentrl.losses.gaussian_density import gaussian_log_density
from latentrl.models import Gaussian

ESTIMATORS = ("reparameterized", "score_function", "score_function_baseline")
"""The estimators compared, in the order of the report."""


def reparameterized_surrogate(log_likelihood: LogLikelihood, q: Gaussian, eps: Tensor) -> Tensor:
    """Scalar whose gradient is the reparameterised estimate, summed over the B images:
    q ``(B, n)`` (a function of phi), eps ``(M, B, n)``."""
    return log_likelihood(reparameterize(q, eps)).mean(0).sum()


def score_function_surrogate(
    log_likelihood: LogLikelihood, q: Gaussian, eps: Tensor, baseline: Tensor | None = None
) -> Tensor:
    """Scalar whose gradient is the score-function estimate, summed over the B images:
    q ``(B, n)``, eps ``(M, B, n)``, baseline ``(B,)`` or None (b = 0)."""
    z = reparameterize(q, eps).detach()
    with torch.no_grad():
        reward = log_likelihood(z)
        if baseline is not None:
            reward = reward - baseline
    log_q = gaussian_log_density(z, q.mean, q.logvar)  # (M, B), a function of phi
    return (log_q * reward).mean(0).sum()


def mean_baseline(log_likelihood: LogLikelihood, q: Gaussian) -> Tensor:
    """log p(x | mu) ``(B,)``: the reward at q's mean, independent of the draws."""
    with torch.no_grad():
        return log_likelihood(q.mean.detach().unsqueeze(0)).squeeze(0)


def gradient_moments(
    surrogate: Callable[[], Tensor], parameters: Sequence[nn.Parameter], repeats: int
) -> tuple[Tensor, Tensor]:
    """``repeats`` independent estimates (``surrogate()`` draws afresh each call) of the
    gradient w.r.t. ``parameters``, flattened to P numbers: their mean ``(P,)`` and the trace
    of their covariance (a scalar, the unbiased sample covariance; ``repeats >= 2``)."""
    if repeats < 2:
        raise ValueError(f"a variance needs at least 2 repeats, got {repeats}")
    sizes = [p.numel() for p in parameters]
    total = torch.zeros(sum(sizes), dtype=torch.float64, device=parameters[0].device)
    total_sq = torch.zeros_like(total)
    for _ in range(repeats):
        grads = torch.autograd.grad(surrogate(), list(parameters), allow_unused=True)
        # accumulated in place, slice by slice: no P-sized temporaries per repeat
        for grad, part, part_sq in zip(
            grads, total.split(sizes), total_sq.split(sizes), strict=True
        ):
            if grad is not None:
                flat = grad.reshape(-1).double()
                part.add_(flat)
                part_sq.addcmul_(flat, flat)
    mean = total / repeats
    trace = (total_sq.sum() - repeats * mean.square().sum()) / (repeats - 1)
    return mean, trace.clamp_min(0.0)


def estimator_surrogates(
    log_likelihood: LogLikelihood,
    posterior: Callable[[], Gaussian],
    draws: int,
    generator: torch.Generator | None = None,
) -> dict[str, Callable[[], Tensor]]:
    """The surrogate of each estimator in :data:`ESTIMATORS` with ``draws`` fresh draws per
    call; ``posterior()`` recomputes q ``(B, n)`` from the encoder (a new graph each call)."""

    def noise(q: Gaussian) -> Tensor:
        shape = (draws, *q.mean.shape)
        return torch.randn(shape, generator=generator, dtype=q.mean.dtype, device=q.mean.device)

    def reparameterized() -> Tensor:
        q = posterior()
        return reparameterized_surrogate(log_likelihood, q, noise(q))

    def score_function() -> Tensor:
        q = posterior()
        return score_function_surrogate(log_likelihood, q, noise(q))

    def score_function_baseline() -> Tensor:
        q = posterior()
        baseline = mean_baseline(log_likelihood, q)
        return score_function_surrogate(log_likelihood, q, noise(q), baseline)

    return {
        "reparameterized": reparameterized,
        "score_function": score_function,
        "score_function_baseline": score_function_baseline,
    }
