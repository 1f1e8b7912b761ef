"""log p(x) by importance sampling with q(z | x) as proposal, the IWAE bound and the ELBO.

With K draws z_k ~ q(z | x) and weights w_k = p(x | z_k) p(z_k) / q(z_k | x)::

    L_K = E[log (1/K) sum_k w_k]   (IWAE bound: L_1 = ELBO <= L_K <= L_{K+1} <= log p(x))

and log (1/K) sum_k w_k itself is a consistent estimate of log p(x). The gap between it and
the ELBO is KL(q(z|x) || p(z|x)): how far the Gaussian q is from the true posterior.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from latentrl.diagnostics.latent_model import (
    LogLikelihood,
    reparameterize,
    standard_normal_log_density,
)
from latentrl.losses.gaussian_density import gaussian_log_density
from latentrl.losses.gaussian_kl import kl_diag_gaussian_std_normal
from latentrl.models import Gaussian


def log_mean_exp(log_w: Tensor, dim: int = -1) -> Tensor:
    """log (1/K) sum_k exp(log_w_k) along ``dim`` (K its size), without overflow."""
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


def importance_samples(
    log_likelihood: LogLikelihood,
    q: Gaussian,
    samples: int,
    chunk: int,
    generator: torch.Generator | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """``samples`` draws from q, ``chunk`` at a time (bounding the decoder's memory):
    log-weights log p(x|z) + log p(z) - log q(z|x) and log-likelihoods, both ``(B, K)``.
    ``on_chunk(draws)`` is called after each chunk (a progress bar)."""
    log_w, log_lik = [], []
    mean, logvar = q.mean.detach(), q.logvar.detach()
    with torch.no_grad():
        for start in range(0, samples, chunk):
            size = min(chunk, samples - start)
            eps = torch.randn(
                (size, *mean.shape), generator=generator, dtype=mean.dtype, device=mean.device
            )
            z = reparameterize(Gaussian(mean, logvar), eps)
            ll = log_likelihood(z)
            log_q = gaussian_log_density(z, mean, logvar)
            log_w.append((ll + standard_normal_log_density(z) - log_q).T)
            log_lik.append(ll.T)
            if on_chunk is not None:
                on_chunk(size)
    return torch.cat(log_w, 1), torch.cat(log_lik, 1)


def iwae_bounds(log_w: Tensor, ks: Sequence[int]) -> Tensor:
    """The IWAE bound L_k for each k in ``ks`` from log-weights ``(B, K)``: the K draws are
    cut into floor(K / k) disjoint groups of k and the groups' log-mean-exps averaged.
    Returns ``(B, len(ks))``; every k must be <= K."""
    batch, total = log_w.shape
    bounds = []
    for k in ks:
        if not 1 <= k <= total:
            raise ValueError(f"IWAE k={k} needs 1 <= k <= {total} samples")
        groups = total // k
        grouped = log_w[:, : groups * k].reshape(batch, groups, k)
        bounds.append(log_mean_exp(grouped, -1).mean(-1))
    return torch.stack(bounds, -1)


def effective_sample_size(log_w: Tensor) -> Tensor:
    """(sum w)^2 / sum w^2 of log-weights ``(B, K)``: ``(B,)``, between 1 and K. Near 1, one
    draw dominates and the estimate of log p(x) is not to be trusted."""
    return torch.exp(2 * torch.logsumexp(log_w, -1) - torch.logsumexp(2 * log_w, -1))


def iwae_ks(samples: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... up to and including ``samples``."""
    ks, decade = [], 1
    while decade <= samples:
        ks += [k for k in (decade, 2 * decade, 5 * decade) if k <= samples]
        decade *= 10
    return ks if ks[-1] == samples else [*ks, samples]


@dataclass(frozen=True)
class ElboGap:
    """Per image (all ``(B,)`` but ``iwae`` ``(B, len(ks))``), in nats."""

    log_px: Tensor
    """log p(x) estimated with every draw (the IWAE bound at the largest k)."""
    elbo: Tensor
    """E_q[log p(x|z)] (Monte Carlo over the same draws) - KL(q || N(0, I)) (closed form)."""
    ks: tuple[int, ...]
    iwae: Tensor
    ess: Tensor
    """Effective sample size of the importance weights."""

    @property
    def gap(self) -> Tensor:
        """log p(x) - ELBO = KL(q(z|x) || p(z|x)) (estimated): ``(B,)``."""
        return self.log_px - self.elbo


def elbo_gap(
    log_likelihood: LogLikelihood,
    q: Gaussian,
    samples: int,
    chunk: int = 256,
    generator: torch.Generator | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> ElboGap:
    """log p(x), the IWAE curve and the ELBO of the images behind ``log_likelihood``, with
    ``samples`` draws from q ``(B, n)`` per image, ``chunk`` draws per decoder pass."""
    log_w, log_lik = importance_samples(log_likelihood, q, samples, chunk, generator, on_chunk)
    ks = iwae_ks(samples)
    elbo = log_lik.mean(-1) - kl_diag_gaussian_std_normal(q.mean, q.logvar).detach()
    return ElboGap(
        log_px=log_mean_exp(log_w),
        elbo=elbo,
        ks=tuple(ks),
        iwae=iwae_bounds(log_w, ks),
        ess=effective_sample_size(log_w),
    )
