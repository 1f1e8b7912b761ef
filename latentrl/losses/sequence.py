"""The sequence ELBO of the filtering model (``model.kind = "filter"``).

Over a window of K transitions (observations x_0 .. x_K, actions u_0 .. u_{K-1}), with the
filtering posterior q_t = fuse(p(z_t | z_{t-1}, u_{t-1}), r(z_t | x_t)) of
:mod:`latentrl.models.filtering` (q_0 fuses the N(0, I) prior instead) and z_t ~ q_t drawn in
turn::

    log p(x_0..K | u) >= sum_t E[log p(x_t | z_t)] - KL(q_t || p(z_t | z_{t-1}, u_{t-1}))

The loss is the negative bound divided by K + 1: nats per image, comparable with E2C's
reconstruction plus its KL terms; an open-loop term (``loss.filter.open_loop_weight``) adds
the mean transition rolled from z_0 over the window against the filtered beliefs, as E2C's
multi-step term does against the encodings. The KL of each step is against the prior the transition
predicts from the previous step's draw, so one-frame errors of the encoder are corrected by
the history whenever the transition predicts better than the encoder measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from latentrl.field_rules import check_fields, checked
from latentrl.losses.forward import Continuation
from latentrl.losses.gaussian_kl import kl_diag_gaussians
from latentrl.losses.likelihoods import observation_nll
from latentrl.losses.multi_step import rollout_error
from latentrl.losses.rollout import roll_mean, scale_gradient
from latentrl.losses.term import weight_field
from latentrl.models import Gaussian, to_unit_interval
from latentrl.models.filtering import FilteringE2C, fuse, standard_normal_like

DEFAULT_WINDOW = 8
"""Transitions per training window of the filtering model (loss.filter.window)."""


@dataclass(frozen=True)
class FilterLossConfig:
    """``loss.filter``: read when ``model.kind = "filter"``."""

    window: int = checked(DEFAULT_WINDOW, int, low=1)
    """K: transitions per training window; the data needs chains at least this long."""
    kl_weight: float = weight_field(1.0)
    """Weight of the KL terms (1: the ELBO)."""
    open_loop_weight: float = weight_field(1.0)
    """Weight of the open-loop term: the mean transition rolled from z_0 through the window's
    actions, scored against the filtered beliefs (fixed targets) in units of
    sqrt(var_belief + var_process), so a belief sharper than the transition's own noise does
    not weigh the term up without bound (0: off). The ELBO alone trains the transition one
    step from each posterior draw; a planner rolls it open loop for a whole horizon."""
    encoder_gradient: float = checked(0.25, float, low=0, high=1)
    """Share of the open-loop term's gradient that reaches the encoder through z_0."""

    def __post_init__(self) -> None:
        check_fields(self, "loss.filter")


def window_of(x_t: Tensor, u_t: Tensor, x_next: Tensor, continuation: Continuation | None):
    """Observations ``(B, K + 1, k, H, W)`` and actions ``(B, K, m)`` of the rows' windows:
    the transition itself, then the continuation's steps (K = 1 without one)."""
    frames = [x_t.unsqueeze(1), x_next.unsqueeze(1)]
    actions = [u_t.unsqueeze(1)]
    if continuation is not None:
        frames.append(continuation.next_obs)
        actions.append(continuation.action)
    return torch.cat(frames, 1), torch.cat(actions, 1)


def filter_objective(
    model: FilteringE2C,
    x_t: Tensor,
    u_t: Tensor,
    x_next: Tensor,
    config: FilterLossConfig,
    continuation: Continuation | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The negative sequence ELBO (module docstring) averaged over rows, and metrics.

    Rows are windows starting at (x_t, u_t, x_next) and going on with ``continuation`` (rows
    it marks invalid do not count). Metric keys: ``loss/total``, ``loss/reconstruction``
    (mean -log p(x_t | z_t) per image), ``loss/kl`` (mean KL per step), ``loss/prediction``
    (-log p(x_1 | f(z_0, u_0)), the open-loop one-step prediction as E2C reports it),
    ``diag/process_std_mean``, ``diag/latent_std_mean`` and ``diag/prediction_error``.
    """
    dtype = next(model.parameters()).dtype
    frames, actions = window_of(x_t, u_t, x_next, continuation)
    actions = actions.to(dtype)
    rows, steps = frames.shape[:2]
    targets = to_unit_interval(frames.flatten(0, 1), dtype)
    factors = model.encode(targets)
    factor_mean = factors.mean.view(rows, steps, -1)
    factor_logvar = factors.logvar.view(rows, steps, -1)

    q = fuse(
        standard_normal_like(factor_mean[:, 0]), Gaussian(factor_mean[:, 0], factor_logvar[:, 0])
    )
    z = q.sample()
    kls = [kl_diag_gaussians(q.mean, q.logvar, torch.zeros_like(z), torch.zeros_like(z))]
    draws, posterior_mean, posterior_logvar = [z], [q.mean], [q.logvar]
    first_prediction = None
    for t in range(1, steps):
        prior = model.transition_density(z, actions[:, t - 1])
        if t == 1:
            first_prediction = prior.mean
        q = fuse(prior, Gaussian(factor_mean[:, t], factor_logvar[:, t]))
        z = q.sample()
        kls.append(kl_diag_gaussians(q.mean, q.logvar, prior.mean, prior.logvar))
        draws.append(z)
        posterior_mean.append(q.mean)
        posterior_logvar.append(q.logvar)
    decoded = model.decode(torch.cat([torch.stack(draws, 1).flatten(0, 1), first_prediction]))
    nll_all = observation_nll(model, decoded[: rows * steps], targets)
    nll = nll_all.view(rows, steps)
    kl = torch.stack(kls, 1)
    per_row = (nll + config.kl_weight * kl).mean(1)
    open_loop = None
    if config.open_loop_weight > 0 and steps > 1:
        start = scale_gradient(draws[0], config.encoder_gradient)
        rolled = roll_mean(model, start, actions)  # (rows, K, n): z^_1 .. z^_K
        targets_mean = torch.stack(posterior_mean[1:], 1).detach()
        # var_belief + var_process: the unit of the error (FilterLossConfig.open_loop_weight)
        targets_logvar = torch.logaddexp(
            torch.stack(posterior_logvar[1:], 1), model.process_noise.logvar()
        ).detach()
        open_loop = rollout_error(rolled, targets_mean, targets_logvar)
        per_row = per_row + config.open_loop_weight * open_loop
    valid = continuation.valid.to(dtype) if continuation is not None else torch.ones_like(per_row)
    count = valid.sum().clamp(min=1.0)
    total = (per_row * valid).sum() / count
    with torch.no_grad():
        prediction = observation_nll(
            model, decoded[rows * steps :], targets.view(rows, steps, *targets.shape[1:])[:, 1]
        )
        metrics = {
            "loss/total": total,
            "loss/reconstruction": (nll.mean(1) * valid).sum() / count,
            "loss/kl": (kl.mean(1) * valid).sum() / count,
            "loss/prediction": (prediction * valid).sum() / count,
            "diag/process_std_mean": model.process_noise.std_mean(),
            "diag/latent_std_mean": torch.stack(posterior_logvar, 1).mul(0.5).exp().mean(),
            "diag/prediction_error": (first_prediction - factor_mean[:, 1]).norm(dim=-1).mean(),
        }
        if open_loop is not None:
            metrics["loss/open_loop"] = (open_loop * valid).sum() / count
    return total, {k: v.detach() for k, v in metrics.items()}
