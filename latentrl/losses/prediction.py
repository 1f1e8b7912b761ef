"""Prediction: -log p(x_{t+1} | z^_{t+1}), z^_{t+1} ~ Q^(. | z_t, u_t), in nats per image."""

from __future__ import annotations

from dataclasses import dataclass

from latentrl.field_rules import check_fields
from latentrl.losses.forward import ForwardPass
from latentrl.losses.likelihoods import observation_nll
from latentrl.losses.term import TermResult, term_result, weight_field


@dataclass(frozen=True)
class PredictionConfig:
    """``loss.prediction``."""

    weight: float = weight_field(1.0)

    def __post_init__(self) -> None:
        check_fields(self, "loss.prediction")


def term(fp: ForwardPass, config: PredictionConfig) -> TermResult:
    """``(B,)`` -log p(x_{t+1} | z^_{t+1}) and ``loss/prediction``."""
    nll = observation_nll(fp.model, fp.decoded[fp.batch :], fp.target_next)
    return term_result("prediction", nll)
