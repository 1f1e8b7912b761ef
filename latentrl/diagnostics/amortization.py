"""The amortization gap: per-image variational parameters against the encoder's.

Without amortization each image x_i has its own q_i(z) = N(mu_i, diag sigma_i^2), fitted by
gradient ascent on its ELBO: |theta| + 2 |z| N parameters for N images, against
|theta| + |phi| with an encoder q_phi(z | x). Started from the encoder's (mu, sigma) and run
to convergence, the fitted ELBO* splits the gap of :mod:`latentrl.diagnostics.elbo_gap`::

    log p(x) - ELBO_amortized = (log p(x) - ELBO*)        approximation: the Gaussian family
                              + (ELBO* - ELBO_amortized)  amortization: one network for all x
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from latentrl.diagnostics.latent_model import LogLikelihood, reparameterize
from latentrl.losses.gaussian_kl import kl_diag_gaussian_std_normal
from latentrl.models import Gaussian


def monte_carlo_elbo(log_likelihood: LogLikelihood, q: Gaussian, eps: Tensor) -> Tensor:
    """E_q[log p(x|z)] over the draws ``eps (S, B, n)`` minus KL(q || N(0, I)) in closed
    form: ``(B,)``, differentiable in q's fields (the reparameterization trick)."""
    expected = log_likelihood(reparameterize(q, eps)).mean(0)
    return expected - kl_diag_gaussian_std_normal(q.mean, q.logvar)


@dataclass(frozen=True)
class FittedPosterior:
    """The per-image q_i after gradient ascent, and its ELBO along the way."""

    q: Gaussian
    """The fitted ``(B, n)`` means and log-variances."""
    steps: tuple[int, ...]
    """The steps at which ``history`` was recorded (0: the starting point)."""
    history: Tensor
    """``(len(steps), B)`` ELBO with fixed draws (the same at every step), nats."""


def fit_per_image(
    log_likelihood: LogLikelihood,
    start: Gaussian,
    steps: int,
    samples: int,
    learning_rate: float,
    record_every: int = 10,
    record_samples: int = 32,
    generator: torch.Generator | None = None,
    on_step: Callable[[], None] | None = None,
) -> FittedPosterior:
    """Adam on the sum over images of each image's ELBO (``samples`` fresh draws per step,
    the step size decaying linearly from ``learning_rate`` to a tenth of it), over free
    (mu_i, log sigma_i^2) ``(B, n)`` from ``start``. Images do not interact: Adam scales each
    coordinate on its own, so this is B separate ascents run side by side.
    ``history`` is recorded every ``record_every`` steps with ``record_samples`` fixed draws;
    ``on_step()`` is called after each step (a progress bar)."""
    mean = start.mean.detach().clone().requires_grad_(True)
    logvar = start.logvar.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([mean, logvar], lr=learning_rate)

    def draws(count: int) -> Tensor:
        shape = (count, *mean.shape)
        return torch.randn(shape, generator=generator, dtype=mean.dtype, device=mean.device)

    fixed = draws(record_samples)
    recorded: list[int] = []
    history: list[Tensor] = []
    for step in range(steps + 1):
        if step % record_every == 0 or step == steps:
            with torch.no_grad():
                history.append(monte_carlo_elbo(log_likelihood, Gaussian(mean, logvar), fixed))
            recorded.append(step)
        if step == steps:
            break
        for group in optimizer.param_groups:  # decays linearly to a tenth: the last steps
            group["lr"] = learning_rate * (1.0 - 0.9 * step / steps)  # settle, not wander
        optimizer.zero_grad(set_to_none=True)
        loss = -monte_carlo_elbo(log_likelihood, Gaussian(mean, logvar), draws(samples)).sum()
        loss.backward()
        optimizer.step()
        if on_step is not None:
            on_step()
    fitted = Gaussian(mean.detach(), logvar.detach())
    return FittedPosterior(fitted, tuple(recorded), torch.stack(history))


def late_improvement(fit: FittedPosterior, share: float = 0.1) -> Tensor:
    """How much each image's recorded ELBO rose over the last ``share`` of the steps,
    ``(B,)`` nats: near zero once the ascent has converged."""
    last = fit.steps[-1]
    earlier = [i for i, s in enumerate(fit.steps) if s <= last * (1.0 - share)]
    return fit.history[-1] - fit.history[earlier[-1]]


def parameter_counts(theta: int, phi: int, latent_dim: int, images: int) -> dict[str, int]:
    """The counts the notes compare: ``per_image`` |theta| + 2|z|N, ``amortized``
    |theta| + |phi|."""
    return {"per_image": theta + 2 * latent_dim * images, "amortized": theta + phi}
