"""The prior's KL: KL(q(z_t | x_t) || N(0, I))."""

from __future__ import annotations

from dataclasses import dataclass

from latentrl.losses.forward import ForwardPass
from latentrl.losses.gaussian_kl import kl_diag_gaussian_std_normal
from latentrl.losses.term import TermResult, check_weight, term_result


@dataclass(frozen=True)
class KLPriorConfig:
    """``loss.kl_prior``."""

    weight: float = 1.0

    def __post_init__(self) -> None:
        check_weight("kl_prior", self.weight)


def term(fp: ForwardPass, config: KLPriorConfig) -> TermResult:
    """``(B,)`` KL(q(z_t | x_t) || N(0, I)) and ``loss/kl_prior``."""
    kl = kl_diag_gaussian_std_normal(fp.q_t.mean, fp.q_t.logvar)
    return term_result("kl_prior", kl)
