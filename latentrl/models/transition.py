"""Locally linear latent transition: z_{t+1} = A_t z_t + B_t u_t + o_t, A_t = I + v_t r_t^T.

A network reads z_t (and optionally u_t) and outputs v_t, r_t, B_t, o_t. Since
det(I + v r^T) = 1 + r^T v, A_t is invertible and the Gaussian KL's log-determinant
log(1 + r^T v) is defined exactly when 1 + r^T v > 0. The common fix, sigmoid on v and r,
makes r^T v >= 0, so det A >= 1 and A can never contract. Here v and r are instead each
squashed smoothly into the open ball of radius sqrt(max_abs_vr), so |r^T v| < max_abs_vr < 1
by Cauchy-Schwarz: det A lies in (1 - max_abs_vr, 1 + max_abs_vr) and can be below 1.
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

    A: ``(B, n, n)`` = I + v r^T;  B: ``(B, n, m)``;  o: ``(B, n)``;  v, r: ``(B, n)``.
    """

    A: Tensor
    B: Tensor
    o: Tensor
    v: Tensor
    r: Tensor


def bound_norm(x: Tensor, max_norm: float) -> Tensor:
    """Smooth map of ``x (..., n)`` into the open ball of radius ``max_norm``.

    Computes ``max_norm * x / sqrt(1 + |x|^2)`` (about ``max_norm * x`` for small x); x is
    first divided by its largest entry so that huge raw outputs cannot overflow |x|^2. The
    result does not depend on that divisor, so its gradient is the true one.
    """
    scale = x.abs().amax(dim=-1, keepdim=True).clamp_min(1.0)
    y = x / scale
    return max_norm * y / torch.sqrt(scale.reciprocal().square() + y.square().sum(-1, keepdim=True))


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
    ) -> None:
        super().__init__()
        n, m = latent_dim, action_dim
        self.latent_dim, self.action_dim = n, m
        self.condition_on_action = condition_on_action
        self.max_norm = math.sqrt(max_abs_vr)
        in_dim = n + m if condition_on_action else n
        self.net: nn.Module | None = None
        self.constant: nn.Parameter | None = None
        if global_transition:  # random, not zero: v = r = 0 is a saddle of A = I + v r^T
            self.constant = nn.Parameter(0.1 * torch.randn(3 * n + n * m))
        else:
            self.net = build_mlp([in_dim, *hidden_sizes, 3 * n + n * m])

    def forward(self, z: Tensor, u: Tensor) -> LocalLinear:
        """z ``(B, n)``, u ``(B, m)`` -> A ``(B, n, n)``, B ``(B, n, m)``, o, v, r ``(B, n)``."""
        n, m = self.latent_dim, self.action_dim
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
        raw_v, raw_r, raw_B, o = h.split([n, n, n * m, n], dim=-1)
        v = bound_norm(raw_v, self.max_norm)
        r = bound_norm(raw_r, self.max_norm)
        B = raw_B.unflatten(-1, (n, m))
        eye = torch.eye(n, dtype=z.dtype, device=z.device)
        A = eye + v.unsqueeze(-1) * r.unsqueeze(-2)
        return LocalLinear(A=A, B=B, o=o, v=v, r=r)
