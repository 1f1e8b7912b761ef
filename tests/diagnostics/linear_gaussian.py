"""A linear Gaussian VAE, where everything the diagnostics estimate has a closed form.

p(z) = N(0, I_n), p(x | z) = N(W z + b, s^2 I_d): p(x) = N(b, W W^T + s^2 I) and the posterior
p(z | x) = N(m, S), S = (I + W^T W / s^2)^-1, m = S W^T (x - b) / s^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from latentrl.models import Gaussian


@dataclass(frozen=True)
class LinearGaussian:
    W: Tensor  # (d, n)
    b: Tensor  # (d,)
    s: float

    @classmethod
    def random(cls, d: int = 6, n: int = 2, s: float = 0.5, seed: int = 0) -> LinearGaussian:
        g = torch.Generator().manual_seed(seed)
        W = torch.randn(d, n, generator=g, dtype=torch.float64)
        return cls(W, torch.randn(d, generator=g, dtype=torch.float64), s)

    @classmethod
    def orthogonal(cls, d: int = 6, n: int = 2, s: float = 0.5, seed: int = 0) -> LinearGaussian:
        """W with orthogonal columns: the posterior covariance is diagonal, so a diagonal q
        can be exact."""
        g = torch.Generator().manual_seed(seed)
        Q, _ = torch.linalg.qr(torch.randn(d, n, generator=g, dtype=torch.float64))
        W = Q * torch.tensor([1.5, 0.7], dtype=torch.float64)[:n]
        return cls(W, torch.randn(d, generator=g, dtype=torch.float64), s)

    def sample_x(self, count: int, seed: int = 1) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(count, self.W.shape[1], generator=g, dtype=torch.float64)
        noise = torch.randn(count, self.W.shape[0], generator=g, dtype=torch.float64)
        return z @ self.W.T + self.b + self.s * noise

    def log_px(self, x: Tensor) -> Tensor:
        """Exact log p(x): ``(B, d)`` -> ``(B,)``."""
        cov = self.W @ self.W.T + self.s**2 * torch.eye(self.W.shape[0], dtype=x.dtype)
        return MultivariateNormal(self.b, cov).log_prob(x)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Exact p(z | x): means ``(B, n)`` and the shared covariance ``(n, n)``."""
        n = self.W.shape[1]
        S = torch.linalg.inv(torch.eye(n, dtype=x.dtype) + self.W.T @ self.W / self.s**2)
        return (x - self.b) @ self.W @ S / self.s**2, S

    def log_likelihood(self, x: Tensor):
        """The diagnostics' LogLikelihood for the images x ``(B, d)``: z (S, B, n) -> (S, B)."""

        def log_lik(z: Tensor) -> Tensor:
            mean = z @ self.W.T + self.b
            d = x.shape[-1]
            return -0.5 * ((x - mean).square().sum(-1) / self.s**2) - d * (
                math.log(self.s) + 0.5 * math.log(2 * math.pi)
            )

        return log_lik

    def expected_log_likelihood(self, x: Tensor, q: Gaussian) -> Tensor:
        """E_q[log p(x | z)] in closed form: ``(B,)``."""
        d = x.shape[-1]
        residual = (x - q.mean @ self.W.T - self.b).square().sum(-1)
        spread = (q.var @ self.W.square().T).sum(-1)
        log_norm = d * (math.log(self.s) + 0.5 * math.log(2 * math.pi))
        return -0.5 * (residual + spread) / self.s**2 - log_norm


def kl_to_posterior(model: LinearGaussian, x: Tensor, q: Gaussian) -> Tensor:
    """KL(q || p(z | x)) exactly: ``(B,)``."""
    mean, S = model.posterior(x)
    post = MultivariateNormal(mean, S.expand(x.shape[0], -1, -1))
    q_full = MultivariateNormal(q.mean, torch.diag_embed(q.var))
    return torch.distributions.kl_divergence(q_full, post)
