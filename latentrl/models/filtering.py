"""Filtering inference: a belief over z_t from every observation and action so far.

The locally linear transition is the prior and the encoder's Gaussian the measurement. With a
diagonal process noise s^2 the prior over z_t given a draw z_{t-1} is N(f(z_{t-1}, u_{t-1}),
diag s^2), and the encoder's r(z_t | x_t) = N(m(x_t), diag R(x_t)) is read as a Gaussian factor
(a pseudo-observation of z_t with identity measurement matrix). Their normalised product is the
Kalman update of the belief::

    precision = 1 / var_prior + 1 / R,   mean = var (mean_prior / var_prior + m / R)

which is the filtering posterior q(z_t | x_<=t, u_<t) that the sequence ELBO
(:mod:`latentrl.losses.sequence`) trains, in the style of Deep Variational Bayes Filters
(Karl et al., 2017) with a locally linear transition. An agent keeps the belief across the
steps of an episode (:meth:`FilteringE2C.update_belief`); there the prior's variance is
propagated in closed form through the transition's A.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from latentrl.models.e2c import E2C, JacobianKind, ModelConfig
from latentrl.models.encoder import Gaussian, soft_clamp
from latentrl.models.transition import apply_local_linear

INITIAL_PROCESS_STD = 0.1
"""The process noise's std at initialisation, in latent units."""


class ProcessNoise(nn.Module):
    """A learned diagonal std s ``(n,)`` of the transition's noise, log-variance soft-clamped
    into the encoder's ``logvar_range``."""

    def __init__(self, latent_dim: int, logvar_range: tuple[float, float]) -> None:
        super().__init__()
        self.logvar_range = logvar_range
        initial = 2.0 * math.log(INITIAL_PROCESS_STD)
        self.raw_logvar = nn.Parameter(torch.full((latent_dim,), initial))

    def logvar(self) -> Tensor:
        """log s^2 ``(n,)``."""
        return soft_clamp(self.raw_logvar, *self.logvar_range)

    def around(self, mean: Tensor) -> Gaussian:
        """N(mean, diag s^2) for a mean ``(B, n)``: the transition's density around its mean."""
        return Gaussian(mean, self.logvar().expand_as(mean))

    def std_mean(self) -> Tensor:
        """The mean of s over the latent's coordinates (a scalar, for diagnostics)."""
        return self.logvar().mul(0.5).exp().mean()


def fuse(prior: Gaussian, factor: Gaussian) -> Gaussian:
    """The normalised product of two diagonal Gaussians ``(..., n)``: precisions add, and the
    mean is the precision-weighted mean. Written in log-variances so that neither a very
    sharp nor a very flat factor overflows."""
    logvar = -torch.logaddexp(-prior.logvar, -factor.logvar)
    weight_prior = torch.sigmoid(factor.logvar - prior.logvar)  # var_factor / (sum of vars)
    mean = weight_prior * prior.mean + (1.0 - weight_prior) * factor.mean
    return Gaussian(mean, logvar)


def standard_normal_like(mean: Tensor) -> Gaussian:
    """N(0, I) with the shape, dtype and device of ``mean`` ``(..., n)``."""
    zeros = torch.zeros_like(mean)
    return Gaussian(zeros, zeros)


class FilteringE2C(E2C):
    """E2C's parts plus a learned process noise; the belief is filtered, not re-encoded."""

    filters_history = True

    def __init__(self, config: ModelConfig, jacobian: JacobianKind = "exact") -> None:
        super().__init__(config, jacobian)
        self.process_noise = ProcessNoise(config.latent_dim, config.logvar_range)

    def transition_density(self, z: Tensor, u: Tensor) -> Gaussian:
        """p(z_{t+1} | z_t, u_t) = N(f(z_t, u_t), diag s^2) for a draw ``z (B, n)``."""
        return self.process_noise.around(self.step(z, u))

    def initial_belief(self, x: Tensor) -> Gaussian:
        """q(z_0 | x_0): the N(0, I) prior fused with the encoder's factor of ``x``."""
        factor = self.encode(x)
        return fuse(standard_normal_like(factor.mean), factor)

    def update_belief(self, belief: Gaussian, u: Tensor, x: Tensor) -> Gaussian:
        """One Kalman step: the belief ``(B, n)`` pushed through the transition linearised at
        its mean (mean f(mu, u), variance diag(A diag(var) A^T) + s^2), then fused with the
        encoder's factor of ``x``."""
        lin = self.transition(belief.mean, u)
        mean = apply_local_linear(lin, belief.mean, u)
        var = torch.einsum("bij,bj->bi", lin.A.square(), belief.var)
        var = var + self.process_noise.logvar().exp()
        return fuse(Gaussian(mean, var.log()), self.encode(x))
