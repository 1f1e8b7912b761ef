"""Reconstruction: -log p(x_t | z_t), z_t ~ q(z_t | x_t), in nats per image."""

from __future__ import annotations

from dataclasses import dataclass

from latentrl.field_rules import check_fields
from latentrl.losses.forward import ForwardPass
from latentrl.losses.likelihoods import observation_nll
from latentrl.losses.term import TermResult, term_result, weight_field


@dataclass(frozen=True)
class ReconstructionConfig:
    """``loss.reconstruction``."""

    weight: float = weight_field(1.0)

    def __post_init__(self) -> None:
        check_fields(self, "loss.reconstruction")


def term(fp: ForwardPass, config: ReconstructionConfig) -> TermResult:
    """``(B,)`` -log p(x_t | z_t) and ``loss/reconstruction``."""
    nll = observation_nll(fp.model, fp.decoded[: fp.batch], fp.target_t)
    return term_result("reconstruction", nll)
