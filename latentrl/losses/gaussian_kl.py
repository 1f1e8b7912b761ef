"""Closed-form KL divergences between the Gaussians of E2C's latent space."""

from __future__ import annotations

import torch
from torch import Tensor

from latentrl.models import low_rank_det_matrix, low_rank_update, transition_covariance


def kl_diag_gaussian_std_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, diag exp(logvar)) || N(0, I)): ``(..., n)`` -> ``(...)``."""
    return 0.5 * (torch.exp(logvar) + mean.square() - 1.0 - logvar).sum(-1)


def kl_diag_gaussians(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, diag exp(logvar1)) || N(mean2, diag exp(logvar2))): ``(..., n)`` -> ``(...)``."""
    ratio = torch.exp(logvar1 - logvar2)
    mahalanobis = (mean1 - mean2).square() * torch.exp(-logvar2)
    return 0.5 * (ratio + mahalanobis - 1.0 - (logvar1 - logvar2)).sum(-1)


def log_abs_det_low_rank(V: Tensor, R: Tensor) -> Tensor:
    """log |det(I + V R^T)| = log |det(I_k + R^T V)|: V, R ``(..., n, k)`` -> ``(...)``.

    For k = 1 that is log |1 + r^T v|, computed with log1p where 1 + r^T v > 0 (accurate for
    small r^T v) and log(-(1 + r^T v)) where it is negative (A is still invertible there); the
    unused branch gets a harmless input so no NaN leaks into gradients. -inf where A is
    singular. For k > 1, from an LU factorisation of the k x k matrix, in float32 at least
    (there is no LU in bfloat16).
    """
    if V.shape[-1] > 1:
        small = low_rank_det_matrix(V, R)
        if small.dtype in (torch.bfloat16, torch.float16):
            small = small.float()
        return torch.linalg.slogdet(small).logabsdet
    x = (V * R).sum((-1, -2))
    positive = x > -1
    from_positive = torch.log1p(torch.where(positive, x, torch.zeros_like(x)))
    from_negative = torch.log(-1.0 - torch.where(positive, torch.full_like(x, -2.0), x))
    return torch.where(positive, from_positive, from_negative)


def kl_linear_transition(
    mean1: Tensor,
    logvar1: Tensor,
    V: Tensor,
    R: Tensor,
    mean2: Tensor,
    logvar2: Tensor,
    noise_std: float = 0.0,
) -> Tensor:
    """KL(N(mean1, S1) || N(mean2, diag exp(logvar2))), S1 = A diag(exp(logvar1)) A^T + s^2 I.

    A = I + V R^T and s = ``noise_std``; V, R are ``(..., n, k)``, every other argument
    ``(..., n)``, the result ``(...)``. With s = 0, log det S1 = sum(logvar1) + 2 log|det A|
    (det A itself, not squared, appears in det S1 twice; :func:`log_abs_det_low_rank`); with
    s > 0 it comes from a Cholesky factor of the n x n S1.
    tr(S2^-1 S1) = sum_ij A_ij^2 var1_j / var2_i + s^2 sum_i 1 / var2_i needs no inverse, and
    is a sum of non-negative terms, so it stays accurate when A is nearly singular.
    """
    n = mean1.shape[-1]
    A = low_rank_update(V, R)
    ratio = torch.exp(logvar1.unsqueeze(-2) - logvar2.unsqueeze(-1))  # var1_j / var2_i
    trace = (A.square() * ratio).sum((-1, -2))
    if noise_std > 0:
        trace = trace + noise_std**2 * torch.exp(-logvar2).sum(-1)
        chol = torch.linalg.cholesky(transition_covariance(A, torch.exp(logvar1), noise_std))
        logdet1 = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    else:
        logdet1 = logvar1.sum(-1) + 2.0 * log_abs_det_low_rank(V, R)
    mahalanobis = ((mean2 - mean1).square() * torch.exp(-logvar2)).sum(-1)
    return 0.5 * (trace + mahalanobis - n + logvar2.sum(-1) - logdet1)
