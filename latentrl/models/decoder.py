"""Observation model p(x | z): Bernoulli logits (E2C's choice) or a Gaussian mean per pixel."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from latentrl.models.encoder import build_mlp

# uint8 pixels are quantised in steps of 1/255, so a density narrower than that measures
# nothing real; without a floor a learned std collapses on constant background pixels and the
# Gaussian NLL runs off to minus infinity.
MIN_GAUSSIAN_STD = 1.0 / 255.0


def deconv_stack(channels: Sequence[int], out_channels: int) -> nn.Sequential:
    """Stride-2 4x4 transposed convolutions, each doubling H and W; no activation at the end.

    ``channels`` runs from the coarsest feature map to the finest, e.g. ``(256, 128, 64, 32)``.
    """
    layers: list[nn.Module] = []
    sizes = [*channels, out_channels]
    for i, (c_in, c_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Decoder(nn.Module):
    """p(x | z): latents ``(B, n)`` -> ``(B, k, H, W)`` Bernoulli logits or Gaussian means.

    ``kind="mlp"``: a fully connected net to all pixels (E2C's pendulum: 2x800 ReLU).
    ``kind="deconv"``: fully connected layers to a coarse feature map of
    ``conv_channels[-1]`` channels at ``(H, W) / 2**len(conv_channels)``, then stride-2
    transposed convolutions that mirror the conv encoder.

    Gaussian likelihood: the std is one scalar shared by all pixels, either fixed at
    ``gaussian_std`` or learned from it (kept above :data:`MIN_GAUSSIAN_STD`). A single
    scalar rather than one per pixel because per-pixel variances collapse on the constant
    background. Means are unsquashed (linear output).
    """

    def __init__(
        self,
        obs_shape: tuple[int, int, int],
        latent_dim: int,
        kind: Literal["mlp", "deconv"] = "mlp",
        hidden_sizes: Sequence[int] = (800, 800),
        conv_channels: Sequence[int] = (32, 64, 128, 256),
        likelihood: Literal["bernoulli", "gaussian"] = "bernoulli",
        gaussian_std: float = 0.1,
        learn_gaussian_std: bool = False,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        k, H, W = obs_shape
        self.obs_shape = tuple(obs_shape)
        self.likelihood = likelihood
        if kind == "mlp":
            self.body = nn.Sequential(
                build_mlp([latent_dim, *hidden_sizes, k * H * W], batch_norm),
                nn.Unflatten(-1, (k, H, W)),
            )
        else:
            shrink = 2 ** len(conv_channels)
            coarse = (conv_channels[-1], H // shrink, W // shrink)
            self.body = nn.Sequential(
                build_mlp([latent_dim, *hidden_sizes, math.prod(coarse)], batch_norm),
                nn.ReLU(),
                nn.Unflatten(-1, coarse),
                deconv_stack(tuple(reversed(conv_channels)), k),
            )
        self.learn_gaussian_std = learn_gaussian_std and likelihood == "gaussian"
        if self.learn_gaussian_std:
            # Unconstrained parameter whose floored softplus starts exactly at gaussian_std.
            floor = math.log(MIN_GAUSSIAN_STD)
            raw = floor + math.log(math.expm1(math.log(gaussian_std) - floor))
            self.raw_log_std = nn.Parameter(torch.tensor(raw))
        else:
            self.register_buffer("raw_log_std", torch.tensor(math.log(gaussian_std)))

    def forward(self, z: Tensor) -> Tensor:
        """z ``(B, n)`` -> logits (bernoulli) or means (gaussian), ``(B, k, H, W)``."""
        return self.body(z)

    def log_std(self) -> Tensor:
        """Log standard deviation of the Gaussian likelihood, a scalar tensor."""
        if not self.learn_gaussian_std:
            return self.raw_log_std
        floor = math.log(MIN_GAUSSIAN_STD)
        return floor + nn.functional.softplus(self.raw_log_std - floor)
