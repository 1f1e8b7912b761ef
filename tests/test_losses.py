"""E2C loss: closed-form KLs against torch.distributions, likelihoods, the composed bound."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import pytest
import torch
from torch.distributions import (
    Bernoulli,
    Independent,
    MultivariateNormal,
    Normal,
    kl_divergence,
)

from latentrl.losses import (
    Continuation,
    LossWeights,
    bernoulli_nll,
    curvature_penalty,
    e2c_loss,
    frame_change_per_push,
    gaussian_nll,
    kl_diag_gaussian_std_normal,
    kl_transition,
    log_abs_det_rank_one,
    multi_step_error,
    observation_nll,
    random_step_prediction_nll,
    roll_mean,
)
from latentrl.models import E2C, Gaussian, ModelConfig, transition_covariance

F64 = torch.float64


def with_dot(v0: torch.Tensor, r: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """v0 moved along r so that v^T r == target (per batch element)."""
    shift = (target - (v0 * r).sum(-1)) / r.square().sum(-1)
    return v0 + shift.unsqueeze(-1) * r


def random_transition_inputs(
    shape: tuple[int, ...], n: int, vr: float | None = None, seed: int = 0
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=g, dtype=F64)

    r = randn(*shape, n)
    v = 0.5 * randn(*shape, n)
    if vr is not None:
        v = with_dot(v, r, torch.full(shape, vr, dtype=F64))
    return {
        "mean1": randn(*shape, n),
        "logvar1": randn(*shape, n),
        "v": v,
        "r": r,
        "mean2": randn(*shape, n),
        "logvar2": randn(*shape, n),
    }


def reference_kl_transition(
    inputs: dict[str, torch.Tensor], noise_std: float = 0.0
) -> torch.Tensor:
    """KL from full float64 covariance matrices via torch.distributions."""
    x = {k: t.to(F64) for k, t in inputs.items()}
    n = x["v"].shape[-1]
    A = torch.eye(n, dtype=F64) + x["v"].unsqueeze(-1) * x["r"].unsqueeze(-2)
    S1 = transition_covariance(A, x["logvar1"].exp(), noise_std)
    S1 = 0.5 * (S1 + S1.transpose(-1, -2))
    S2 = torch.diag_embed(x["logvar2"].exp())
    return kl_divergence(MultivariateNormal(x["mean1"], S1), MultivariateNormal(x["mean2"], S2))


# --- closed-form KLs ------------------------------------------------------------------------


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
@pytest.mark.parametrize("n", [1, 3, 6])
def test_kl_transition_matches_multivariate_normal_in_float64(
    shape: tuple[int, ...], n: int
) -> None:
    inputs = random_transition_inputs(shape, n)
    ours = kl_transition(**inputs)
    assert ours.shape == shape
    torch.testing.assert_close(ours, reference_kl_transition(inputs), rtol=1e-10, atol=1e-10)


# v^T r inside the model's range (|v^T r| < 0.95), at its edge, and beyond it: nearly singular
# A (1 + v^T r -> 0+) and det A < 0, where the closed form must use |det A|.
VR_VALUES = [0.5, 2.0, -0.5, -0.95, -0.99, -0.999, -0.9999, -1.01, -1.5, -3.0]


def rounding_bound(inputs: dict[str, torch.Tensor], eps: float) -> torch.Tensor:
    """How far any eps-precision evaluation of the KL may drift: rounding sum(v * r) moves
    1 + v^T r by about eps * sum|v_i r_i|, and the KL by that divided by |1 + v^T r|."""
    vr_abs = (inputs["v"] * inputs["r"]).abs().sum(-1).double()
    one_plus = (1 + (inputs["v"] * inputs["r"]).sum(-1)).abs().double()
    return 4 * eps * vr_abs / one_plus


@pytest.mark.parametrize("vr", VR_VALUES)
def test_kl_transition_stays_right_for_nearly_singular_and_flipped_a(vr: float) -> None:
    inputs = random_transition_inputs((32,), 3, vr=vr, seed=2)
    reference = reference_kl_transition(inputs)
    # The float64 reference factorises S1, whose condition number grows like 1/(1 + v^T r)^2:
    # at 1 + v^T r = 1e-4 it is itself only good to ~1e-8.
    torch.testing.assert_close(kl_transition(**inputs), reference, rtol=1e-7, atol=1e-10)
    # float32: within float32 rounding of the same inputs (the reference is float64 on the
    # rounded inputs), widening with 1 / |1 + v^T r| as any float32 evaluation must.
    inputs32 = {k: t.float() for k, t in inputs.items()}
    ours32 = kl_transition(**inputs32)
    assert ours32.dtype == torch.float32
    reference32 = reference_kl_transition(inputs32)
    error = (ours32.double() - reference32).abs()
    bound = 1e-6 * reference32.abs() + rounding_bound(inputs32, 2.0**-23)
    assert (error <= bound).all(), (error / bound).max()


@pytest.mark.parametrize("vr", [0.3, -0.9, -0.999, -2.0])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_kl_transition_with_additive_noise(vr: float, dtype: torch.dtype) -> None:
    inputs = {k: t.to(dtype) for k, t in random_transition_inputs((16,), 3, vr=vr).items()}
    ours = kl_transition(**inputs, noise_std=0.3)
    tol = {"rtol": 1e-10, "atol": 1e-10} if dtype == F64 else {"rtol": 2e-6, "atol": 2e-5}
    torch.testing.assert_close(ours.double(), reference_kl_transition(inputs, 0.3), **tol)


def test_log_abs_det_rank_one_matches_slogdet_with_finite_gradients() -> None:
    g = torch.Generator().manual_seed(3)
    r = torch.randn(len(VR_VALUES), 4, generator=g, dtype=F64)
    v0 = torch.randn(len(VR_VALUES), 4, generator=g, dtype=F64)
    v = with_dot(v0, r, torch.tensor(VR_VALUES, dtype=F64)).requires_grad_()
    ours = log_abs_det_rank_one(v, r)
    A = torch.eye(4, dtype=F64) + v.unsqueeze(-1) * r.unsqueeze(-2)
    reference = torch.linalg.slogdet(A).logabsdet
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)
    (grad,) = torch.autograd.grad(ours.sum(), v)
    (ref_grad,) = torch.autograd.grad(reference.sum(), v)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-8, atol=1e-10)
    tiny = torch.full((1, 2), 1e-5)
    assert log_abs_det_rank_one(tiny, tiny).item() == pytest.approx(2e-10, rel=1e-5)


# --- likelihoods ----------------------------------------------------------------------------


def test_bernoulli_nll_matches_the_formula_and_is_stable_for_huge_logits() -> None:
    g = torch.Generator().manual_seed(4)
    logits = 3 * torch.randn(5, 2, 4, 4, generator=g, dtype=F64)
    target = torch.rand(5, 2, 4, 4, generator=g, dtype=F64)
    p = torch.sigmoid(logits)
    reference = -(target * p.log() + (1 - target) * (1 - p).log()).flatten(1).sum(-1)
    torch.testing.assert_close(bernoulli_nll(logits, target), reference)
    huge = torch.tensor([[100.0, -100.0]])
    torch.testing.assert_close(
        bernoulli_nll(huge, torch.tensor([[0.0, 1.0]])), torch.tensor([200.0])
    )


def test_gaussian_nll_matches_normal_log_prob() -> None:
    g = torch.Generator().manual_seed(5)
    mean = torch.randn(3, 2, 4, 4, generator=g, dtype=F64)
    target = torch.rand(3, 2, 4, 4, generator=g, dtype=F64)
    log_std = torch.tensor(math.log(0.3), dtype=F64)
    reference = -Normal(mean, log_std.exp()).log_prob(target).flatten(1).sum(-1)
    torch.testing.assert_close(gaussian_nll(mean, log_std, target), reference)


# --- the composed loss ----------------------------------------------------------------------


def tiny_model(seed: int = 0, **overrides: object) -> E2C:
    torch.manual_seed(seed)
    kwargs: dict[str, object] = {
        "obs_shape": (2, 8, 8),
        "action_dim": 1,
        "latent_dim": 2,
        "hidden_sizes": (32,),
        "transition_hidden_sizes": (16,),
        "conv_channels": (4, 8),
        **overrides,
    }
    return E2C(ModelConfig(**kwargs))  # type: ignore[arg-type]


def blob_images(position: torch.Tensor) -> torch.Tensor:
    """Two 8x8 frames of a bright blob at ``position (B, 2)`` in [0, 1]^2, uint8."""
    grid = (torch.arange(8) + 0.5) / 8
    d2 = (grid.view(1, 8, 1) - position[:, 0].view(-1, 1, 1)).square() + (
        grid.view(1, 1, 8) - position[:, 1].view(-1, 1, 1)
    ).square()
    frame = (255 * torch.exp(-d2 / 0.02)).to(torch.uint8)
    return torch.stack([frame, frame], dim=1)


def blob_transitions(batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(batch, 2, generator=g)
    u = torch.rand(batch, 1, generator=g) * 2 - 1
    s_next = (s + 0.1 * torch.cat([u, -u], dim=1)).clamp(0, 1)
    return blob_images(s), u, blob_images(s_next)


def test_metric_names_are_stable_and_total_is_the_weighted_sum() -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(8)
    weights = LossWeights(reconstruction=0.5, prediction=2.0, kl_prior=3.0, kl_transition=0.7)
    loss, metrics = e2c_loss(model, x, u, x_next, weights)
    off_by_default = {"multi_step", "multi_step_prediction", "curvature", "move_gate"}
    terms = {f.name for f in dataclasses.fields(LossWeights)} - off_by_default
    assert {k for k in metrics if k.startswith("loss/")} == {"loss/total"} | {
        f"loss/{t}" for t in terms
    }
    assert {"diag/det_A_mean", "diag/abs_vr_mean", "diag/latent_std_mean"} <= set(metrics)
    assert all(not m.requires_grad and m.dim() == 0 for m in metrics.values())
    expected = sum(getattr(weights, t) * metrics[f"loss/{t}"] for t in terms)
    torch.testing.assert_close(loss.detach(), expected)
    assert torch.equal(metrics["loss/total"], loss.detach())
    assert 0.05 < metrics["diag/det_A_min"] <= metrics["diag/det_A_max"] < 1.95
    assert LossWeights().kl_transition == 1.0  # not E2C's 0.25: docs/benchmarks.md


def test_uint8_and_float_batches_give_the_same_loss() -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(8)
    torch.manual_seed(1)
    a, _ = e2c_loss(model, x, u, x_next)
    torch.manual_seed(1)
    b, _ = e2c_loss(model, x.float() / 255, u, x_next.float() / 255)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"condition_on_action": True, "transition_noise": 0.1},
        {
            "encoder": "conv",
            "decoder": "deconv",
            "likelihood": "gaussian",
            "learn_gaussian_std": True,
        },
    ],
)
def test_loss_backpropagates_to_every_parameter(overrides: dict[str, object]) -> None:
    model = tiny_model(**overrides)
    x, u, x_next = blob_transitions(8)
    loss, metrics = e2c_loss(model, x, u, x_next)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    if model.config.likelihood == "gaussian":
        assert metrics["diag/gaussian_std"].item() == pytest.approx(0.1)


def test_kl_transition_term_uses_the_closed_form_of_the_model_outputs() -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(16)
    weights = LossWeights(0.0, 0.0, 0.0, 1.0)
    torch.manual_seed(7)
    loss, _ = e2c_loss(model, x, u, x_next, weights)
    torch.manual_seed(7)
    q_t, q_next = model.encode(x), model.encode(x_next)
    z_t = q_t.sample()
    mean, lin = model.predict(q_t, z_t, u)
    S1 = transition_covariance(lin.A.double(), q_t.var.double())
    reference = kl_divergence(
        MultivariateNormal(mean.double(), 0.5 * (S1 + S1.transpose(-1, -2))),
        MultivariateNormal(q_next.mean.double(), torch.diag_embed(q_next.var.double())),
    )
    torch.testing.assert_close(loss.double(), reference.mean(), rtol=1e-5, atol=1e-5)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tensors this small gain nothing from intra-op threads, and on a busy machine waiting
    for them made the training test ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_a_few_hundred_adam_steps_lower_the_loss() -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(64)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(300):
        loss, _ = e2c_loss(model, x, u, x_next)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    first, last = sum(history[:20]) / 20, sum(history[-20:]) / 20
    assert last < 0.4 * first, (first, last)  # measured: 153 -> 44 nats


def test_roll_mean_repeats_the_mean_transition() -> None:
    model = tiny_model()
    z = torch.randn(5, 2)
    actions = torch.randn(5, 3, 1)
    rolled = roll_mean(model, z, actions)
    expected = z
    for k in range(3):
        expected = model.step(expected, actions[:, k])
        torch.testing.assert_close(rolled[:, k], expected)


def test_multi_step_error_is_the_mean_scaled_error_over_valid_windows() -> None:
    predicted = torch.tensor([[[1.0, 0.0], [2.0, 0.0]], [[9.0, 9.0], [9.0, 9.0]]])
    target_mean = torch.zeros(2, 2, 2)
    target_logvar = torch.log(torch.full((2, 2, 2), 4.0))  # std 2
    valid = torch.tensor([True, False])
    error = multi_step_error(predicted, target_mean, target_logvar, valid)
    # window 0: (0.5 * 1/4 + 0.5 * 4/4) / 2 steps = 0.3125, counted twice (2 rows, 1 valid)
    torch.testing.assert_close(error, torch.tensor([0.625, 0.0]))
    assert error.mean() == pytest.approx(0.3125)


def test_the_multi_step_term_rolls_on_and_ignores_rows_without_a_window() -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(6)
    future_obs, future_u = blob_transitions(12, seed=1)[0], torch.randn(12, 1)
    continuation = Continuation(
        future_u.view(6, 2, 1), future_obs.view(6, 2, 2, 8, 8), torch.tensor([1, 1, 1, 0, 0, 1]) > 0
    )
    weights = LossWeights(multi_step=0.5)
    torch.manual_seed(3)
    loss, metrics = e2c_loss(model, x, u, x_next, weights, continuation)
    terms = {f.name for f in dataclasses.fields(LossWeights)} - {
        "multi_step_prediction",
        "curvature",
        "move_gate",
    }
    assert "loss/multi_step_prediction" not in metrics  # weight 0: not computed
    assert "loss/curvature" not in metrics and "loss/move_gate" not in metrics
    expected = sum(getattr(weights, t) * metrics[f"loss/{t}"] for t in terms)
    torch.testing.assert_close(loss.detach(), expected)
    assert metrics["loss/multi_step"] > 0

    # rows 3 and 4 start no window: their futures do not matter
    other = Continuation(
        continuation.action.clone(), continuation.next_obs.clone(), continuation.valid
    )
    other.action[3:5] = 5.0
    other.next_obs[3:5] = 0.0
    torch.manual_seed(3)
    same, _ = e2c_loss(model, x, u, x_next, weights, other)
    torch.testing.assert_close(same, loss)

    # the encodings of the future are targets: no gradient flows through them
    model.zero_grad()
    future = continuation.next_obs.float().requires_grad_()
    torch.manual_seed(3)
    e2c_loss(model, x, u, x_next, weights, continuation._replace(next_obs=future))[0].backward()
    assert future.grad is None


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_the_multi_step_gradient_into_the_encoder_is_scaled(share: float) -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(6)
    future_obs, future_u = blob_transitions(12, seed=1)[0], torch.randn(12, 1)
    continuation = Continuation(
        future_u.view(6, 2, 1), future_obs.view(6, 2, 2, 8, 8), torch.ones(6, dtype=torch.bool)
    )
    only_multi_step = LossWeights(0.0, 0.0, 0.0, 0.0, multi_step=1.0)

    def gradients(encoder_gradient: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        torch.manual_seed(5)
        loss, _ = e2c_loss(model, x, u, x_next, only_multi_step, continuation, encoder_gradient)
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        return loss.detach(), grads

    full_loss, full = gradients(1.0)
    loss, scaled = gradients(share)
    torch.testing.assert_close(loss, full_loss)  # the same term, only its gradient differs
    encoder = [name for name in full if name.startswith("encoder.")]
    transition = [name for name in full if name.startswith("transition_net.")]
    assert encoder and transition
    assert any(full[name].abs().max() > 0 for name in encoder)
    for name in encoder:
        torch.testing.assert_close(
            scaled.get(name, torch.zeros_like(full[name])), share * full[name]
        )
    for name in transition:
        torch.testing.assert_close(scaled[name], full[name])


def test_random_step_prediction_scores_one_decoded_future_per_row() -> None:
    model = tiny_model()
    torch.manual_seed(0)
    rows, steps = 40, 3
    predicted = torch.randn(rows, steps, model.config.latent_dim)
    future = torch.randint(0, 256, (rows, steps, 2, 8, 8), dtype=torch.uint8)
    valid = torch.ones(rows, dtype=torch.bool)
    per_step = torch.stack(
        [
            observation_nll(model, model.decode(predicted[:, k]), future[:, k].float() / 255)
            for k in range(steps)
        ],
        dim=1,
    )
    nll = random_step_prediction_nll(model, predicted, future, valid, torch.float32)
    matches = (nll.unsqueeze(1) - per_step).abs() < 1e-3
    assert matches.any(1).all()  # each row scores one of its futures
    assert matches.any(0).all()  # and every k is drawn (40 rows, 3 steps)
    # rows that start no window count zero, the others are scaled by rows / #valid
    half = torch.arange(rows) % 2 == 0
    torch.manual_seed(1)
    masked = random_step_prediction_nll(model, predicted, future, half, torch.float32)
    torch.manual_seed(1)
    unmasked = random_step_prediction_nll(model, predicted, future, valid, torch.float32)
    torch.testing.assert_close(masked, unmasked * half * 2.0)


def test_the_multi_step_prediction_term_alone_trains_encoder_transition_and_decoder() -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(6)
    future_obs, future_u = blob_transitions(12, seed=1)[0], torch.randn(12, 1)
    continuation = Continuation(
        future_u.view(6, 2, 1), future_obs.view(6, 2, 2, 8, 8), torch.ones(6, dtype=torch.bool)
    )
    weights = LossWeights(0.0, 0.0, 0.0, 0.0, multi_step=0.0, multi_step_prediction=1.0)
    loss, metrics = e2c_loss(model, x, u, x_next, weights, continuation)
    assert "loss/multi_step" not in metrics
    torch.testing.assert_close(loss.detach(), metrics["loss/multi_step_prediction"])
    assert (
        metrics["loss/multi_step_prediction"] > 50
    )  # about 128 ln 2 nats from an untrained decoder
    loss.backward()
    for part in ("encoder.", "transition_net.", "decoder."):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(part)]
        assert any(g is not None and g.abs().max() > 0 for g in grads), part


# --- the curvature term -------------------------------------------------------------------------


class QuadraticDynamics:
    """f(z, u) = M (z, u) + 1/2 [(z, u)^T H_i (z, u)]_i: a stand-in for the model's ``step``."""

    def __init__(self, n: int, m: int, quadratic: bool, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.linear = torch.randn(n, n + m, generator=g, dtype=F64)
        hessians = torch.randn(n, n + m, n + m, generator=g, dtype=F64)
        self.hessians = (hessians + hessians.transpose(1, 2)) * float(quadratic)

    def step(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        x = torch.cat([z, u], dim=-1)
        return x @ self.linear.T + 0.5 * torch.einsum("bj,ijk,bk->bi", x, self.hessians, x)


def test_the_curvature_penalty_is_zero_for_affine_dynamics() -> None:
    affine = QuadraticDynamics(3, 2, quadratic=False)
    z, u = torch.randn(16, 3, dtype=F64), torch.randn(16, 2, dtype=F64)
    penalty = curvature_penalty(affine, z, u, 0.5)  # type: ignore[arg-type]
    torch.testing.assert_close(penalty, torch.zeros(16, dtype=F64), atol=1e-20, rtol=0)


@pytest.mark.parametrize("radius", [1e-2, 0.3, 2.0])
def test_the_curvature_penalty_is_a_quarter_of_the_squared_second_derivative(
    radius: float,
) -> None:
    dynamics = QuadraticDynamics(3, 2, quadratic=True)
    z, u = torch.randn(16, 3, dtype=F64), torch.randn(16, 2, dtype=F64)
    penalty = curvature_penalty(
        dynamics,  # type: ignore[arg-type]
        z,
        u,
        radius,
        generator=torch.Generator().manual_seed(7),
    )
    # the same unit directions, drawn as the penalty draws them: z's part, then u's
    g = torch.Generator().manual_seed(7)
    d = torch.randn(z.shape, dtype=F64, generator=g)
    e = torch.randn(u.shape, dtype=F64, generator=g)
    direction = torch.cat([d, e], dim=-1)
    second = torch.einsum("bj,ijk,bk->bi", direction, dynamics.hessians, direction)
    torch.testing.assert_close(penalty, 0.25 * second.square().sum(-1))  # for every radius
    with pytest.raises(ValueError, match="radius must be > 0"):
        curvature_penalty(dynamics, z, u, 0.0)  # type: ignore[arg-type]


def test_the_curvature_term_is_weighted_and_shapes_encoder_and_transition() -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(8)
    weights = LossWeights(0.0, 0.0, 0.0, 0.0, curvature=3.0)
    loss, metrics = e2c_loss(model, x, u, x_next, weights, curvature_radius=0.1)
    assert metrics["loss/curvature"] > 0
    torch.testing.assert_close(loss.detach(), 3.0 * metrics["loss/curvature"])
    loss.backward()
    for part in ("encoder.", "transition_net."):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(part)]
        assert any(g is not None and g.abs().max() > 0 for g in grads), part
    decoder = [p.grad for n, p in model.named_parameters() if n.startswith("decoder.")]
    assert all(g is None or g.abs().max() == 0 for g in decoder)  # images play no part


# --- move gate ------------------------------------------------------------------------------


def test_frame_change_per_push_is_the_summed_pixel_change_per_unit_push() -> None:
    x = torch.zeros(3, 2, 8, 8, dtype=torch.uint8)
    x_next = x.clone()
    x_next[0, 0, :2, :3] = 255  # 6 pixels changed fully
    x_next[1, 1, 4, 4] = 51  # one pixel by 0.2
    u = torch.tensor([[3.0, 4.0], [0.0, 0.5], [0.0, 0.0]])
    change = frame_change_per_push(x, x_next, u)
    torch.testing.assert_close(change, torch.tensor([6 / 5, 0.2 / 0.5, 0.0]))
    torch.testing.assert_close(frame_change_per_push(x_next, x, u), change)  # symmetric
    float_change = frame_change_per_push(x.float() / 255, x_next.float() / 255, u)
    torch.testing.assert_close(float_change, change)


def test_the_move_gate_term_is_the_bernoulli_nll_of_the_gate_at_the_sampled_latent() -> None:
    model = tiny_model(move_gate=True)
    x, u, x_next = blob_transitions(8)
    moved = torch.tensor([True, False] * 4)
    weights = LossWeights(move_gate=2.5)
    torch.manual_seed(3)
    loss, metrics = e2c_loss(model, x, u, x_next, weights, moved=moved)
    torch.manual_seed(3)  # the same draw of z_t as inside the loss
    q = model.encode(x)
    z_t = Gaussian(q.mean, q.logvar).sample()
    logit = model.transition_net.gate_logit(z_t, u)
    expected = -Bernoulli(logits=logit).log_prob(moved.float()).mean()
    torch.testing.assert_close(metrics["loss/move_gate"], expected.detach())
    terms = [f.name for f in dataclasses.fields(LossWeights) if f"loss/{f.name}" in metrics]
    total = sum(getattr(weights, t) * metrics[f"loss/{t}"] for t in terms)
    torch.testing.assert_close(loss.detach(), total)
    loss.backward()  # the term reaches the gate and, through z_t, the encoder
    gate_net = model.transition_net.gate_net
    assert gate_net is not None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gate_net.parameters())
    with pytest.raises(ValueError, match="needs the labels"):
        e2c_loss(model, x, u, x_next, weights)
    with pytest.raises(ValueError, match="no move gate"):
        e2c_loss(tiny_model(), x, u, x_next, weights, moved=moved)
