"""A trained model seen as a latent variable model of single images: p(z) p(x | z), q(z | x).

The prior is N(0, I) for every model kind (the KL term of E2C, PCC and the filter's first
step); q(z | x) is the model's belief after one observation (``initial_belief``: the encoder
for E2C and PCC, the encoder's factor fused with the prior for the filter); p(x | z) is the
decoder with the model's own likelihood (:mod:`latentrl.losses.likelihoods`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from latentrl.losses.gaussian_density import gaussian_log_density
from latentrl.losses.likelihoods import observation_nll
from latentrl.models import E2C, Gaussian, to_unit_interval

LogLikelihood = Callable[[Tensor], Tensor]
"""log p(x_b | z): latents ``(S, B, n)`` for the B images of a batch -> ``(S, B)`` nats."""


def standard_normal_log_density(z: Tensor) -> Tensor:
    """log N(z; 0, I): ``(..., n)`` -> ``(...)``."""
    zeros = torch.zeros_like(z)
    return gaussian_log_density(z, zeros, zeros)


def reparameterize(q: Gaussian, eps: Tensor) -> Tensor:
    """z = mean + std * eps: q ``(B, n)`` fields, eps ``(S, B, n)`` -> ``(S, B, n)``."""
    return q.mean + q.std * eps


def image_log_likelihood(model: E2C, images: Tensor) -> LogLikelihood:
    """log p(x_b | z) of ``model`` for images uint8 or [0, 1] floats ``(B, k, H, W)``."""
    dtype = next(model.parameters()).dtype
    target = to_unit_interval(images, dtype)

    def log_likelihood(z: Tensor) -> Tensor:
        samples, batch = z.shape[:2]
        decoded = model.decode(z.flatten(0, 1))
        repeated = target.unsqueeze(0).expand(samples, *target.shape).flatten(0, 1)
        return -observation_nll(model, decoded, repeated).view(samples, batch)

    return log_likelihood


def posterior(model: E2C, images: Tensor) -> Gaussian:
    """q(z | x) of ``model`` after one observation, ``(B, n)`` fields (module docstring)."""
    return model.initial_belief(images)
