"""Locally linear latent transition: z_{t+1} = A_t z_t + B_t u_t + o_t, A_t = I + V_t R_t^T.

A network reads z_t (and optionally u_t) and outputs V_t, R_t ``(n, k)``, B_t, o_t. E2C's A is
the rank k = 1 case, I + v r^T; a larger k (``model.transition_rank``) lets A couple several
pairs of coordinates at once, as a system with k degrees of freedom integrates k velocities.

Since det(I + V R^T) = det(I_k + R^T V), A_t is invertible and the Gaussian KL's
log-determinant is defined exactly when I_k + R^T V is. The common fix for k = 1, sigmoid on v
and r, makes r^T v >= 0, so det A >= 1 and A can never contract. Here V and R are instead each
squashed smoothly into the open ball of Frobenius radius sqrt(max_abs_vr), so the spectral norm
of R^T V is below max_abs_vr < 1: every eigenvalue of I_k + R^T V lies within max_abs_vr of 1,
det A lies in ((1 - max_abs_vr)^k, (1 + max_abs_vr)^k) and can be below 1. For k = 1 that is
|r^T v| < max_abs_vr by Cauchy-Schwarz.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from latentrl.models.encoder import build_mlp


class LocalLinear(NamedTuple):
    """One local linearisation, batched.

    A: ``(B, n, n)`` = I + V R^T;  B: ``(B, n, m)``;  o: ``(B, n)``;  V, R: ``(B, n, k)``.
    """

    A: Tensor
    B: Tensor
    o: Tensor
    V: Tensor
    R: Tensor


def bound_norm(x: Tensor, max_norm: float) -> Tensor:
    """Smooth map of ``x (..., n)`` into the open ball of radius ``max_norm``.

    Computes ``max_norm * x / sqrt(1 + |x|^2)`` (about ``max_norm * x`` for small x); x is
    first divided by its largest entry so that huge raw outputs cannot overflow |x|^2. The
    result does not depend on that divisor, so its gradient is the true one.
    """
    scale = x.abs().amax(dim=-1, keepdim=True).clamp_min(1.0)
    y = x / scale
    return max_norm * y / torch.sqrt(scale.reciprocal().square() + y.square().sum(-1, keepdim=True))


def low_rank_update(V: Tensor, R: Tensor) -> Tensor:
    """``I + V R^T``: V, R ``(..., n, k)`` -> ``(..., n, n)``."""
    eye = torch.eye(V.shape[-2], dtype=V.dtype, device=V.device)
    return eye + V @ R.transpose(-1, -2)


def low_rank_det_matrix(V: Tensor, R: Tensor) -> Tensor:
    """``I_k + R^T V`` ``(..., k, k)`` for V, R ``(..., n, k)``: its determinant is that of
    ``I + V R^T`` (the matrix determinant lemma)."""
    eye = torch.eye(V.shape[-1], dtype=V.dtype, device=V.device)
    return eye + R.transpose(-1, -2) @ V


def apply_local_linear(lin: LocalLinear, z: Tensor, u: Tensor) -> Tensor:
    """``A z + B u + o``: z ``(B, n)``, u ``(B, m)`` -> ``(B, n)``."""
    return torch.einsum("bij,bj->bi", lin.A, z) + torch.einsum("bij,bj->bi", lin.B, u) + lin.o


def transition_covariance(A: Tensor, var: Tensor, noise_std: float = 0.0) -> Tensor:
    """Covariance of the predicted next latent, ``A diag(var) A^T + noise_std^2 I``.

    A: ``(B, n, n)``; var: ``(B, n)`` variances of q(z_t | x_t) -> ``(B, n, n)``.
    """
    cov = (A * var.unsqueeze(-2)) @ A.transpose(-1, -2)
    if noise_std > 0:
        cov = cov + noise_std**2 * torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    return cov


class Transition(nn.Module):
    """Transition network: ``z (B, n)``, ``u (B, m)`` -> :class:`LocalLinear`.

    As in E2C the network sees only z (``condition_on_action=False``), so the mean dynamics
    are exactly linear in u; with ``condition_on_action=True`` it also reads u.
    """

    def __init__(
        self,
        latent_dim: int,
        action_dim: int,
        hidden_sizes: Sequence[int] = (100, 100),
        max_abs_vr: float = 0.95,
        condition_on_action: bool = False,
        global_transition: bool = False,
        rank: int = 1,
    ) -> None:
        super().__init__()
        n, m, k = latent_dim, action_dim, rank
        self.latent_dim, self.action_dim, self.rank = n, m, k
        self.condition_on_action = condition_on_action
        self.max_norm = math.sqrt(max_abs_vr)
        in_dim = n + m if condition_on_action else n
        self.net: nn.Module | None = None
        self.constant: nn.Parameter | None = None
        outputs = 2 * n * k + n * m + n  # V, R, B, o
        if global_transition:  # random, not zero: V = R = 0 is a saddle of A = I + V R^T
            self.constant = nn.Parameter(0.1 * torch.randn(outputs))
        else:
            self.net = build_mlp([in_dim, *hidden_sizes, outputs])

    def forward(self, z: Tensor, u: Tensor) -> LocalLinear:
        """z ``(B, n)``, u ``(B, m)`` -> A ``(B, n, n)``, B ``(B, n, m)``, o ``(B, n)``,
        V, R ``(B, n, k)``."""
        n, m, k = self.latent_dim, self.action_dim, self.rank
        if z.dim() != 2 or z.shape[1] != n or u.dim() != 2 or u.shape != (z.shape[0], m):
            raise ValueError(
                f"transition expects z (B, {n}) and u (B, {m}), got z {tuple(z.shape)} and "
                f"u {tuple(u.shape)}; check latent_dim and action_dim in the model config"
            )
        if self.constant is not None:
            h = self.constant.expand(z.shape[0], -1)
        else:
            assert self.net is not None
            h = self.net(torch.cat([z, u], dim=-1) if self.condition_on_action else z)
        raw_V, raw_R, raw_B, o = h.split([n * k, n * k, n * m, n], dim=-1)
        V = bound_norm(raw_V, self.max_norm).unflatten(-1, (n, k))
        R = bound_norm(raw_R, self.max_norm).unflatten(-1, (n, k))
        B = raw_B.unflatten(-1, (n, m))
        A = low_rank_update(V, R)
        return LocalLinear(A=A, B=B, o=o, V=V, R=R)
