"""PCC: Prediction, Consistency, Curvature (Levine, Chow, Shu, Li, Ghavamzadeh, Bui, ICLR 2020).

The latent variable model of PCC, with E2C's parts in its roles:

- the encoder E(z | x) = N(m(x), diag R(x)) (E2C's q(z | x)), which both embeds x_t for the
  planner and stands for the variational posterior Q(z_{t+1} | x_{t+1});
- the latent dynamics F(z_{t+1} | z_t, u_t) = N(f(z_t, u_t), diag s^2): E2C's locally linear
  mean f = A z + B u + o with a learned diagonal noise s^2 (:class:`ProcessNoise`; the
  authors' code learns a state-dependent one, here it is one vector, as in the filter kind);
- the decoder D(x | z) (E2C's p(x | z));
- the backward encoder Q(z_t | z_{t+1}, x_t, u_t) of PCC's amortised variational bound: the
  second factor of Q(z_t, z_{t+1} | x_t, x_{t+1}, u_t) = Q(z_{t+1} | x_{t+1})
  Q(z_t | z_{t+1}, x_t, u_t). Only training uses it.

The planner sees what it sees in E2C: ``step``, ``linearize`` (the mean f) and the encoder's
mean as the belief. The objective is :mod:`latentrl.losses.pcc`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from latentrl.models.e2c import E2C, JacobianKind, ModelConfig
from latentrl.models.encoder import Gaussian, build_mlp, conv_stack, soft_clamp, to_unit_interval
from latentrl.models.filtering import ProcessNoise
from latentrl.models.initialisation import initialise

BACKWARD_WIDTH_SHARE = 4
"""The backward encoder is about this many times narrower than the encoder's last hidden
layer (the authors' pendulum nets: a 500-wide encoder, a 200-wide backward encoder)."""
MIN_BACKWARD_WIDTH = 16


class BackwardEncoder(nn.Module):
    """Q(z_t | z_{t+1}, x_t, u_t) = N(mean, diag exp(logvar)): ``z_next (B, n)``, ``x (B, k, H,
    W)`` (uint8 or floats in [0, 1]), ``u (B, m)`` -> :class:`Gaussian` with ``(B, n)`` fields.

    x_t is embedded by its own layers (flattened, or the conv stack for ``kind="conv"``) into
    ``width`` features; one ReLU layer over [features, z_{t+1}, u_t] then gives the mean and
    the log-variance, soft-clamped into ``logvar_range``.
    """

    def __init__(self, config: ModelConfig, width: int) -> None:
        super().__init__()
        k, H, W = config.obs_shape
        n, m = config.latent_dim, config.action_dim
        self.logvar_range = config.logvar_range
        if config.encoder == "mlp":
            self.features: nn.Module = nn.Flatten()
            n_features = k * H * W
        else:
            self.features = nn.Sequential(conv_stack(k, config.conv_channels), nn.Flatten())
            shrink = 2 ** len(config.conv_channels)
            n_features = config.conv_channels[-1] * (H // shrink) * (W // shrink)
        self.embed_x = nn.Linear(n_features, width)
        self.head = build_mlp([width + n + m, width, 2 * n])

    def forward(self, z_next: Tensor, x: Tensor, u: Tensor) -> Gaussian:
        dtype = self.embed_x.weight.dtype
        features = self.embed_x(self.features(to_unit_interval(x, dtype)))
        hidden = self.head(torch.cat([features, z_next, u], dim=-1))
        mean, raw_logvar = hidden.chunk(2, dim=-1)
        return Gaussian(mean, soft_clamp(raw_logvar, *self.logvar_range))


def backward_width(config: ModelConfig) -> int:
    """Width of the backward encoder for ``config``."""
    return max(MIN_BACKWARD_WIDTH, config.hidden_sizes[-1] // BACKWARD_WIDTH_SHARE)


class PCC(E2C):
    """E2C's encoder, transition and decoder, a learned transition noise and PCC's backward
    encoder Q(z_t | z_{t+1}, x_t, u_t)."""

    def __init__(self, config: ModelConfig, jacobian: JacobianKind = "exact") -> None:
        super().__init__(config, jacobian)
        self.process_noise = ProcessNoise(config.latent_dim, config.logvar_range)
        self.backward_encoder = BackwardEncoder(config, backward_width(config))
        initialise(self.backward_encoder, config.init)

    def transition_density(self, z: Tensor, u: Tensor) -> Gaussian:
        """F(z_{t+1} | z_t, u_t) = N(f(z_t, u_t), diag s^2) for ``z (B, n)``, ``u (B, m)``."""
        return self.process_noise.around(self.step(z, u))

    def backward(self, z_next: Tensor, x: Tensor, u: Tensor) -> Gaussian:
        """Q(z_t | z_{t+1}, x_t, u_t): ``z_next (B, n)``, ``x (B, k, H, W)``, ``u (B, m)``."""
        return self.backward_encoder(z_next, x, u)
