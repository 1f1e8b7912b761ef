"""The forward pass every loss term reads: one encoding, transition and decoding of a batch.

Per transition (x_t, u_t, x_{t+1}): q(z_t | x_t) and q(z_{t+1} | x_{t+1}) from one encoder pass
over both halves of the batch, z_t ~ q(z_t | x_t), the transition's linearisation (A, B, o) at
z_t, the predicted distribution Q^ = N(A mu_t + B u_t + o, A diag(sigma_t^2) A^T [+ s^2 I]) and
z^_{t+1} = A z_t + B u_t + o [+ s eps], which pushes the same sample through the same
linearisation and so is an exact draw from Q^ (as in E2C). One decoder pass over
(z_t, z^_{t+1}). With a :class:`Continuation` the terms over several steps also get the mean
transition rolled on from z^_{t+1} (:mod:`latentrl.losses.rollout`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from latentrl.models import (
    E2C,
    Gaussian,
    LocalLinear,
    apply_local_linear,
    low_rank_det_matrix,
    to_unit_interval,
)


class Continuation(NamedTuple):
    """What follows each row of a batch, for the terms over windows of K steps."""

    action: Tensor
    """``(B, K - 1, m)``: u_{t+1}, ..., u_{t+K-1}."""
    next_obs: Tensor
    """``(B, K - 1, k, H, W)``: x_{t+2}, ..., x_{t+K}."""
    valid: Tensor
    """``(B,)`` bool: the row starts K chained transitions (other rows do not count)."""
    batch_valid: Tensor | None = None
    """``(B_all,)`` bool: ``valid`` of the whole batch when this batch is one process's shard
    of it (:mod:`latentrl.distributed`), so that a mean over valid rows divides by the whole
    batch's count; None: this batch is the whole batch."""


class ForwardPass(NamedTuple):
    """What the terms share; B rows, latent size n, images ``(k, H, W)``."""

    model: E2C
    dtype: torch.dtype
    """The model's parameter dtype; images and actions are converted to it."""
    target_t: Tensor
    """``(B, k, H, W)``: x_t as floats in [0, 1]."""
    target_next: Tensor
    """``(B, k, H, W)``: x_{t+1} as floats in [0, 1]."""
    u_t: Tensor
    """``(B, m)``."""
    q: Gaussian
    """``(2B, n)``: q(z | x) of x_t (rows :B) and x_{t+1} (rows B:)."""
    q_t: Gaussian
    """``(B, n)``: q(z_t | x_t)."""
    q_next: Gaussian
    """``(B, n)``: q(z_{t+1} | x_{t+1})."""
    z_t: Tensor
    """``(B, n)``: the sample of q(z_t | x_t)."""
    mean_pred: Tensor
    """``(B, n)``: the mean of Q^."""
    lin: LocalLinear
    """The transition's linearisation at z_t."""
    z_hat: Tensor
    """``(B, n)``: z^_{t+1}, a draw from Q^."""
    decoded: Tensor
    """``(2B, k, H, W)``: the decoding of z_t (rows :B) and z^_{t+1} (rows B:)."""
    continuation: Continuation | None = None
    """The steps after each row (None: no terms over several steps)."""
    rollout: Tensor | None = None
    """``(B, K - 1, n)``: z^_{t+2}, ..., z^_{t+K} (None: not needed by the configured terms)."""

    @property
    def batch(self) -> int:
        """B, the number of transitions."""
        return self.target_t.shape[0]


def forward_pass(model: E2C, x_t: Tensor, u_t: Tensor, x_next: Tensor) -> ForwardPass:
    """The shared forward pass (module docstring), without a continuation.

    x_t, x_next: images ``(B, k, H, W)``, uint8 or float in [0, 1]; u_t: ``(B, m)``.
    Draws z_t (and, with transition noise, the noise of z^_{t+1}) from torch's global RNG.
    """
    if x_t.shape != x_next.shape:
        raise ValueError(f"x_t {tuple(x_t.shape)} and x_next {tuple(x_next.shape)} differ")
    batch = x_t.shape[0]
    dtype = next(model.parameters()).dtype
    target_t, target_next = to_unit_interval(x_t, dtype), to_unit_interval(x_next, dtype)
    u_t = u_t.to(dtype)

    # One encoder and one decoder pass over both halves of the batch (no batch-coupled layers).
    q = model.encode(torch.cat([target_t, target_next]))
    q_t = Gaussian(q.mean[:batch], q.logvar[:batch])
    q_next = Gaussian(q.mean[batch:], q.logvar[batch:])
    z_t = q_t.sample()
    mean_pred, lin = model.predict(q_t, z_t, u_t)
    noise = model.config.transition_noise
    z_hat = apply_local_linear(lin, z_t, u_t)
    if noise > 0:
        z_hat = z_hat + noise * torch.randn_like(z_hat)
    decoded = model.decode(torch.cat([z_t, z_hat]))
    return ForwardPass(
        model,
        dtype,
        target_t,
        target_next,
        u_t,
        q,
        q_t,
        q_next,
        z_t,
        mean_pred,
        lin,
        z_hat,
        decoded,
    )


@torch.no_grad()
def diagnostics(fp: ForwardPass) -> dict[str, Tensor]:
    """Detached scalars of the forward pass: ``diag/det_A_{mean,min,max}``,
    ``diag/abs_vr_mean`` (mean |det A - 1|, |v^T r| at rank 1), ``diag/latent_std_mean``,
    ``diag/prediction_error`` (mean |mean of Q^ - mean of q(z_{t+1}|x_{t+1})|_2) and, for the
    Gaussian likelihood, ``diag/gaussian_std``."""
    small = low_rank_det_matrix(fp.lin.V, fp.lin.R)  # det A = det(I_k + R^T V)
    det_A = torch.linalg.det(small.to(torch.promote_types(small.dtype, torch.float32)))
    metrics = {
        "diag/det_A_mean": det_A.mean(),
        "diag/det_A_min": det_A.min(),
        "diag/det_A_max": det_A.max(),
        "diag/abs_vr_mean": (det_A - 1).abs().mean(),
        "diag/latent_std_mean": fp.q.std.mean(),
        "diag/prediction_error": (fp.mean_pred - fp.q_next.mean).norm(dim=-1).mean(),
    }
    if fp.model.config.likelihood == "gaussian":
        metrics["diag/gaussian_std"] = fp.model.decoder.log_std().exp()
    return metrics
