"""PC3: Predictive Coding for Locally-Linear Control (Shu, Nguyen, Chow, Pham, Than,
Ghavamzadeh, Ermon, Bui, ICML 2020).

A decoder-free model: a deterministic encoder z = E(x) (the mean of E2C's encoder network) and
the latent dynamics F(z_{t+1} | z_t, u_t) = N(f(z_t, u_t), diag s^2), E2C's locally linear
mean f = A z + B u + o with a learned diagonal noise s^2 (:class:`ProcessNoise`; the authors'
code learns a state-dependent one). F is both the model the planner linearises and the critic
of the predictive-coding bound that trains E (:mod:`latentrl.losses.pc3`); no image is ever
predicted, so there is no decoder (:attr:`has_decoder` is False).

The encoder network still has E2C's log-variance outputs; PC3 never reads them (their weights
get no gradient). :meth:`PC3.encode` returns the encoder's mean with the narrowest variance
the encoder can express, ``exp(logvar_range[0])``: a point mass, up to that floor, so that the
belief protocol of the agents sees a Gaussian like every other kind's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from latentrl.models.e2c import E2C, JacobianKind, ModelConfig
from latentrl.models.encoder import Gaussian
from latentrl.models.filtering import ProcessNoise


class PC3(E2C):
    """A deterministic encoder and a stochastic locally linear latent dynamics; no decoder."""

    has_decoder = False

    def __init__(self, config: ModelConfig, jacobian: JacobianKind = "exact") -> None:
        super().__init__(config, jacobian)
        self.process_noise = ProcessNoise(config.latent_dim, config.logvar_range)

    def encode(self, x: Tensor) -> Gaussian:
        """E(x): images ``(B, k, H, W)`` -> the encoder's mean ``(B, n)``, with the encoder's
        smallest variance ``exp(logvar_range[0])`` (module docstring)."""
        mean = self.encoder(x).mean
        return Gaussian(mean, torch.full_like(mean, self.config.logvar_range[0]))

    def transition_density(self, z: Tensor, u: Tensor) -> Gaussian:
        """F(z_{t+1} | z_t, u_t) = N(f(z_t, u_t), diag s^2) for ``z (B, n)``, ``u (B, m)``."""
        return self.process_noise.around(self.step(z, u))
