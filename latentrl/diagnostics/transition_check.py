"""The locally linear transition as a latent variable model: its KL term and its linearization.

E2C's transition term is KL(Q^ || q(z_{t+1} | x_{t+1})) with the predicted Gaussian
Q^ = N(A mu_t + B u_t + o, A diag(sigma_t^2) A^T + diag s^2): a KL between a full and a
diagonal Gaussian, in closed form; :func:`kl_monte_carlo` estimates the same number by
sampling Q^. The planner uses the linearization (A, B, c) of the mean dynamics at one point;
:func:`linear_rollout` rolls it, frozen, over the next actions, to compare with the model's
own rollout and with the encodings the images actually give.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from latentrl.losses.rollout import roll_mean
from latentrl.models import E2C, Gaussian

LOG_2PI = math.log(2.0 * math.pi)


def kl_full_diag(mean1: Tensor, cov1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, cov1) || N(mean2, diag exp(logvar2))): means and logvar2 ``(B, n)``,
    cov1 ``(B, n, n)`` symmetric positive definite -> ``(B,)``."""
    n = mean1.shape[-1]
    inv_var2 = torch.exp(-logvar2)
    trace = (torch.diagonal(cov1, dim1=-2, dim2=-1) * inv_var2).sum(-1)
    mahalanobis = ((mean2 - mean1).square() * inv_var2).sum(-1)
    logdet1 = 2.0 * torch.log(torch.diagonal(torch.linalg.cholesky(cov1), dim1=-2, dim2=-1))
    return 0.5 * (trace + mahalanobis - n + logvar2.sum(-1) - logdet1.sum(-1))


def kl_monte_carlo(
    mean1: Tensor,
    cov1: Tensor,
    mean2: Tensor,
    logvar2: Tensor,
    samples: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Monte Carlo estimate of :func:`kl_full_diag`'s KL from ``samples`` draws of the first
    Gaussian: its mean ``(B,)`` and standard error ``(B,)``. With z = mean1 + L eps (L the
    Cholesky factor of cov1), log N(z; mean1, cov1) = -(|eps|^2 + log det cov1 + n log 2 pi)/2
    exactly, so no inverse is needed."""
    n = mean1.shape[-1]
    chol = torch.linalg.cholesky(cov1)
    eps = torch.randn(
        (samples, *mean1.shape), generator=generator, dtype=mean1.dtype, device=mean1.device
    )
    z = mean1 + torch.einsum("bij,sbj->sbi", chol, eps)
    logdet1 = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    log_p1 = -0.5 * (eps.square().sum(-1) + logdet1 + n * LOG_2PI)
    log_p2 = -0.5 * ((z - mean2).square() * torch.exp(-logvar2) + logvar2 + LOG_2PI).sum(-1)
    values = log_p1 - log_p2  # (S, B)
    return values.mean(0), values.std(0) / math.sqrt(samples)


def transition_noise_variance(model: E2C) -> Tensor:
    """The diagonal s^2 ``(n,)`` the model adds to its predicted next latent: a learned
    process noise where the kind has one (filter, PCC, PC3), else ``transition_noise^2``."""
    noise = getattr(model, "process_noise", None)
    if noise is not None:
        return noise.logvar().exp()
    parameter = next(model.parameters())
    std = model.config.transition_noise
    return torch.full((model.config.latent_dim,), std**2, dtype=parameter.dtype)


def predicted_next(model: E2C, q_t: Gaussian, u: Tensor) -> tuple[Tensor, Tensor]:
    """Q^'s mean ``(B, n)`` and covariance ``(B, n, n)``: q_t ``(B, n)`` pushed through the
    transition linearised at its mean, u ``(B, m)``, plus the model's noise."""
    lin = model.transition(q_t.mean, u)
    mean = torch.einsum("bij,bj->bi", lin.A, q_t.mean) + torch.einsum("bij,bj->bi", lin.B, u)
    mean = mean + lin.o
    cov = (lin.A * q_t.var.unsqueeze(-2)) @ lin.A.transpose(-1, -2)
    return mean, cov + torch.diag_embed(transition_noise_variance(model).to(cov))


def linear_rollout(A: Tensor, B: Tensor, c: Tensor, z: Tensor, actions: Tensor) -> Tensor:
    """z_{k+1} = A z_k + B u_k + c with one (A ``(B, n, n)``, B ``(B, n, m)``, c ``(B, n)``)
    for every step, from z ``(B, n)`` over actions ``(B, H, m)``: ``(B, H, n)``."""
    latents = []
    for k in range(actions.shape[1]):
        z = torch.einsum("bij,bj->bi", A, z) + torch.einsum("bij,bj->bi", B, actions[:, k]) + c
        latents.append(z)
    return torch.stack(latents, 1)


def rollout_errors(
    model: E2C, z0: Tensor, actions: Tensor, targets: Tensor, scale: Tensor
) -> dict[str, Tensor]:
    """Distances ``(B, H)`` to the encodings ``targets (B, H, n)`` of the images after each
    of ``actions (B, H, m)`` from z0 ``(B, n)``, in units of ``scale`` ``(n,)`` (the
    encodings' spread: 1 is as far as a typical encoding from their mean), of ``linear``:
    the linearization at (z0, u_0) rolled frozen; ``model``: the mean transition rolled."""
    A, B, c = model.linearize(z0, actions[:, 0])
    with torch.no_grad():
        predictions = {
            "linear": linear_rollout(A, B, c, z0, actions),
            "model": roll_mean(model, z0, actions),
        }
    return {
        name: ((pred - targets) / scale).square().mean(-1).sqrt()
        for name, pred in predictions.items()
    }


def linearization_error(
    model: E2C, z: Tensor, u: Tensor, radii: list[float], scale: Tensor, generator=None
) -> Tensor:
    """``(B, len(radii))``: |f(z + d, u) - (A (z + d) + B u + c)| / |f(z + d, u) - f(z, u)|
    for a random direction d of length r * |scale| per radius r, (A, B, c) the linearization
    at (z ``(B, n)``, u ``(B, m)``): the error of the planner's model relative to the change
    it predicts, as the step away from the linearization point grows."""
    A, B, c = model.linearize(z, u)
    direction = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
    direction = direction / direction.norm(dim=-1, keepdim=True) * scale.norm()
    errors = []
    with torch.no_grad():
        f0 = model.step(z, u)
        for radius in radii:
            moved = z + radius * direction
            f = model.step(moved, u)
            linear = torch.einsum("bij,bj->bi", A, moved) + torch.einsum("bij,bj->bi", B, u) + c
            errors.append((f - linear).norm(dim=-1) / (f - f0).norm(dim=-1).clamp_min(1e-12))
    return torch.stack(errors, -1)
