"""The PC3 objective (``model.kind = "pc3"``; Shu et al., ICML 2020).

Over a batch of K transitions (x_i, u_i, x'_i), with the deterministic encoder z_i = E(x_i), the
encoded next observation with the latent noise of fixed variance,
z'_i = E(x'_i) + sigma eps_i (eps_i ~ N(0, I)), and the latent dynamics
F(z' | z, u) = N(f(z, u), diag s^2) of :mod:`latentrl.models.pc3`:

predictive coding, the CPC (InfoNCE) lower bound on I(z_{t+1}; z_t, u_t) with F's density as
the critic and the batch's other rows as negatives, negated::

    L_cpc = -1/K sum_i log [ F(z'_i | z_i, u_i) / (1/K sum_j F(z'_i | z_j, u_j)) ]  >= -log K

consistency, -log F of the encoded next latent (with a deterministic encoder, PC3's
consistency term is this log-likelihood)::

    L_cons = -1/K sum_i log F(z'_i | z_i, u_i)

curvature, PCC's form (:func:`latentrl.losses.curvature.linearization_error`) at (z_i, u_i)
with (d, e) ~ N(0, delta^2 I)::

    L_cur = 1/K sum_i |f(z_i + d, u_i + e) - f(z_i, u_i) - J_z d - J_u e|^2

    L = lambda_cpc L_cpc + lambda_c L_cons + lambda_cur L_cur + w_center |1/K sum_i z_i|^2
        [+ lambda_multi L_multi]

The noise sigma keeps the latent from contracting until F's density is arbitrarily sharp (the
consistency term alone would reward that); the centering term (the authors' code) keeps the
latent map around 0. The defaults are the authors' public code's: lambda = 1, 1, 7;
delta = 0.1; sigma = 0.1; w_center = 0.1.

Not in PC3: with ``window`` W > 1 (rows that start W chained transitions), the multi-step
consistency rolls F's mean on from f(z_t, u_t) through the window's actions,
z^_{t+k} = f(z^_{t+k-1}, u_{t+k-1}), and scores it against the encoded future in units of F's
noise s (held fixed, as are the encodings E(x_{t+k}), targets without gradient)::

    L_multi = 1/(W-1) sum_{k=2..W} 1/2 |z^_{t+k} - E(x_{t+k})|^2_{diag s^-2}

the form of E2C's multi-step term (:mod:`latentrl.losses.multi_step`). One transition at a
high control rate moves the latent little, so the one-step terms can leave the push of an
action unlearnt that the steps after it show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from latentrl.field_rules import check_fields, checked
from latentrl.losses.batch_shards import block_start, whole_batch
from latentrl.losses.curvature import linearization_error
from latentrl.losses.forward import Continuation
from latentrl.losses.gaussian_density import pairwise_gaussian_log_density
from latentrl.losses.multi_step import multi_step_error
from latentrl.losses.rollout import roll_mean
from latentrl.losses.term import weight_field
from latentrl.models import to_unit_interval
from latentrl.models.pc3 import PC3


@dataclass(frozen=True)
class PC3LossConfig:
    """``loss.pc3``: read when ``model.kind = "pc3"``."""

    lambda_cpc: float = weight_field(1.0)
    """Weight of the predictive-coding (InfoNCE) term L_cpc."""
    lambda_c: float = weight_field(1.0)
    """Weight of the consistency L_cons."""
    lambda_cur: float = weight_field(7.0)
    """Weight of the curvature L_cur."""
    curvature_radius: float = checked(0.1, float, above=0)
    """delta: std, in latent units, of the curvature's steps in z and u."""
    latent_noise: float = checked(0.1, float, low=0)
    """sigma: std of the fixed Gaussian noise added to the encoded next latent."""
    center_weight: float = weight_field(0.1)
    """Weight of |batch mean of z|^2 (the authors' code; 0: off)."""
    window: int = checked(1, int, low=1)
    """W: transitions the multi-step consistency L_multi rolls through (not in PC3; 1: off,
    the paper's objective). Needs chained data, data.chain_length >= W."""
    lambda_multi: float = weight_field(1.0)
    """Weight of L_multi per window, read when ``window`` > 1."""

    def __post_init__(self) -> None:
        check_fields(self, "loss.pc3")


