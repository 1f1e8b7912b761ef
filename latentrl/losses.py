"""The E2C training objective and the closed-form pieces it is built from.

Per transition (x_t, u_t, x_{t+1}), averaged over the batch, in nats per image:

    L = w_rec * -log p(x_t | z_t)                      z_t ~ q(z_t | x_t)
      + w_pred * -log p(x_{t+1} | z^_{t+1})            z^_{t+1} ~ Q^(. | z_t, u_t)
      + w_prior * KL(q(z_t | x_t) || N(0, I))
      + w_trans * KL(Q^ || q(z_{t+1} | x_{t+1}))       (E2C's lambda; 1.0 by default, E2C used 0.25)
      + w_multi * 1/(K-1) sum_{k=2..K} 1/2 |z^_{t+k} - mu_{t+k}|^2_{Sigma_{t+k}^-1}   (optional)
      + w_multi_pred * -log p(x_{t+k} | z^_{t+k}),  k ~ U{2..K} per window               (optional)
      + w_curv * 1/4 |f(z_t + d, u_t + e) + f(z_t - d, u_t - e) - 2 f(z_t, u_t)|^2 / delta^4
                                                                                      (optional)
      + w_gate * -log Bernoulli(moved_t | g(z_t, u_t))                                (optional)

Q^ = N(A mu_t + B u_t + o, A diag(sigma_t^2) A^T [+ s^2 I]) with (A, B, o) from the
transition network at the sampled z_t. z^_{t+1} = A z_t + B u_t + o [+ s eps] pushes that
same sample through the same linearisation, which makes it an exact draw from Q^ (as in E2C).

The optional multi-step term (not in E2C) needs chained data: z^_{t+k} = f(z^_{t+k-1}, u_{t+k-1})
rolls the mean transition on from z^_{t+1}, and is compared with the encoding
q(z_{t+k} | x_{t+k}) = N(mu, Sigma) of the true future, in units of its std. The encoding is a
fixed target (no gradient), so the term trains the transition (and the encoding of x_t) to stay
on the encoded trajectory for K steps, which is what a planner relies on; one-step terms alone
left open-loop drift after 20 steps varying 4x between training seeds.

The optional multi-step prediction term grounds the same rollout in pixels instead: it decodes
z^_{t+k} at one random k per window and scores the true image x_{t+k}, E2C's prediction term k
steps ahead. One random k (an unbiased estimate of the mean over k) costs one decoder pass per
row instead of K - 1.

The optional curvature term (PCC's, Levine et al. 2020, in a Jacobian-free form) asks the mean
transition f(z, u) = A(z) z + B(z) u + o(z) to be close to affine around each encoded z_t:
with (d, e) ~ N(0, delta^2 I) the symmetric second difference is (d, e)^T H (d, e) + O(delta^4),
so the term is 1/4 of the squared second derivative of f along a random direction, in units that
do not depend on delta (the neighbourhood's radius). The planner linearises f; a latent in which
f bends (a map folded around itself) gives it linearisations that hold only nearby. Its gradient
reaches the encoder through z_t, so it shapes the latent as well as the transition.

The optional move-gate term trains the gate of a transition built with ``model.move_gate``
(g(z, u) in (0, 1), the share of the predicted move that happens) as a classifier of whether
a push moved, on labels read from the pixels: a push whose frames changed less than a share of
the training set's median change per unit push (:func:`frame_change_per_push`) is blocked;
on planar's 20,000 transitions a share of 0.5 flags 70% of the pushes that end short of their
size (the true states as the reference) and none of the free ones. Through the
prediction error alone the gate learnt no contacts on planar: the free moves, most of the
data, pull it open everywhere (docs/benchmarks.md).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

from latentrl.models import (
    E2C,
    Gaussian,
    apply_local_linear,
    to_unit_interval,
    transition_covariance,
)

CURVATURE_RADIUS = 0.2
"""Default radius, in latent units, of the curvature term's steps (train.curvature_radius)."""


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the four terms; the names match the metric keys ``loss/<name>``."""

    reconstruction: float = 1.0
    """-log p(x_t | z_t)."""
    prediction: float = 1.0
    """-log p(x_{t+1} | z^_{t+1})."""
    kl_prior: float = 1.0
    """KL(q(z_t | x_t) || N(0, I))."""
    kl_transition: float = 1.0
    """KL(Q^ || q(z_{t+1} | x_{t+1})): E2C's lambda. On Pendulum-v0 (12 epochs, one seed each)
    1.0 gave a 3x smaller one-step and 2x smaller 10-step open-loop error than E2C's 0.25, and
    no blow-up over 60 steps; 4.0 was worse again."""
    multi_step: float = 1.0
    """The multi-step term (module docstring), per window of K chained transitions; it is
    computed only when training passes a :class:`Continuation` (train.multi_step_horizon > 1)
    and this weight is not 0."""
    multi_step_prediction: float = 0.0
    """-log p(x_{t+k} | z^_{t+k}) at one random k in 2..K per window (module docstring); like
    ``multi_step`` computed only with a :class:`Continuation` and a weight other than 0."""
    curvature: float = 0.0
    """The curvature term (module docstring); computed only when this weight is not 0."""
    move_gate: float = 0.0
    """The move gate's classification term (module docstring), in nats per transition; needs
    ``model.move_gate`` and is computed only when this weight is not 0. Its labels suit tasks
    whose frames change only through the push (planar); where the state holds a velocity the
    frames change without one, and the labels say nothing."""


class Continuation(NamedTuple):
    """What follows each row of a batch, for the multi-step term over windows of K steps."""

    action: Tensor
    """``(B, K - 1, m)``: u_{t+1}, ..., u_{t+K-1}."""
    next_obs: Tensor
    """``(B, K - 1, k, H, W)``: x_{t+2}, ..., x_{t+K}."""
    valid: Tensor
    """``(B,)`` bool: the row starts K chained transitions (other rows do not count)."""


def bernoulli_nll(logits: Tensor, target: Tensor) -> Tensor:
    """-log Bernoulli(target; sigmoid(logits)) summed over pixels: ``(B, ...)`` -> ``(B,)``.

    ``target`` holds intensities in [0, 1] (the usual continuous relaxation for grey pixels).
    """
    nll = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return nll.flatten(1).sum(-1)


def gaussian_nll(mean: Tensor, log_std: Tensor, target: Tensor) -> Tensor:
    """-log N(target; mean, exp(log_std)^2) summed over pixels: ``(B, ...)`` -> ``(B,)``.

    ``log_std`` broadcasts against ``mean`` (a scalar for the model's shared std).
    """
    z = (target - mean) * torch.exp(-log_std)
    nll = 0.5 * z.square() + log_std + 0.5 * math.log(2 * math.pi)
    return nll.flatten(1).sum(-1)


def kl_diag_gaussian_std_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, diag exp(logvar)) || N(0, I)): ``(..., n)`` -> ``(...)``."""
    return 0.5 * (torch.exp(logvar) + mean.square() - 1.0 - logvar).sum(-1)


def log_abs_det_rank_one(v: Tensor, r: Tensor) -> Tensor:
    """log |det(I + v r^T)| = log |1 + r^T v|: ``(..., n)`` -> ``(...)``.

    Uses log1p where 1 + r^T v > 0 (accurate for small r^T v) and log(-(1 + r^T v)) where it
    is negative (A is still invertible there); the unused branch gets a harmless input so
    no NaN leaks into gradients. -inf where A is singular.
    """
    x = (v * r).sum(-1)
    positive = x > -1
    from_positive = torch.log1p(torch.where(positive, x, torch.zeros_like(x)))
    from_negative = torch.log(-1.0 - torch.where(positive, torch.full_like(x, -2.0), x))
    return torch.where(positive, from_positive, from_negative)


def kl_transition(
    mean1: Tensor,
    logvar1: Tensor,
    v: Tensor,
    r: Tensor,
    mean2: Tensor,
    logvar2: Tensor,
    noise_std: float = 0.0,
) -> Tensor:
    """KL(N(mean1, S1) || N(mean2, diag exp(logvar2))), S1 = A diag(exp(logvar1)) A^T + s^2 I.

    A = I + v r^T and s = ``noise_std``; every argument is ``(..., n)``, the result ``(...)``.
    With s = 0, log det S1 = sum(logvar1) + 2 log|1 + r^T v| (det A itself, not squared,
    appears in det S1 twice); with s > 0 it comes from a Cholesky factor of the n x n S1.
    tr(S2^-1 S1) = sum_ij A_ij^2 var1_j / var2_i + s^2 sum_i 1 / var2_i needs no inverse, and
    is a sum of non-negative terms, so it stays accurate when A is nearly singular.
    """
    n = mean1.shape[-1]
    eye = torch.eye(n, dtype=v.dtype, device=v.device)
    A = eye + v.unsqueeze(-1) * r.unsqueeze(-2)
    ratio = torch.exp(logvar1.unsqueeze(-2) - logvar2.unsqueeze(-1))  # var1_j / var2_i
    trace = (A.square() * ratio).sum((-1, -2))
    if noise_std > 0:
        trace = trace + noise_std**2 * torch.exp(-logvar2).sum(-1)
        chol = torch.linalg.cholesky(transition_covariance(A, torch.exp(logvar1), noise_std))
        logdet1 = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    else:
        logdet1 = logvar1.sum(-1) + 2.0 * log_abs_det_rank_one(v, r)
    mahalanobis = ((mean2 - mean1).square() * torch.exp(-logvar2)).sum(-1)
    return 0.5 * (trace + mahalanobis - n + logvar2.sum(-1) - logdet1)


def roll_mean(model: E2C, z: Tensor, actions: Tensor, noise_std: float = 0.0) -> Tensor:
    """Latents after each of ``actions (B, K, m)`` from ``z (B, n)`` under the mean transition
    (plus Gaussian noise of ``noise_std`` per step): ``(B, K, n)``."""
    latents = []
    for k in range(actions.shape[1]):
        z = model.step(z, actions[:, k])
        if noise_std > 0:
            z = z + noise_std * torch.randn_like(z)
        latents.append(z)
    return torch.stack(latents, dim=1)


def scale_gradient(x: Tensor, scale: float) -> Tensor:
    """``x`` in the forward pass; its gradient multiplied by ``scale`` in the backward pass."""
    return x.detach() + scale * (x - x.detach())


def multi_step_error(
    predicted: Tensor, target_mean: Tensor, target_logvar: Tensor, valid: Tensor
) -> Tensor:
    """Mean over k of 1/2 |predicted_k - target_mean_k|^2 / exp(target_logvar_k), ``(B, K, n)``
    -> ``(B,)``, zero where not ``valid`` and scaled by B / #valid, so that the batch mean is
    the mean over valid windows."""
    error = 0.5 * ((predicted - target_mean).square() * torch.exp(-target_logvar)).sum(-1)
    weight = valid.to(error.dtype) * (valid.numel() / valid.sum().clamp_min(1))
    return error.mean(-1) * weight


def random_step_prediction_nll(
    model: E2C, predicted: Tensor, future: Tensor, valid: Tensor, dtype: torch.dtype
) -> Tensor:
    """-log p(x_{t+k} | z^_{t+k}) at one uniformly random k per row: ``predicted (B, K, n)``,
    ``future (B, K, ...)`` images -> ``(B,)``, zero where not ``valid`` and scaled by
    B / #valid like :func:`multi_step_error`."""
    rows = torch.arange(predicted.shape[0], device=predicted.device)
    k = torch.randint(predicted.shape[1], (predicted.shape[0],), device=predicted.device)
    target = to_unit_interval(future[rows, k], dtype)
    nll = observation_nll(model, model.decode(predicted[rows, k]), target)
    return nll * valid.to(nll.dtype) * (valid.numel() / valid.sum().clamp_min(1))


def curvature_penalty(
    model: E2C, z: Tensor, u: Tensor, radius: float, generator: torch.Generator | None = None
) -> Tensor:
    """1/4 |f(z + d, u + e) + f(z - d, u - e) - 2 f(z, u)|^2 / radius^4 with (d, e) drawn from
    N(0, radius^2 I): ``z (B, n)``, ``u (B, m)`` -> ``(B,)``. Zero where f is affine; for
    small radii it tends to 1/4 |(d, e)^T H (d, e)|^2 / radius^4, H the Hessian of f."""
    if radius <= 0:
        raise ValueError(f"the curvature radius must be > 0, got {radius}")
    d = radius * torch.randn(z.shape, dtype=z.dtype, device=z.device, generator=generator)
    e = radius * torch.randn(u.shape, dtype=u.dtype, device=u.device, generator=generator)
    second = model.step(z + d, u + e) + model.step(z - d, u - e) - 2.0 * model.step(z, u)
    return 0.25 * second.square().sum(-1) / radius**4


def observation_nll(model: E2C, decoded: Tensor, target: Tensor) -> Tensor:
    """-log p(target | z) under the model's likelihood, nats per image: ``(B,)``.

    decoded: ``model.decode(z)`` ``(B, k, H, W)``; target: floats in [0, 1], same shape.
    """
    if model.config.likelihood == "bernoulli":
        return bernoulli_nll(decoded, target)
    return gaussian_nll(decoded, model.decoder.log_std(), target)


def frame_change_per_push(x_t: Tensor, x_next: Tensor, u_t: Tensor) -> Tensor:
    """``(B,)``: summed absolute change of the frames, in [0, 1] pixel units, per unit |u_t|.

    x_t, x_next: images ``(B, k, H, W)``, uint8 or float in [0, 1]; u_t: ``(B, m)``. A zero
    push counts as 1e-6 long.
    """
    change = to_unit_interval(x_next, torch.float32) - to_unit_interval(x_t, torch.float32)
    per_image = change.abs().flatten(1).sum(1)
    return per_image / u_t.to(torch.float32).norm(dim=-1).clamp_min(1e-6)


def move_gate_nll(model: E2C, z_t: Tensor, u_t: Tensor, moved: Tensor) -> Tensor:
    """``(B,)``: -log Bernoulli(moved | g(z_t, u_t)) of the model's move gate."""
    logit = model.transition_net.gate_logit(z_t, u_t)
    return F.binary_cross_entropy_with_logits(logit, moved.to(logit.dtype), reduction="none")


def e2c_loss(
    model: E2C,
    x_t: Tensor,
    u_t: Tensor,
    x_next: Tensor,
    weights: LossWeights | None = None,
    continuation: Continuation | None = None,
    encoder_gradient: float = 1.0,
    curvature_radius: float = CURVATURE_RADIUS,
    moved: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The E2C objective (module docstring) and detached scalar metrics.

    x_t, x_next: images ``(B, k, H, W)``, uint8 or float in [0, 1]; u_t: ``(B, m)``.
    With a ``continuation`` the multi-step terms with a weight other than 0 are added (metrics
    ``loss/multi_step``, ``loss/multi_step_prediction``); their gradient reaches the encoder
    through z_t scaled by ``encoder_gradient`` (0: they train the transition and decoder only).
    The latent targets never pass a gradient. With a curvature weight other than 0 the
    curvature term (``loss/curvature``) is added, its neighbourhood ``curvature_radius`` wide.
    With a move-gate weight other than 0, ``moved`` ``(B,)`` bool says which pushes moved
    (:func:`latentrl.train.moved_labels`) and the gate's classification term
    (``loss/move_gate``) is added.
    Metric keys: ``loss/total`` and ``loss/<term>`` (unweighted batch means of each term),
    ``diag/det_A_{mean,min,max}``, ``diag/abs_vr_mean``, ``diag/latent_std_mean``,
    ``diag/prediction_error`` (mean |mean of Q^ - mean of q(z_{t+1}|x_{t+1})|_2) and, for
    the Gaussian likelihood, ``diag/gaussian_std``.
    """
    w = LossWeights() if weights is None else weights
    if x_t.shape != x_next.shape:
        raise ValueError(f"x_t {tuple(x_t.shape)} and x_next {tuple(x_next.shape)} differ")
    batch = x_t.shape[0]
    dtype = next(model.parameters()).dtype
    target_t, target_next = to_unit_interval(x_t, dtype), to_unit_interval(x_next, dtype)
    u_t = u_t.to(dtype)

    # One encoder and one decoder pass over both halves of the batch (no batch-coupled layers).
    q = model.encode(torch.cat([target_t, target_next]))
    q_t = Gaussian(q.mean[:batch], q.logvar[:batch])
    q_next = Gaussian(q.mean[batch:], q.logvar[batch:])
    z_t = q_t.sample()
    mean_pred, lin = model.predict(q_t, z_t, u_t)
    noise = model.config.transition_noise
    z_hat = apply_local_linear(lin, z_t, u_t)
    if noise > 0:
        z_hat = z_hat + noise * torch.randn_like(z_hat)
    decoded = model.decode(torch.cat([z_t, z_hat]))

    terms = {
        "reconstruction": observation_nll(model, decoded[:batch], target_t),
        "prediction": observation_nll(model, decoded[batch:], target_next),
        "kl_prior": kl_diag_gaussian_std_normal(q_t.mean, q_t.logvar),
        "kl_transition": kl_transition(
            mean_pred, q_t.logvar, lin.v, lin.r, q_next.mean, q_next.logvar, noise
        ),
    }
    if continuation is not None and (w.multi_step != 0 or w.multi_step_prediction != 0):
        future = continuation.next_obs
        if encoder_gradient == 1.0:
            start = z_hat
        else:  # the same z^_{t+1}, with a scaled gradient into the encoder through z_t
            start = model.step(scale_gradient(z_t, encoder_gradient), u_t)
            start = start + (z_hat - start).detach()  # adds the transition noise, if any
        predicted = roll_mean(model, start, continuation.action.to(dtype), noise)
        if w.multi_step != 0:
            with torch.no_grad():
                q_future = model.encode(to_unit_interval(future.flatten(0, 1), dtype))
            terms["multi_step"] = multi_step_error(
                predicted,
                q_future.mean.unflatten(0, future.shape[:2]),
                q_future.logvar.unflatten(0, future.shape[:2]),
                continuation.valid,
            )
        if w.multi_step_prediction != 0:
            terms["multi_step_prediction"] = random_step_prediction_nll(
                model, predicted, future, continuation.valid, dtype
            )
    if w.curvature != 0:
        terms["curvature"] = curvature_penalty(model, z_t, u_t, curvature_radius)
    if w.move_gate != 0:
        if moved is None:
            raise ValueError("loss.move_gate needs the labels `moved` of the batch's pushes")
        terms["move_gate"] = move_gate_nll(model, z_t, u_t, moved)
    total = torch.stack([getattr(w, name) * term for name, term in terms.items()]).sum(0).mean()

    with torch.no_grad():
        vr = (lin.v * lin.r).sum(-1)
        metrics = {"loss/total": total.detach()}
        metrics |= {f"loss/{name}": term.mean() for name, term in terms.items()}
        metrics |= {
            "diag/det_A_mean": (1 + vr).mean(),
            "diag/det_A_min": (1 + vr).min(),
            "diag/det_A_max": (1 + vr).max(),
            "diag/abs_vr_mean": vr.abs().mean(),
            "diag/latent_std_mean": q.std.mean(),
            "diag/prediction_error": (mean_pred - q_next.mean).norm(dim=-1).mean(),
        }
        if model.config.likelihood == "gaussian":
            metrics["diag/gaussian_std"] = model.decoder.log_std().exp()
    return total, {k: v.detach() for k, v in metrics.items()}
