"""The E2C objective, composed of the configured terms.

Per transition (x_t, u_t, x_{t+1}), averaged over the batch, in nats per image:

    L = w_rec * -log p(x_t | z_t)                      z_t ~ q(z_t | x_t)
      + w_pred * -log p(x_{t+1} | z^_{t+1})            z^_{t+1} ~ Q^(. | z_t, u_t)
      + w_prior * KL(q(z_t | x_t) || N(0, I))
      + w_trans * KL(Q^ || q(z_{t+1} | x_{t+1}))       (E2C's lambda)
      + w_multi * multi-step latent error over K steps                    (optional)
      + w_multi_pred * -log p(x_{t+k} | z^_{t+k}), k ~ U{2..K}            (optional)
      + w_curv * curvature of the mean transition around z_t              (optional)

Each term is a module of this package holding its config section and its function of the
shared forward pass (:mod:`latentrl.losses.forward`). E2C's four terms are always computed
(their means are reported even at weight 0); an optional term only when its weight is not 0,
the two over several steps only with a :class:`Continuation` as well.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

from latentrl.losses import (
    curvature,
    kl_prior,
    kl_transition,
    multi_step,
    multi_step_prediction,
    prediction,
    reconstruction,
)
from latentrl.losses.curvature import CurvatureConfig
from latentrl.losses.forward import Continuation, diagnostics, forward_pass
from latentrl.losses.goal_cost import GoalCostConfig
from latentrl.losses.kl_prior import KLPriorConfig
from latentrl.losses.kl_transition import KLTransitionConfig
from latentrl.losses.multi_step import MultiStepConfig
from latentrl.losses.multi_step_prediction import MultiStepPredictionConfig
from latentrl.losses.pc3 import PC3LossConfig
from latentrl.losses.pcc import PCCLossConfig
from latentrl.losses.prediction import PredictionConfig
from latentrl.losses.reconstruction import ReconstructionConfig
from latentrl.losses.rollout import with_rollout
from latentrl.losses.sequence import FilterLossConfig
from latentrl.losses.term import TermResult
from latentrl.models import E2C


@dataclass(frozen=True)
class LossConfig:
    """The ``loss`` section: one section per term of E2C's objective, in the order it adds
    them (the names match the metric keys ``loss/<name>``), then one section per other model
    kind's objective (:mod:`latentrl.kinds` says which kind reads which sections), then the
    goal-cost term every kind reads (:mod:`latentrl.losses.goal_cost`)."""

    reconstruction: ReconstructionConfig = field(default_factory=ReconstructionConfig)
    prediction: PredictionConfig = field(default_factory=PredictionConfig)
    kl_prior: KLPriorConfig = field(default_factory=KLPriorConfig)
    kl_transition: KLTransitionConfig = field(default_factory=KLTransitionConfig)
    multi_step: MultiStepConfig = field(default_factory=MultiStepConfig)
    multi_step_prediction: MultiStepPredictionConfig = field(
        default_factory=MultiStepPredictionConfig
    )
    curvature: CurvatureConfig = field(default_factory=CurvatureConfig)
    filter: FilterLossConfig = field(default_factory=FilterLossConfig)
    pcc: PCCLossConfig = field(default_factory=PCCLossConfig)
    pc3: PC3LossConfig = field(default_factory=PC3LossConfig)
    goal_cost: GoalCostConfig = field(default_factory=GoalCostConfig)


class TermSpec(NamedTuple):
    """How the objective treats one term."""

    name: str
    """The field of :class:`LossConfig` and the metric ``loss/<name>``."""
    compute: Callable[[Any, Any], TermResult]
    """``term(fp, section) -> (values (B,), metrics)``."""
    optional: bool
    """Computed only when its weight is not 0 (E2C's terms: always)."""
    over_windows: bool
    """Needs the rollout over a window, so a :class:`Continuation`."""


TERMS = (
    TermSpec("reconstruction", reconstruction.term, optional=False, over_windows=False),
    TermSpec("prediction", prediction.term, optional=False, over_windows=False),
    TermSpec("kl_prior", kl_prior.term, optional=False, over_windows=False),
    TermSpec("kl_transition", kl_transition.term, optional=False, over_windows=False),
    TermSpec("multi_step", multi_step.term, optional=True, over_windows=True),
    TermSpec("multi_step_prediction", multi_step_prediction.term, optional=True, over_windows=True),
    TermSpec("curvature", curvature.term, optional=True, over_windows=False),
)
"""Every term, in the order the objective adds them (which fixes the order of random draws)."""


def active_terms(config: LossConfig, windows: bool) -> tuple[TermSpec, ...]:
    """The terms the objective computes under ``config``, with or without ``windows``."""
    return tuple(
        spec
        for spec in TERMS
        if not (spec.optional and getattr(config, spec.name).weight == 0)
        and (windows or not spec.over_windows)
    )


def objective(
    model: E2C,
    x_t: Tensor,
    u_t: Tensor,
    x_next: Tensor,
    config: LossConfig | None = None,
    continuation: Continuation | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The weighted sum of the active terms (module docstring), its batch mean, and detached
    scalar metrics.

    x_t, x_next: images ``(B, k, H, W)``, uint8 or float in [0, 1]; u_t: ``(B, m)``;
    ``continuation``: the steps after each row, for the terms over several steps.
    Metric keys: ``loss/total``, ``loss/<term>`` (unweighted batch means of each computed
    term) and the forward pass's ``diag/*`` (:func:`latentrl.losses.forward.diagnostics`).
    """
    config = LossConfig() if config is None else config
    terms = active_terms(config, windows=continuation is not None)
    fp = forward_pass(model, x_t, u_t, x_next)
    if continuation is not None and any(spec.over_windows for spec in terms):
        fp = with_rollout(fp, continuation, config.multi_step.encoder_gradient)
    weighted, term_metrics = [], {}
    for spec in terms:
        section = getattr(config, spec.name)
        values, metrics = spec.compute(fp, section)
        weighted.append(section.weight * values)
        term_metrics |= metrics
    total = torch.stack(weighted).sum(0).mean()
    metrics = {"loss/total": total.detach(), **term_metrics, **diagnostics(fp)}
    return total, {k: v.detach() for k, v in metrics.items()}
