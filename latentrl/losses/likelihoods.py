"""Observation likelihoods of the decoder, in nats per image."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from latentrl.models import E2C


def bernoulli_nll(logits: Tensor, target: Tensor) -> Tensor:
    """-log Bernoulli(target; sigmoid(logits)) summed over pixels: ``(B, ...)`` -> ``(B,)``.

    ``target`` holds intensities in [0, 1] (the usual continuous relaxation for grey pixels).
    """
    nll = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return nll.flatten(1).sum(-1)


def gaussian_nll(mean: Tensor, log_std: Tensor, target: Tensor) -> Tensor:
    """-log N(target; mean, exp(log_std)^2) summed over pixels: ``(B, ...)`` -> ``(B,)``.

    ``log_std`` broadcasts against ``mean`` (a scalar for the model's shared std).
    """
    z = (target - mean) * torch.exp(-log_std)
    nll = 0.5 * z.square() + log_std + 0.5 * math.log(2 * math.pi)
    return nll.flatten(1).sum(-1)


def observation_nll(model: E2C, decoded: Tensor, target: Tensor) -> Tensor:
    """-log p(target | z) under the model's likelihood, nats per image: ``(B,)``.

    decoded: ``model.decode(z)`` ``(B, k, H, W)``; target: floats in [0, 1], same shape.
    """
    if model.config.likelihood == "bernoulli":
        return bernoulli_nll(decoded, target)
    return gaussian_nll(decoded, model.decoder.log_std(), target)
