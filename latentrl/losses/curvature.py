"""The curvature term (PCC's, Levine et al. 2020, in a Jacobian-free form).

It asks the mean transition f(z, u) = A(z) z + B(z) u + o(z) to be close to affine around each
encoded z_t: with (d, e) ~ N(0, delta^2 I) the symmetric second difference is
(d, e)^T H (d, e) + O(delta^4), so

    1/4 |f(z_t + d, u_t + e) + f(z_t - d, u_t - e) - 2 f(z_t, u_t)|^2 / delta^4

is 1/4 of the squared second derivative of f along a random direction, in units that do not
depend on delta (the neighbourhood's radius). The planner linearises f; a latent in which f
bends (a map folded around itself) gives it linearisations that hold only nearby. Its gradient
reaches the encoder through z_t, so it shapes the latent as well as the transition.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from latentrl.field_rules import check_fields, checked
from latentrl.losses.forward import ForwardPass
from latentrl.losses.term import TermResult, term_result, weight_field
from latentrl.models import E2C

CURVATURE_RADIUS = 0.2
"""Default radius, in latent units, of the term's steps (loss.curvature.radius)."""


@dataclass(frozen=True)
class CurvatureConfig:
    """``loss.curvature``."""

    weight: float = weight_field(0.0)
    """0: off."""
    radius: float = checked(CURVATURE_RADIUS, float, above=0)
    """delta: radius, in latent units, of the neighbourhood the transition is asked to be
    affine in."""

    def __post_init__(self) -> None:
        check_fields(self, "loss.curvature")


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


def linearization_error(
    model: E2C, z: Tensor, u: Tensor, radius: float, generator: torch.Generator | None = None
) -> Tensor:
    """PCC's curvature loss L_cur in its own form (Levine et al. 2020; PC3, Shu et al. 2020,
    uses the same loss): the error of the first-order Taylor expansion of the mean transition,

        |f(z + d, u + e) - f(z, u) - J_z(z, u) d - J_u(z, u) e|^2,  (d, e) ~ N(0, radius^2 I),

    ``z (B, n)``, ``u (B, m)`` -> ``(B,)``. The Jacobian-vector product is exact
    (:func:`jacobian_vector_product`) and differentiable in the model's parameters and in z.
    Unlike :func:`curvature_penalty` it is not divided by radius^4: about radius^4 / 4 times
    the squared second derivative for small radii, the scale the papers' weights were chosen
    for.
    """
    if radius <= 0:
        raise ValueError(f"the curvature radius must be > 0, got {radius}")
    d = radius * torch.randn(z.shape, dtype=z.dtype, device=z.device, generator=generator)
    e = radius * torch.randn(u.shape, dtype=u.dtype, device=u.device, generator=generator)
    f, slope = jacobian_vector_product(model, z, u, d, e)
    return (model.step(z + d, u + e) - f - slope).square().sum(-1)


@torch.compiler.disable
def jacobian_vector_product(
    model: E2C, z: Tensor, u: Tensor, d: Tensor, e: Tensor
) -> tuple[Tensor, Tensor]:
    """``(f(z, u), J_z d + J_u e)`` of the mean transition, both ``(B, n)``, for ``z, d (B, n)``
    and ``u, e (B, m)``; differentiable in the parameters and in z, also under ``no_grad``.

    Two reverse passes: with g(w) = (J_z^T w, J_u^T w), linear in w, J_z d + J_u e is the
    gradient of <g(w), (d, e)> with respect to w. Training then differentiates through that
    gradient, which ``torch.compile`` cannot (nor forward-mode differentiation inside it), so
    a compiled objective runs this function eagerly."""
    with torch.enable_grad():
        z_in = z if z.requires_grad else z.detach().requires_grad_(True)
        u_in = u.detach().requires_grad_(True)
        f = model.step(z_in, u_in)
        w = torch.zeros_like(f, requires_grad=True)
        grad_z, grad_u = torch.autograd.grad(
            f, (z_in, u_in), grad_outputs=w, create_graph=True, allow_unused=True
        )
        inner = (
            sum((g * v).sum() for g, v in ((grad_z, d), (grad_u, e)) if g is not None)
            + 0.0 * w.sum()
        )
        (slope,) = torch.autograd.grad(inner, w, create_graph=True)
    return f, slope


def term(fp: ForwardPass, config: CurvatureConfig) -> TermResult:
    """``(B,)`` the curvature penalty at (z_t, u_t) and ``loss/curvature``."""
    penalty = curvature_penalty(fp.model, fp.z_t, fp.u_t, config.radius)
    return term_result("curvature", penalty)