def info_nce(scores: Tensor, offset: int = 0) -> Tensor:
    """-log [exp(s_ii) / (1/K sum_j exp(s_ij))] per row of ``scores (R, K)`` -> ``(R,)``:
    row i's positive is its entry ``i + offset`` (``R = K``, ``offset = 0``: the diagonal),
    the rest of the row its negatives. Each value is >= -log K; its negated batch mean is the
    InfoNCE lower bound on the mutual information."""
    count = scores.shape[-1]
    return torch.logsumexp(scores, dim=-1) - math.log(count) - scores.diagonal(offset)


def pc3_objective(
    model: PC3,
    x_t: Tensor,
    u_t: Tensor,
    x_next: Tensor,
    config: PC3LossConfig,
    continuation: Continuation | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The weighted PC3 loss (module docstring) over the batch, and detached metrics.

    x_t, x_next: images ``(K, k, H, W)``, uint8 or float in [0, 1]; u_t: ``(K, m)``;
    ``continuation``: the steps after each row, read by the multi-step consistency when
    ``config.window`` > 1 (None: the term is left out, as validation does). The InfoNCE term
    depends on the batch (its negatives), so its value depends on K. Metric keys:
    ``loss/total``, ``loss/cpc``, ``loss/consistency``, ``loss/curvature``, ``loss/center``,
    ``loss/multi_step`` (with a window and a continuation), ``diag/mutual_information``
    (-L_cpc, the InfoNCE bound itself, <= log K), ``diag/process_std_mean``,
    ``diag/latent_norm`` (mean |z|) and ``diag/prediction_error`` (|f(z, u) - E(x')|).
    """
    dtype = next(model.parameters()).dtype
    u = u_t.to(dtype)
    z, encoded_next = model.encode(torch.cat([x_t, x_next])).mean.split(len(x_t))
    z_next = encoded_next + config.latent_noise * torch.randn_like(encoded_next)
    dynamics = model.transition_density(z, u)
    # every row's next latent against the dynamics of every row of the whole batch (K, K); on
    # several processes this process's rows (K / processes, K), its positives offset
    means, logvars = whole_batch(dynamics.mean), whole_batch(dynamics.logvar)
    scores = pairwise_gaussian_log_density(z_next, means, logvars)
    offset = block_start(len(z))
    cpc = info_nce(scores, offset)
    consistency = -scores.diagonal(offset)
    curvature = linearization_error(model, z, u, config.curvature_radius)
    center = whole_batch(z).mean(0).square().sum()
    total = (
        config.lambda_cpc * cpc.mean()
        + config.lambda_c * consistency.mean()
        + config.lambda_cur * curvature.mean()
        + config.center_weight * center
    )
    multi: dict[str, Tensor] = {}
    if config.window > 1 and continuation is not None:
        error = multi_step_consistency(model, dynamics.mean, continuation)
        total = total + config.lambda_multi * error.mean()
        multi["loss/multi_step"] = error.mean()
    with torch.no_grad():
        metrics = {
            **multi,
            "loss/total": total,
            "loss/cpc": cpc.mean(),
            "loss/consistency": consistency.mean(),
            "loss/curvature": curvature.mean(),
            "loss/center": center,
            "diag/mutual_information": -cpc.mean(),
            "diag/process_std_mean": model.process_noise.std_mean(),
            "diag/latent_norm": z.norm(dim=-1).mean(),
            "diag/prediction_error": (dynamics.mean - encoded_next).norm(dim=-1).mean(),
        }
    return total, {k: v.detach() for k, v in metrics.items()}


def multi_step_consistency(model: PC3, first: Tensor, continuation: Continuation) -> Tensor:
    """L_multi per row ``(B,)`` (module docstring), zero on rows that start no whole window
    and scaled so that the batch mean is the mean over the windows: F's mean rolled on from
    ``first`` = f(z_t, u_t) ``(B, n)`` through ``continuation``'s actions, against the
    encodings of its observations."""
    future = continuation.next_obs
    rolled = roll_mean(model, first, continuation.action.to(first.dtype))
    with torch.no_grad():
        target = model.encode(to_unit_interval(future.flatten(0, 1), first.dtype)).mean
        logvar = model.process_noise.logvar().expand_as(rolled)
    return multi_step_error(
        rolled,
        target.unflatten(0, future.shape[:2]),
        logvar,
        continuation.valid,
        continuation.batch_valid,
    )
