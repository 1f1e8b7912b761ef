"""The prior's KL: KL(q(z_t | x_t) || N(0, I))."""

from __future__ import annotations

from dataclasses import dataclass

from latentrl.field_rules import check_fields
from latentrl.losses.forward import ForwardPass
from latentrl.losses.gaussian_kl import kl_diag_gaussian_std_normal
from latentrl.losses.term import TermResult, term_result, weight_field


@dataclass(frozen=True)
class KLPriorConfig:
    """``loss.kl_prior``."""

    weight: float = weight_field(1.0)

    def __post_init__(self) -> None:
        check_fields(self, "loss.kl_prior")


def term(fp: ForwardPass, config: KLPriorConfig) -> TermResult:
    """``(B,)`` KL(q(z_t | x_t) || N(0, I)) and ``loss/kl_prior``."""
    kl = kl_diag_gaussian_std_normal(fp.q_t.mean, fp.q_t.logvar)
    return term_result("kl_prior", kl)
