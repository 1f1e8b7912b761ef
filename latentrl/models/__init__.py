"""E2C model parts: Gaussian encoder, observation decoder, locally linear transition."""

from latentrl.models.decoder import MIN_GAUSSIAN_STD, Decoder
from latentrl.models.e2c import E2C, JacobianKind, ModelConfig, ModelConfigError
from latentrl.models.encoder import Encoder, Gaussian, to_unit_interval
from latentrl.models.transition import (
    LocalLinear,
    Transition,
    apply_local_linear,
    bound_norm,
    low_rank_det_matrix,
    low_rank_update,
    transition_covariance,
)

__all__ = [
    "E2C",
    "MIN_GAUSSIAN_STD",
    "Decoder",
    "Encoder",
    "Gaussian",
    "JacobianKind",
    "LocalLinear",
    "ModelConfig",
    "ModelConfigError",
    "Transition",
    "apply_local_linear",
    "bound_norm",
    "low_rank_det_matrix",
    "low_rank_update",
    "to_unit_interval",
    "transition_covariance",
]
