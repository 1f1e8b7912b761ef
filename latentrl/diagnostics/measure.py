"""The four measurements of ``latentrl diagnose`` on a model and its validation data.

Each returns a JSON-ready dict: per quantity ``{"mean", "se"}`` over images (or transitions),
curves as lists. The model's weights are frozen here (no gradient is kept for them) except the
encoder's in :func:`measure_gradients`, which differentiates with respect to them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from latentrl.data import TransitionDataset
from latentrl.diagnostics.amortization import (
    fit_per_image,
    late_improvement,
    parameter_counts,
)
from latentrl.diagnostics.elbo_gap import ElboGap, elbo_gap, importance_samples, log_mean_exp
from latentrl.diagnostics.gradient_variance import (
    ESTIMATORS,
    estimator_surrogates,
    gradient_moments,
)
from latentrl.diagnostics.latent_model import image_log_likelihood, posterior
from latentrl.diagnostics.settings import DiagnoseSettings
from latentrl.diagnostics.transition_check import (
    kl_full_diag,
    kl_monte_carlo,
    linearization_error,
    predicted_next,
    rollout_errors,
)
from latentrl.losses.gaussian_kl import kl_diag_gaussian_std_normal
from latentrl.models import E2C

Tick = Callable[[int], None]
"""Advances a progress bar by a number of work units."""

FITTED_PROPOSAL_SAMPLES = 2000
"""Draws from each fitted q_i: its ELBO and a second importance-sampling estimate of log p(x)."""

STEP_RADII = (0.01, 0.03, 0.1, 0.3, 1.0)
"""Distances from the linearization point, in units of the encodings' spread."""


def stats(values: Tensor) -> dict[str, float]:
    """Mean and standard error (sample std / sqrt(n); NaN for one value) of ``values``."""
    x = values.detach().double().reshape(-1)
    se = float(x.std() / math.sqrt(x.numel())) if x.numel() > 1 else float("nan")
    return {"mean": float(x.mean()), "se": se}


def freeze(model: E2C) -> None:
    """No gradient for any weight of ``model`` (the measurements differentiate w.r.t. latents
    or switch on the encoder's weights themselves)."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)


def measure_elbo_gap(
    model: E2C, images: Tensor, s: DiagnoseSettings, generator: torch.Generator, tick: Tick
) -> tuple[dict[str, Any], ElboGap]:
    """Item 1 on images ``(B, k, H, W)``: log p(x), ELBO, gap, IWAE curve, ESS."""
    with torch.no_grad():
        q = posterior(model, images)
    chunk = max(1, s.chunk // images.shape[0])
    gap = elbo_gap(image_log_likelihood(model, images), q, s.samples, chunk, generator, tick)
    report = {
        "images": images.shape[0],
        "samples": s.samples,
        "log_px": stats(gap.log_px),
        "elbo": stats(gap.elbo),
        "gap": stats(gap.gap),
        "kl_prior": stats(kl_diag_gaussian_std_normal(q.mean, q.logvar)),
        "effective_sample_size": stats(gap.ess),
        "iwae": {
            "k": list(gap.ks),
            "mean": gap.iwae.mean(0).tolist(),
            "se": [stats(col)["se"] for col in gap.iwae.T],
        },
        "per_image": {
            "log_px": gap.log_px.tolist(),
            "elbo": gap.elbo.tolist(),
            "gap": gap.gap.tolist(),
            "effective_sample_size": gap.ess.tolist(),
        },
    }
    return report, gap


def measure_amortization(
    model: E2C,
    images: Tensor,
    s: DiagnoseSettings,
    gap: ElboGap,
    training_images: int,
    generator: torch.Generator,
    tick: Tick,
) -> dict[str, Any]:
    """Item 2: per-image (mu_i, sigma_i) fitted from the encoder's; the gap's split, with
    log p(x) the better of the two importance-sampling estimates (proposal: the encoder's q
    from item 1, or the fitted q_i)."""
    with torch.no_grad():
        q = posterior(model, images)
    log_likelihood = image_log_likelihood(model, images)
    record_every = max(1, s.fit_steps // 30)
    fit = fit_per_image(
        log_likelihood,
        q,
        s.fit_steps,
        s.fit_samples,
        s.fit_learning_rate,
        record_every,
        generator=generator,
        on_step=lambda: tick(1),
    )
    draws = min(s.samples, FITTED_PROPOSAL_SAMPLES)
    chunk = max(1, s.chunk // images.shape[0])
    log_w, log_lik = importance_samples(log_likelihood, fit.q, draws, chunk, generator)
    elbo_star = log_lik.mean(-1) - kl_diag_gaussian_std_normal(fit.q.mean, fit.q.logvar)
    # Both importance-sampling estimates are stochastic lower bounds of log p(x) (IWAE): the
    # higher one is the tighter, and a poor encoder makes a poor proposal.
    log_px_fitted = log_mean_exp(log_w)
    log_px = torch.maximum(gap.log_px, log_px_fitted)
    theta = sum(p.numel() for p in model.decoder.parameters())
    phi = sum(p.numel() for p in model.encoder.parameters())
    latent = model.config.latent_dim
    return {
        "steps": s.fit_steps,
        "samples_per_step": s.fit_samples,
        "learning_rate": s.fit_learning_rate,
        "elbo_fitted": stats(elbo_star),
        "elbo_amortized": stats(gap.elbo),
        "log_px_fitted_proposal": stats(log_px_fitted),
        "log_px_best": stats(log_px),
        "encoder_proposal_shortfall": stats(log_px - gap.log_px),
        "gap_best": stats(log_px - gap.elbo),
        "approximation_gap": stats(log_px - elbo_star),
        "amortization_gap": stats(elbo_star - gap.elbo),
        "late_improvement": stats(late_improvement(fit)),
        "history": {"step": list(fit.steps), "mean": fit.history.mean(1).tolist()},
        "parameters": {
            "theta": theta,
            "phi": phi,
            "latent_dim": latent,
            "training_images": training_images,
            **parameter_counts(theta, phi, latent, training_images),
        },
    }


def measure_gradients(
    model: E2C, images: Tensor, s: DiagnoseSettings, generator: torch.Generator, tick: Tick
) -> dict[str, Any]:
    """Item 3: trace of the covariance of each estimator's gradient w.r.t. the encoder's
    weights, per image of ``images (G, k, H, W)``, ``s.repeats`` estimates of ``s.draws``
    draws each; ratios to the reparameterised one."""
    parameters = list(model.encoder.parameters())
    for parameter in parameters:
        parameter.requires_grad_(True)
    traces: dict[str, list[float]] = {name: [] for name in ESTIMATORS}
    differences, noise = [], []
    try:
        for i in range(images.shape[0]):
            x = images[i : i + 1]
            surrogates = estimator_surrogates(
                image_log_likelihood(model, x), lambda x=x: posterior(model, x), s.draws, generator
            )
            means = {}
            for name, surrogate in surrogates.items():
                means[name], trace = gradient_moments(surrogate, parameters, s.repeats)
                traces[name].append(float(trace))
                tick(1)
            scale = float(means["reparameterized"].norm())
            gap = means["score_function"] - means["reparameterized"]
            spread = traces["score_function"][-1] + traces["reparameterized"][-1]
            differences.append(float(gap.norm()) / scale)
            noise.append(math.sqrt(spread / s.repeats) / scale)
    finally:
        freeze(model)
    rp = torch.tensor(traces["reparameterized"], dtype=torch.float64)
    report: dict[str, Any] = {
        "images": images.shape[0],
        "repeats": s.repeats,
        "draws": s.draws,
        "encoder_parameters": sum(p.numel() for p in parameters),
        "trace": {name: stats(torch.tensor(values)) for name, values in traces.items()},
    }
    for name in ESTIMATORS[1:]:
        ratio = torch.tensor(traces[name], dtype=torch.float64) / rp
        report[f"ratio_{name}"] = {**stats(ratio), "median": float(ratio.median())}
    report["mean_difference"] = {
        "relative": stats(torch.tensor(differences)),
        "expected_from_noise": stats(torch.tensor(noise)),
    }
    return report


def window_batch(
    data: TransitionDataset, horizon: int, count: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Up to ``count`` windows of the longest length <= ``horizon`` that the data's chains
    hold: first images ``(T, k, H, W)``, actions ``(T, h, m)``, next images
    ``(T, h, k, H, W)``."""
    for steps in range(horizon, 0, -1):
        starts = data.window_starts(steps)
        if len(starts):
            break
    chosen = starts[torch.randperm(len(starts), generator=generator)[:count]]
    index = chosen.unsqueeze(1) + torch.arange(steps).unsqueeze(0)
    return data.obs[chosen], data.action[index], data.next_obs[index]


