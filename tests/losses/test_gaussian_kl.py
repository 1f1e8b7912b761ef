"""The closed-form Gaussian KLs against torch.distributions."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from latentrl.losses import kl_diag_gaussian_std_normal, kl_linear_transition, log_abs_det_low_rank
from latentrl.models import low_rank_update, transition_covariance

F64 = torch.float64


def with_dot(v0: torch.Tensor, r: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """v0 moved along r so that v^T r == target (per batch element)."""
    shift = (target - (v0 * r).sum(-1)) / r.square().sum(-1)
    return v0 + shift.unsqueeze(-1) * r


def random_transition_inputs(
    shape: tuple[int, ...], n: int, vr: float | None = None, seed: int = 0, rank: int = 1
) -> dict[str, torch.Tensor]:
    """Arguments of kl_linear_transition; with ``vr`` (rank 1 only) v^T r == vr."""
    g = torch.Generator().manual_seed(seed)

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=g, dtype=F64)

    R = randn(*shape, n, rank)
    V = 0.5 * randn(*shape, n, rank) / rank
    if vr is not None:
        assert rank == 1
        V = with_dot(V[..., 0], R[..., 0], torch.full(shape, vr, dtype=F64)).unsqueeze(-1)
    return {
        "mean1": randn(*shape, n),
        "logvar1": randn(*shape, n),
        "V": V,
        "R": R,
        "mean2": randn(*shape, n),
        "logvar2": randn(*shape, n),
    }


def reference_kl_transition(
    inputs: dict[str, torch.Tensor], noise_std: float = 0.0
) -> torch.Tensor:
    """KL from full float64 covariance matrices via torch.distributions."""
    x = {k: t.to(F64) for k, t in inputs.items()}
    A = torch.eye(x["V"].shape[-2], dtype=F64) + x["V"] @ x["R"].transpose(-1, -2)
    S1 = transition_covariance(A, x["logvar1"].exp(), noise_std)
    S1 = 0.5 * (S1 + S1.transpose(-1, -2))
    S2 = torch.diag_embed(x["logvar2"].exp())
    return kl_divergence(MultivariateNormal(x["mean1"], S1), MultivariateNormal(x["mean2"], S2))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(7,), (3, 4)])
def test_kl_to_standard_normal_matches_torch(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(*shape, 5, generator=g, dtype=F64)
    logvar = 2 * torch.randn(*shape, 5, generator=g, dtype=F64)
    q = Independent(Normal(mean, (0.5 * logvar).exp()), 1)
    prior = Independent(Normal(torch.zeros_like(mean), torch.ones_like(mean)), 1)
    ours = kl_diag_gaussian_std_normal(mean.to(dtype), logvar.to(dtype))
    assert ours.shape == shape and ours.dtype == dtype
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == F64 else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(ours.to(F64), kl_divergence(q, prior), **tol)


@pytest.mark.parametrize("shape", [(64,), (4, 5)])
@pytest.mark.parametrize(("n", "rank"), [(1, 1), (3, 1), (6, 1), (3, 2), (6, 3), (4, 4)])
def test_kl_transition_matches_multivariate_normal_in_float64(
    shape: tuple[int, ...], n: int, rank: int
) -> None:
    inputs = random_transition_inputs(shape, n, rank=rank)
    ours = kl_linear_transition(**inputs)
    assert ours.shape == shape
    torch.testing.assert_close(ours, reference_kl_transition(inputs), rtol=1e-10, atol=1e-10)


# v^T r inside the model's range (|v^T r| < 0.95), at its edge, and beyond it: nearly singular
# A (1 + v^T r -> 0+) and det A < 0, where the closed form must use |det A|.
VR_VALUES = [0.5, 2.0, -0.5, -0.95, -0.99, -0.999, -0.9999, -1.01, -1.5, -3.0]


def rounding_bound(inputs: dict[str, torch.Tensor], eps: float) -> torch.Tensor:
    """How far any eps-precision evaluation of the KL may drift: rounding sum(v * r) moves
    1 + v^T r by about eps * sum|v_i r_i|, and the KL by that divided by |1 + v^T r|."""
    products = inputs["V"][..., 0] * inputs["R"][..., 0]
    vr_abs = products.abs().sum(-1).double()
    one_plus = (1 + products.sum(-1)).abs().double()
    return 4 * eps * vr_abs / one_plus


@pytest.mark.parametrize("vr", VR_VALUES)
def test_kl_transition_stays_right_for_nearly_singular_and_flipped_a(vr: float) -> None:
    inputs = random_transition_inputs((32,), 3, vr=vr, seed=2)
    reference = reference_kl_transition(inputs)
    # The float64 reference factorises S1, whose condition number grows like 1/(1 + v^T r)^2:
    # at 1 + v^T r = 1e-4 it is itself only good to ~1e-8.
    torch.testing.assert_close(kl_linear_transition(**inputs), reference, rtol=1e-7, atol=1e-10)
    # float32: within float32 rounding of the same inputs (the reference is float64 on the
    # rounded inputs), widening with 1 / |1 + v^T r| as any float32 evaluation must.
    inputs32 = {k: t.float() for k, t in inputs.items()}
    ours32 = kl_linear_transition(**inputs32)
    assert ours32.dtype == torch.float32
    reference32 = reference_kl_transition(inputs32)
    error = (ours32.double() - reference32).abs()
    bound = 1e-6 * reference32.abs() + rounding_bound(inputs32, 2.0**-23)
    assert (error <= bound).all(), (error / bound).max()


@pytest.mark.parametrize("vr", [0.3, -0.9, -0.999, -2.0])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kl_transition_with_additive_noise(vr: float, dtype: torch.dtype) -> None:
    inputs = {k: t.to(dtype) for k, t in random_transition_inputs((16,), 3, vr=vr).items()}
    ours = kl_linear_transition(**inputs, noise_std=0.3)
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == F64 else {"rtol": 2e-6, "atol": 2e-5}
    torch.testing.assert_close(ours.double(), reference_kl_transition(inputs, 0.3), **tol)


def test_log_abs_det_rank_one_matches_slogdet_with_finite_gradients() -> None:
    g = torch.Generator().manual_seed(3)
    r = torch.randn(len(VR_VALUES), 4, generator=g, dtype=F64)
    v0 = torch.randn(len(VR_VALUES), 4, generator=g, dtype=F64)
    v = with_dot(v0, r, torch.tensor(VR_VALUES, dtype=F64)).requires_grad_()
    ours = log_abs_det_low_rank(v.unsqueeze(-1), r.unsqueeze(-1))
    A = torch.eye(4, dtype=F64) + v.unsqueeze(-1) * r.unsqueeze(-2)
    reference = torch.linalg.slogdet(A).logabsdet
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)
    (grad,) = torch.autograd.grad(ours.sum(), v)
    (ref_grad,) = torch.autograd.grad(reference.sum(), v)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)
    tiny = torch.full((1, 2, 1), 1e-5)
    assert log_abs_det_low_rank(tiny, tiny).item() == pytest.approx(2e-10, rel=1e-5)


@pytest.mark.parametrize(("n", "rank"), [(3, 2), (6, 3), (4, 4)])
def test_log_abs_det_low_rank_matches_slogdet_of_the_n_by_n_matrix(n: int, rank: int) -> None:
    inputs = random_transition_inputs((16,), n, seed=4, rank=rank)
    V = inputs["V"].mul(3.0).requires_grad_()  # some determinants negative
    ours = log_abs_det_low_rank(V, inputs["R"])
    reference = torch.linalg.slogdet(low_rank_update(V, inputs["R"])).logabsdet
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)
    (grad,) = torch.autograd.grad(ours.sum(), V)
    (ref_grad,) = torch.autograd.grad(reference.sum(), V)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)


def test_log_abs_det_low_rank_in_bfloat16_is_computed_in_float32() -> None:
    inputs = random_transition_inputs((16,), 4, seed=5, rank=2)
    reference = log_abs_det_low_rank(inputs["V"], inputs["R"])
    ours = log_abs_det_low_rank(inputs["V"].bfloat16(), inputs["R"].bfloat16())
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), reference, rtol=0.0, atol=0.05)
