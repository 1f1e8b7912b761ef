"""Closed-form log-densities and entropies of diagonal Gaussians in the latent space."""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """log N(x; mean, diag exp(logvar)): every argument ``(..., n)`` -> ``(...)``."""
    return -0.5 * ((x - mean).square() * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)


def pairwise_gaussian_log_density(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """``[i, j] = log N(x_i; mean_j, diag exp(logvar_j))``: x ``(B, n)``, mean and logvar
    ``(K, n)`` -> ``(B, K)``; every x against every Gaussian, without a loop."""
    return gaussian_log_density(x.unsqueeze(1), mean.unsqueeze(0), logvar.unsqueeze(0))


def gaussian_entropy(logvar: Tensor) -> Tensor:
    """H(N(mean, diag exp(logvar))) = 1/2 sum(1 + log 2 pi + logvar): ``(..., n)`` -> ``(...)``."""
    return 0.5 * (1.0 + LOG_2PI + logvar).sum(-1)
