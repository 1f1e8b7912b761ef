"""The mean transition rolled on over a window, for the terms over several steps."""

from __future__ import annotations

import torch
from torch import Tensor

from latentrl.losses.forward import Continuation, ForwardPass
from latentrl.models import E2C


def roll_mean(model: E2C, z: Tensor, actions: Tensor, noise_std: float = 0.0) -> Tensor:
    """Latents after each of ``actions (B, K, m)`` from ``z (B, n)`` under the mean transition
    (plus Gaussian noise of ``noise_std`` per step): ``(B, K, n)``."""
    latents = []
    for k in range(actions.shape[1]):
        z = model.step(z, actions[:, k])
        if noise_std > 0:
            z = z + noise_std * torch.randn_like(z)
        latents.append(z)
    return torch.stack(latents, dim=1)


def scale_gradient(x: Tensor, scale: float) -> Tensor:
    """``x`` in the forward pass; its gradient multiplied by ``scale`` in the backward pass."""
    return x.detach() + scale * (x - x.detach())


def with_rollout(
    fp: ForwardPass, continuation: Continuation, encoder_gradient: float = 1.0
) -> ForwardPass:
    """``fp`` with its continuation and the rollout z^_{t+k} = f(z^_{t+k-1}, u_{t+k-1}),
    k = 2..K, ``(B, K - 1, n)``, from z^_{t+1} under the mean transition (plus the model's
    transition noise per step). The rollout's gradient reaches the encoder through z_t scaled
    by ``encoder_gradient`` (0: the terms over several steps train transition and decoder
    only); the transition gets it in full."""
    model, noise = fp.model, fp.model.config.transition_noise
    if encoder_gradient == 1.0:
        start = fp.z_hat
    else:  # the same z^_{t+1}, with a scaled gradient into the encoder through z_t
        start = model.step(scale_gradient(fp.z_t, encoder_gradient), fp.u_t)
        start = start + (fp.z_hat - start).detach()  # adds the transition noise, if any
    rollout = roll_mean(model, start, continuation.action.to(fp.dtype), noise)
    return fp._replace(continuation=continuation, rollout=rollout)
