"""The multi-step term (not in E2C): the rolled-on transition stays on the encoded trajectory.

Over windows of K chained transitions, z^_{t+k} = f(z^_{t+k-1}, u_{t+k-1}) rolls the mean
transition on from z^_{t+1} (:func:`latentrl.losses.rollout.with_rollout`) and is compared
with the encoding q(z_{t+k} | x_{t+k}) = N(mu, Sigma) of the true future, in units of its std:

    1/(K-1) sum_{k=2..K} 1/2 |z^_{t+k} - mu_{t+k}|^2_{Sigma_{t+k}^-1}

The encoding is a fixed target (no gradient), so the term trains the transition (and the
encoding of x_t) to stay on the encoded trajectory for K steps, which is what a planner relies
on; the one-step terms alone leave an open-loop drift that differs widely between seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from latentrl.field_rules import check_fields, checked
from latentrl.losses.forward import ForwardPass
from latentrl.losses.term import TermResult, term_result, weight_field
from latentrl.models import to_unit_interval


@dataclass(frozen=True)
class MultiStepConfig:
    """``loss.multi_step``: the term, and the windows both terms over several steps share
    (``loss.multi_step_prediction`` rolls through the same K steps)."""

    weight: float = weight_field(1.0)
    """Weight per window of K chained transitions (0: off)."""
    horizon: int = checked(1, int, low=1)
    """K: transitions the terms over several steps roll through (1: off, only E2C's terms).
    Needs chained data, data.chain_length >= K."""
    encoder_gradient: float = checked(1.0, float, low=0, high=1)
    """Share of the rollout's gradient that reaches the encoder (through z_t); 0: the terms
    over several steps train the transition (and decoder) only and leave the latent geometry
    to E2C's terms."""

    def __post_init__(self) -> None:
        check_fields(self, "loss.multi_step")


def rollout_error(predicted: Tensor, target_mean: Tensor, target_logvar: Tensor) -> Tensor:
    """Mean over k of 1/2 |predicted_k - target_mean_k|^2 / exp(target_logvar_k): ``(B, K, n)``
    -> ``(B,)``, a rollout's distance from its targets in units of their std."""
    error = 0.5 * ((predicted - target_mean).square() * torch.exp(-target_logvar)).sum(-1)
    return error.mean(-1)


def multi_step_error(
    predicted: Tensor,
    target_mean: Tensor,
    target_logvar: Tensor,
    valid: Tensor,
    batch_valid: Tensor | None = None,
) -> Tensor:
    """:func:`rollout_error`, zero where not ``valid`` and scaled by B / #valid, so that the
    batch mean is the mean over valid windows. ``batch_valid``: ``valid`` of the whole batch
    this one is a shard of (B and #valid are then the whole batch's)."""
    error = rollout_error(predicted, target_mean, target_logvar)
    whole = valid if batch_valid is None else batch_valid
    weight = valid.to(error.dtype) * (whole.numel() / whole.sum().clamp_min(1).to(error.dtype))
    return error * weight


def term(fp: ForwardPass, config: MultiStepConfig) -> TermResult:
    """``(B,)`` the multi-step error (module docstring) and ``loss/multi_step``; needs the
    forward pass with its rollout."""
    if fp.rollout is None or fp.continuation is None:
        raise ValueError("the multi-step term needs the forward pass with_rollout")
    future = fp.continuation.next_obs
    with torch.no_grad():
        q_future = fp.model.encode(to_unit_interval(future.flatten(0, 1), fp.dtype))
    error = multi_step_error(
        fp.rollout,
        q_future.mean.unflatten(0, future.shape[:2]),
        q_future.logvar.unflatten(0, future.shape[:2]),
        fp.continuation.valid,
        fp.continuation.batch_valid,
    )
    return term_result("multi_step", error)