def measure_transitions(
    model: E2C, data: TransitionDataset, s: DiagnoseSettings, generator: torch.Generator
) -> dict[str, Any]:
    """Item 4: the transition KL in closed form against Monte Carlo (kinds with a decoder),
    and the linearization's error over the horizon and away from its point."""
    obs, actions, next_obs = window_batch(data, s.horizon, s.transitions, generator)
    windows, steps = actions.shape[:2]
    with torch.no_grad():
        q_t = posterior(model, obs)
        targets = posterior(model, next_obs.flatten(0, 1)).mean.view(windows, steps, -1)
    scale = targets.flatten(0, 1).std(0)
    report: dict[str, Any] = {"transitions": windows, "horizon": steps}
    if model.has_decoder:
        with torch.no_grad():
            mean, cov = predicted_next(model, q_t, actions[:, 0])
            q_next = posterior(model, next_obs[:, 0])
            closed = kl_full_diag(mean, cov, q_next.mean, q_next.logvar)
            mc, mc_se = kl_monte_carlo(
                mean, cov, q_next.mean, q_next.logvar, s.kl_samples, generator
            )
        z = (mc - closed) / mc_se
        report["kl"] = {
            "samples": s.kl_samples,
            "closed_form": stats(closed),
            "monte_carlo": stats(mc),
            "abs_z_mean": float(z.abs().mean()),
            "abs_z_max": float(z.abs().max()),
        }
    errors = rollout_errors(model, q_t.mean, actions, targets, scale)
    report["rollout"] = {
        "scale": scale.tolist(),
        **{
            name: {"mean": e.mean(0).tolist(), "se": [stats(c)["se"] for c in e.T]}
            for name, e in errors.items()
        },
    }
    relative = linearization_error(
        model, q_t.mean, actions[:, 0], list(STEP_RADII), scale, generator
    )
    report["step"] = {
        "radius": list(STEP_RADII),
        "median": relative.median(0).values.tolist(),
        "mean": relative.mean(0).tolist(),
    }
    return report
