"""The multi-step prediction term: E2C's prediction term k steps ahead, in pixels.

It decodes the rollout z^_{t+k} of the multi-step term (:mod:`latentrl.losses.multi_step`,
the same K = ``loss.multi_step.horizon``) at one uniformly random k in 2..K per window and
scores the true image: -log p(x_{t+k} | z^_{t+k}). One random k (an unbiased estimate of the
mean over k) costs one decoder pass per row instead of K - 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from latentrl.field_rules import check_fields
from latentrl.losses.forward import ForwardPass
from latentrl.losses.likelihoods import observation_nll
from latentrl.losses.term import TermResult, term_result, weight_field
from latentrl.models import E2C, to_unit_interval


@dataclass(frozen=True)
class MultiStepPredictionConfig:
    """``loss.multi_step_prediction``; computed only with loss.multi_step.horizon > 1."""

    weight: float = weight_field(0.0)
    """Weight per window (0: off)."""

    def __post_init__(self) -> None:
        check_fields(self, "loss.multi_step_prediction")


def random_step_prediction_nll(
    model: E2C, predicted: Tensor, future: Tensor, valid: Tensor, dtype: torch.dtype
) -> Tensor:
    """-log p(x_{t+k} | z^_{t+k}) at one uniformly random k per row: ``predicted (B, K, n)``,
    ``future (B, K, ...)`` images -> ``(B,)``, zero where not ``valid`` and scaled by
    B / #valid like :func:`latentrl.losses.multi_step.multi_step_error`."""
    rows = torch.arange(predicted.shape[0], device=predicted.device)
    k = torch.randint(predicted.shape[1], (predicted.shape[0],), device=predicted.device)
    target = to_unit_interval(future[rows, k], dtype)
    nll = observation_nll(model, model.decode(predicted[rows, k]), target)
    return nll * valid.to(nll.dtype) * (valid.numel() / valid.sum().clamp_min(1).to(nll.dtype))


def term(fp: ForwardPass, config: MultiStepPredictionConfig) -> TermResult:
    """``(B,)`` -log p(x_{t+k} | z^_{t+k}) at a random k and ``loss/multi_step_prediction``;
    needs the forward pass with its rollout."""
    if fp.rollout is None or fp.continuation is None:
        raise ValueError("the multi-step prediction term needs the forward pass with_rollout")
    continuation = fp.continuation
    nll = random_step_prediction_nll(
        fp.model, fp.rollout, continuation.next_obs, continuation.valid, fp.dtype
    )
    return term_result("multi_step_prediction", nll)
