"""Gaussian recognition model q(z | x) = N(mu(x), diag sigma(x)^2) over stacked frames.

Images arrive as uint8 ``(B, k, H, W)`` (the dataset and the environments store them so, and
batches travel to the device in that form); the encoder maps them to floats in [0, 1] itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn


class Gaussian(NamedTuple):
    """Diagonal Gaussian, batched: ``mean`` and ``logvar`` are ``(B, n)``."""

    mean: Tensor
    logvar: Tensor

    @property
    def std(self) -> Tensor:
        """Standard deviation ``(B, n)``."""
        return torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> Tensor:
        """Variance ``(B, n)``."""
        return torch.exp(self.logvar)

    def sample(self) -> Tensor:
        """Reparameterised sample ``mean + std * eps``, ``(B, n)``; differentiable in both."""
        return self.mean + self.std * torch.randn_like(self.mean)


def to_unit_interval(x: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Images as floats in [0, 1]: uint8 pixels are divided by 255, floats pass unchanged.

    Float input is taken to be in [0, 1] already (checking it would cost a device sync).
    """
    if x.dtype == torch.uint8:
        return x.to(dtype) / 255.0
    if not x.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point in [0, 1], got {x.dtype}")
    return x.to(dtype)


def soft_clamp(x: Tensor, low: float, high: float) -> Tensor:
    """Smooth clamp into (low, high): about the identity well inside, saturating at the ends.

    A hard clamp has zero gradient outside the range, so a log-variance pushed past it would
    stay stuck there; softplus walls keep a (shrinking) gradient everywhere.
    """
    x = low + nn.functional.softplus(x - low)
    return high - nn.functional.softplus(high - x)


def build_mlp(sizes: Sequence[int], batch_norm: bool = False) -> nn.Sequential:
    """Linear layers of the given widths with ReLU between them and none after the last;
    ``batch_norm``: a BatchNorm1d before every ReLU."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(n_out), nn.ReLU()] if batch_norm else [nn.ReLU()]
    return nn.Sequential(*layers)


def conv_stack(in_channels: int, channels: Sequence[int]) -> nn.Sequential:
    """Stride-2 4x4 convolutions with ReLU: each halves H and W exactly (even sizes)."""
    layers: list[nn.Module] = []
    for c in channels:
        layers += [nn.Conv2d(in_channels, c, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        in_channels = c
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """q(z | x): images ``(B, k, H, W)`` -> :class:`Gaussian` with ``(B, n)`` fields.

    ``kind="mlp"`` flattens the frames into a fully connected net (E2C's pendulum: 2x800
    ReLU on 48x48x2); ``kind="conv"`` puts a stride-2 conv stack in front of it for larger
    images. The log-variance is soft-clamped into ``logvar_range``. ``batch_norm``: a
    BatchNorm1d before every ReLU of the fully connected layers.
    """

    def __init__(
        self,
        obs_shape: tuple[int, int, int],
        latent_dim: int,
        kind: Literal["mlp", "conv"] = "mlp",
        hidden_sizes: Sequence[int] = (800, 800),
        conv_channels: Sequence[int] = (32, 64, 128, 256),
        logvar_range: tuple[float, float] = (-12.0, 6.0),
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        k, H, W = obs_shape
        self.obs_shape = tuple(obs_shape)
        self.logvar_range = logvar_range
        if kind == "mlp":
            self.features: nn.Module = nn.Flatten()
            n_features = k * H * W
        else:
            self.features = nn.Sequential(conv_stack(k, conv_channels), nn.Flatten())
            shrink = 2 ** len(conv_channels)
            n_features = conv_channels[-1] * (H // shrink) * (W // shrink)
        self.head = build_mlp([n_features, *hidden_sizes, 2 * latent_dim], batch_norm)

    def forward(self, x: Tensor) -> Gaussian:
        """x: uint8 or float in [0, 1], ``(B, k, H, W)`` -> q(z | x) with ``(B, n)`` fields."""
        if tuple(x.shape[1:]) != self.obs_shape or x.dim() != 4:
            raise ValueError(
                f"encoder expects images (B, {', '.join(map(str, self.obs_shape))}), "
                f"got {tuple(x.shape)}; check obs_shape in the model config"
            )
        dtype = self.head[-1].weight.dtype
        mean, raw_logvar = self.head(self.features(to_unit_interval(x, dtype))).chunk(2, dim=-1)
        return Gaussian(mean, soft_clamp(raw_logvar, *self.logvar_range))
