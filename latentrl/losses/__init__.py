"""E2C's training objective as loss terms, and the closed-form pieces they are built from.

- pure math: :mod:`~latentrl.losses.likelihoods` (Bernoulli and Gaussian image NLLs),
  :mod:`~latentrl.losses.gaussian_kl` (the KLs to the prior and of the transition);
- the shared forward pass: :mod:`~latentrl.losses.forward`, :mod:`~latentrl.losses.rollout`;
- one module per term, each with its config section and ``term(fp, section)``:
  :mod:`~latentrl.losses.reconstruction`, :mod:`~latentrl.losses.prediction`,
  :mod:`~latentrl.losses.kl_prior`, :mod:`~latentrl.losses.kl_transition`,
  :mod:`~latentrl.losses.multi_step`, :mod:`~latentrl.losses.multi_step_prediction`,
  :mod:`~latentrl.losses.curvature`;
- :mod:`~latentrl.losses.objective`: :class:`LossConfig` (the ``loss`` section) and
  :func:`objective`, which composes the terms;
- the other model kinds' objectives: :mod:`~latentrl.losses.sequence` (the filtering
  model's sequence ELBO), :mod:`~latentrl.losses.pcc` (PCC's prediction, consistency and
  curvature) and :mod:`~latentrl.losses.pc3` (PC3's predictive coding, consistency and
  curvature), with :mod:`~latentrl.losses.gaussian_density` (log-densities, entropies);
- :mod:`~latentrl.losses.goal_cost`: the term, added to any kind's objective, that fits the
  latent distance to the goal to the task's cost;
- :mod:`~latentrl.losses.legacy`: :func:`upgrade_legacy_loss` for older ``config.json``.
"""

from latentrl.losses.curvature import (
    CURVATURE_RADIUS,
    CurvatureConfig,
    curvature_penalty,
    linearization_error,
)
from latentrl.losses.forward import Continuation, ForwardPass, diagnostics, forward_pass
from latentrl.losses.gaussian_kl import (
    kl_diag_gaussian_std_normal,
    kl_diag_gaussians,
    kl_linear_transition,
    log_abs_det_low_rank,
)
from latentrl.losses.goal_cost import GoalCostConfig, GoalCostTarget, goal_cost_values
from latentrl.losses.kl_prior import KLPriorConfig
from latentrl.losses.kl_transition import KLTransitionConfig
from latentrl.losses.legacy import legacy_key_hint, upgrade_legacy_loss
from latentrl.losses.likelihoods import bernoulli_nll, gaussian_nll, observation_nll
from latentrl.losses.multi_step import MultiStepConfig, multi_step_error
from latentrl.losses.multi_step_prediction import (
    MultiStepPredictionConfig,
    random_step_prediction_nll,
)
from latentrl.losses.objective import TERMS, LossConfig, TermSpec, active_terms, objective
from latentrl.losses.pc3 import PC3LossConfig, info_nce, pc3_objective
from latentrl.losses.pcc import PCCLossConfig, pcc_objective
from latentrl.losses.prediction import PredictionConfig
from latentrl.losses.reconstruction import ReconstructionConfig
from latentrl.losses.rollout import roll_mean, scale_gradient, with_rollout
from latentrl.losses.sequence import FilterLossConfig, filter_objective

__all__ = [
    "CURVATURE_RADIUS",
    "TERMS",
    "Continuation",
    "CurvatureConfig",
    "FilterLossConfig",
    "ForwardPass",
    "GoalCostConfig",
    "GoalCostTarget",
    "KLPriorConfig",
    "KLTransitionConfig",
    "LossConfig",
    "MultiStepConfig",
    "MultiStepPredictionConfig",
    "PC3LossConfig",
    "PCCLossConfig",
    "PredictionConfig",
    "ReconstructionConfig",
    "TermSpec",
    "active_terms",
    "bernoulli_nll",
    "curvature_penalty",
    "diagnostics",
    "filter_objective",
    "forward_pass",
    "gaussian_nll",
    "goal_cost_values",
    "info_nce",
    "kl_diag_gaussian_std_normal",
    "kl_diag_gaussians",
    "kl_linear_transition",
    "legacy_key_hint",
    "linearization_error",
    "log_abs_det_low_rank",
    "multi_step_error",
    "objective",
    "observation_nll",
    "pc3_objective",
    "pcc_objective",
    "random_step_prediction_nll",
    "roll_mean",
    "scale_gradient",
    "upgrade_legacy_loss",
    "with_rollout",
]
