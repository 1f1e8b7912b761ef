"""The PCC objective (``model.kind = "pcc"``; Levine et al., ICLR 2020).

Per transition (x_t, u_t, x_{t+1}), with the model of :mod:`latentrl.models.pcc` (encoder E,
dynamics F = N(f, diag s^2), decoder D, backward encoder Q), the draws
z'' ~ Q(z_{t+1} | x_{t+1}) = E(. | x_{t+1}) and z' ~ Q(z_t | z'', x_t, u_t), and everything in
nats:

prediction, PCC's amortised variational bound on -log p^(x_{t+1} | x_t, u_t), where
p^(x' | x, u) = int D(x' | z'') F(z'' | z', u) E(z' | x) dz' dz''::

    L_p = -log D(x_{t+1} | z'') + KL(Q(z_t | z'', x_t, u_t) || E(z_t | x_t))
          - H(E(. | x_{t+1})) - log F(z'' | z', u_t)

consistency, PCC's bound on KL(E(z_{t+1} | x_{t+1}) || (F o E)(z_{t+1} | x_t, u_t)), the same
without the decoder's term::

    L_c = KL(Q(z_t | z'', x_t, u_t) || E(z_t | x_t)) - H(E(. | x_{t+1})) - log F(z'' | z', u_t)

curvature, PCC's own form (:func:`latentrl.losses.curvature.linearization_error`, not the
Jacobian-free :func:`~latentrl.losses.curvature.curvature_penalty` of E2C's optional term),
at a draw z_t ~ E(. | x_t) with (d, e) ~ N(0, delta^2 I)::

    L_cur = |f(z_t + d, u_t + e) - f(z_t, u_t) - J_z d - J_u e|^2

    L = lambda_p L_p + lambda_c L_c + lambda_cur L_cur + w_det L_det + w_vae L_vae

The last two are the authors' code's additional terms (not part of the paper's three):
L_det = -log D(x_{t+1} | f(m(x_t), u_t)), the mean path the planner uses; and
L_vae = -log D(x_t | z_t) + KL(E(z_t | x_t) || N(0, I)), a VAE bound on x_t that pins the
latent's scale (the authors' code decodes a dynamics draw there; here it is x_t's own draw).
The weights default to the authors' public code (lambda = 1, 8, 8; delta = 0.1; 0.3; 0.01).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from latentrl.field_rules import check_fields, checked
from latentrl.losses.curvature import linearization_error
from latentrl.losses.forward import Continuation
from latentrl.losses.gaussian_density import gaussian_entropy, gaussian_log_density
from latentrl.losses.gaussian_kl import kl_diag_gaussian_std_normal, kl_diag_gaussians
from latentrl.losses.likelihoods import observation_nll
from latentrl.losses.term import weight_field
from latentrl.models import to_unit_interval
from latentrl.models.pcc import PCC


@dataclass(frozen=True)
class PCCLossConfig:
    """``loss.pcc``: read when ``model.kind = "pcc"``."""

    lambda_p: float = weight_field(1.0)
    """Weight of the prediction bound L_p."""
    lambda_c: float = weight_field(8.0)
    """Weight of the consistency bound L_c."""
    lambda_cur: float = weight_field(8.0)
    """Weight of the curvature L_cur."""
    curvature_radius: float = checked(0.1, float, above=0)
    """delta: std, in latent units, of the curvature's steps in z and u."""
    deterministic_weight: float = weight_field(0.3)
    """Weight of -log D(x_{t+1} | f(m(x_t), u_t)) (the authors' code; 0: off)."""
    vae_weight: float = weight_field(0.01)
    """Weight of the VAE bound on x_t (the authors' code; 0: off)."""

    def __post_init__(self) -> None:
        check_fields(self, "loss.pcc")


def pcc_objective(
    model: PCC,
    x_t: Tensor,
    u_t: Tensor,
    x_next: Tensor,
    config: PCCLossConfig,
    continuation: Continuation | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The weighted PCC loss (module docstring) averaged over the batch, and detached metrics.

    x_t, x_next: images ``(B, k, H, W)``, uint8 or float in [0, 1]; u_t: ``(B, m)``;
    ``continuation`` is not used (PCC trains on single transitions). Metric keys:
    ``loss/total``, ``loss/prediction`` (L_p, the bound on -log p^(x_{t+1} | x_t, u_t)),
    ``loss/consistency``, ``loss/curvature``, ``loss/deterministic``,
    ``loss/reconstruction`` (-log D(x_t | z_t)), ``loss/kl_prior``, ``diag/process_std_mean``,
    ``diag/latent_std_mean`` (E's std) and ``diag/prediction_error``
    (|f(m(x_t), u_t) - m(x_{t+1})|).
    """
    dtype = next(model.parameters()).dtype
    rows = len(x_t)
    u = u_t.to(dtype)
    targets = to_unit_interval(torch.cat([x_t, x_next]), dtype)
    q = model.encode(targets)
    mean_t, mean_next = q.mean.split(rows)
    logvar_t, logvar_next = q.logvar.split(rows)
    std_t, std_next = q.std.split(rows)

    z_next = mean_next + std_next * torch.randn_like(mean_next)  # z'' ~ E(. | x_{t+1})
    backward = model.backward(z_next, targets[:rows], u)
    z_back = backward.sample()  # z' ~ Q(z_t | z'', x_t, u_t)
    dynamics = model.transition_density(z_back, u)
    log_f = gaussian_log_density(z_next, dynamics.mean, dynamics.logvar)
    kl_back = kl_diag_gaussians(backward.mean, backward.logvar, mean_t, logvar_t)
    consistency = kl_back - gaussian_entropy(logvar_next) - log_f

    z_t = mean_t + std_t * torch.randn_like(mean_t)  # z_t ~ E(. | x_t)
    mean_path = model.step(mean_t, u)
    decoded = model.decode(torch.cat([z_next, mean_path, z_t]))
    decoded_next, decoded_mean_path, decoded_t = decoded.split(rows)
    nll_next = observation_nll(model, decoded_next, targets[rows:])
    prediction = nll_next + consistency
    deterministic = observation_nll(model, decoded_mean_path, targets[rows:])
    reconstruction = observation_nll(model, decoded_t, targets[:rows])
    kl_prior = kl_diag_gaussian_std_normal(mean_t, logvar_t)
    curvature = linearization_error(model, z_t, u, config.curvature_radius)

    per_row = (
        config.lambda_p * prediction
        + config.lambda_c * consistency
        + config.lambda_cur * curvature
        + config.deterministic_weight * deterministic
        + config.vae_weight * (reconstruction + kl_prior)
    )
    total = per_row.mean()
    with torch.no_grad():
        metrics = {
            "loss/total": total,
            "loss/prediction": prediction.mean(),
            "loss/consistency": consistency.mean(),
            "loss/curvature": curvature.mean(),
            "loss/deterministic": deterministic.mean(),
            "loss/reconstruction": reconstruction.mean(),
            "loss/kl_prior": kl_prior.mean(),
            "diag/process_std_mean": model.process_noise.std_mean(),
            "diag/latent_std_mean": q.std.mean(),
            "diag/prediction_error": (mean_path - mean_next).norm(dim=-1).mean(),
        }
    return total, {k: v.detach() for k, v in metrics.items()}
