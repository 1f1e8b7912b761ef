"""The transition's KL: KL(Q^ || q(z_{t+1} | x_{t+1})), E2C's lambda-weighted term.

Q^ = N(A mu_t + B u_t + o, A diag(sigma_t^2) A^T [+ s^2 I]), (A, B, o) the transition's
linearisation at the sampled z_t and s the model's transition noise.
"""

from __future__ import annotations

from dataclasses import dataclass

from latentrl.field_rules import check_fields
from latentrl.losses.forward import ForwardPass
from latentrl.losses.gaussian_kl import kl_linear_transition
from latentrl.losses.term import TermResult, term_result, weight_field


@dataclass(frozen=True)
class KLTransitionConfig:
    """``loss.kl_transition``."""

    weight: float = weight_field(1.0)
    """E2C's lambda; the default is 1.0, where E2C used 0.25."""

    def __post_init__(self) -> None:
        check_fields(self, "loss.kl_transition")


def term(fp: ForwardPass, config: KLTransitionConfig) -> TermResult:
    """``(B,)`` KL(Q^ || q(z_{t+1} | x_{t+1})) and ``loss/kl_transition``."""
    lin, q_next = fp.lin, fp.q_next
    kl = kl_linear_transition(
        fp.mean_pred,
        fp.q_t.logvar,
        lin.V,
        lin.R,
        q_next.mean,
        q_next.logvar,
        fp.model.config.transition_noise,
    )
    return term_result("kl_transition", kl)
