"""E2C model: config validation, shapes, the A = I + v r^T parametrisation, dynamics protocol."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from latentrl.errors import UserError
from latentrl.models import (
    E2C,
    MIN_GAUSSIAN_STD,
    Gaussian,
    ModelConfig,
    ModelConfigError,
    apply_local_linear,
    bound_norm,
    to_unit_interval,
    transition_covariance,
)

TINY = {"hidden_sizes": (16,), "transition_hidden_sizes": (8, 8), "conv_channels": (4, 8)}


def tiny_model(seed: int = 0, **overrides: object) -> E2C:
    torch.manual_seed(seed)
    kwargs: dict[str, object] = {"obs_shape": (2, 8, 8), "action_dim": 2, **TINY}
    kwargs.update(overrides)
    return E2C(ModelConfig(**kwargs))  # type: ignore[arg-type]


def random_images(batch: int, shape: tuple[int, ...] = (2, 8, 8), seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, *shape), dtype=torch.uint8, generator=g)


# --- config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"action_dim": 0}, "action_dim"),
        ({"obs_shape": (2, 8)}, "obs_shape"),
        ({"encoder": "resnet"}, "encoder"),
        ({"likelihood": "laplace"}, "likelihood"),
        ({"encoder": "conv", "obs_shape": (2, 50, 48)}, "divisible"),
        ({"decoder": "deconv", "obs_shape": (2, 48, 40), "conv_channels": (8,) * 4}, "divisible"),
        ({"encoder": "conv", "conv_channels": ()}, "conv_channels"),
        ({"hidden_sizes": (16, 0)}, "hidden_sizes"),
        ({"max_abs_vr": 1.0}, "max_abs_vr"),
        ({"logvar_range": (6.0, -12.0)}, "logvar_range"),
        ({"transition_noise": -0.1}, "transition_noise"),
        ({"gaussian_std": 0.0}, "gaussian_std"),
        ({"gaussian_std": 1e-3, "learn_gaussian_std": True}, "gaussian_std"),
        ({"global_transition": True, "condition_on_action": True}, "drop condition_on_action"),
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(
    overrides: dict[str, object], fragment: str
) -> None:
    kwargs: dict[str, object] = {"obs_shape": (2, 48, 48), "action_dim": 1, **overrides}
    with pytest.raises(ModelConfigError, match=fragment) as info:
        ModelConfig(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError) and isinstance(info.value, UserError)


def test_config_is_frozen_and_turns_lists_into_tuples() -> None:
    config = ModelConfig(obs_shape=[2, 48, 48], action_dim=1, hidden_sizes=[8, 8])  # type: ignore[arg-type]
    assert config.obs_shape == (2, 48, 48) and config.hidden_sizes == (8, 8)
    assert ModelConfig(**dataclasses.asdict(config)) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.latent_dim = 4  # type: ignore[misc]


def test_default_config_is_the_e2c_pendulum_model() -> None:
    model = E2C(ModelConfig(obs_shape=(2, 48, 48), action_dim=1))
    pixels = 2 * 48 * 48
    mlp = (pixels * 800 + 800) + (800 * 800 + 800)
    encoder = mlp + 800 * 6 + 6
    decoder = (3 * 800 + 800) + (800 * 800 + 800) + (800 * pixels + pixels)
    transition = (3 * 100 + 100) + (100 * 100 + 100) + (100 * 12 + 12)
    assert model.num_parameters() == encoder + decoder + transition


# --- shapes and inputs ----------------------------------------------------------------------


@pytest.mark.parametrize(("encoder", "decoder"), [("mlp", "mlp"), ("conv", "deconv")])
def test_every_method_returns_the_documented_shapes(encoder: str, decoder: str) -> None:
    model = tiny_model(encoder=encoder, decoder=decoder, latent_dim=3)
    batch, n, m = 5, 3, 2
    q = model.encode(random_images(batch))
    assert q.mean.shape == q.logvar.shape == q.std.shape == (batch, n)
    assert q.mean.dtype == torch.float32
    z, u = q.sample(), torch.randn(batch, m)
    assert model.decode(z).shape == (batch, 2, 8, 8)
    lin = model.transition(z, u)
    assert lin.A.shape == (batch, n, n) and lin.B.shape == (batch, n, m)
    assert lin.o.shape == (batch, n) and lin.V.shape == lin.R.shape == (batch, n, 1)
    mean, lin2 = model.predict(q, z, u)
    assert mean.shape == (batch, n) and torch.equal(lin2.A, lin.A)
    assert model.step(z, u).shape == (batch, n)
    for kind in ("exact", "e2c"):
        A, B, c = model.linearize(z, u, jacobian=kind)  # type: ignore[arg-type]
        assert A.shape == (batch, n, n) and B.shape == (batch, n, m) and c.shape == (batch, n)
    assert transition_covariance(lin.A, q.var, 0.1).shape == (batch, n, n)


def test_uint8_and_float_images_give_the_same_encoding() -> None:
    model = tiny_model()
    x = random_images(4)
    a, b = model.encode(x), model.encode(x.float() / 255.0)
    torch.testing.assert_close(a.mean, b.mean, rtol=0, atol=0)
    torch.testing.assert_close(a.logvar, b.logvar, rtol=0, atol=0)
    assert to_unit_interval(torch.full((1,), 255, dtype=torch.uint8)).item() == 1.0
    with pytest.raises(TypeError, match="uint8"):
        to_unit_interval(torch.zeros(1, dtype=torch.int64))


def test_wrong_shapes_raise_a_clear_message() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match="obs_shape"):
        model.encode(random_images(3, shape=(2, 8, 9)))
    with pytest.raises(ValueError, match="action_dim"):
        model.step(torch.zeros(3, 3), torch.zeros(3, 1))


def test_logvar_stays_inside_its_range_for_extreme_inputs() -> None:
    model = tiny_model()
    with torch.no_grad():
        model.encoder.head[-1].bias.copy_(torch.tensor([0, 0, 0, 1e6, -1e6, 0.0]))
    logvar = model.encode(random_images(3)).logvar
    assert logvar.max() <= 6.0 and logvar.min() >= -12.0
    assert torch.isfinite(logvar).all()


def test_gaussian_sample_has_the_right_moments_and_gradients() -> None:
    torch.manual_seed(0)
    mean = torch.tensor([[1.0, -2.0]]).expand(200_000, 2).clone().requires_grad_()
    logvar = torch.tensor([[0.0, math.log(0.25)]]).expand(200_000, 2).clone().requires_grad_()
    z = Gaussian(mean, logvar).sample()
    torch.testing.assert_close(z.mean(0), torch.tensor([1.0, -2.0]), atol=0.01, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 0.5]), atol=0.01, rtol=0)
    z.sum().backward()
    assert mean.grad is not None and logvar.grad is not None and logvar.grad.abs().sum() > 0


# --- the A = I + v r^T parametrisation ------------------------------------------------------


def test_bound_norm_is_the_smooth_squash_and_survives_huge_inputs() -> None:
    x = torch.randn(50, 4, dtype=torch.float64) * 3
    expected = 0.5 * x / torch.sqrt(1 + x.square().sum(-1, keepdim=True))
    torch.testing.assert_close(bound_norm(x, 0.5), expected, rtol=1e-12, atol=1e-14)
    huge = torch.tensor([[1e30, -1e30, 3.0], [1e38, 0.0, 0.0], [0.0, 0.0, 0.0]])
    huge.requires_grad_()
    y = bound_norm(huge, math.sqrt(0.95))
    assert torch.isfinite(y).all() and (y.norm(dim=-1) <= math.sqrt(0.95) * (1 + 1e-6)).all()
    y.sum().backward()
    assert huge.grad is not None and torch.isfinite(huge.grad).all()


@pytest.mark.parametrize("magnitude", [1.0, 1e3, 1e8, 1e30])
def test_det_a_stays_positive_for_extreme_network_outputs(magnitude: float) -> None:
    model = tiny_model(latent_dim=3)
    n = 3
    with torch.no_grad():
        last = model.transition_net.net[-1]
        last.weight.mul_(magnitude)
        # v and r pointing opposite ways: the most negative v^T r the outputs can ask for.
        last.bias[:n] = magnitude
        last.bias[n : 2 * n] = -magnitude
    z, u = torch.randn(64, n), torch.randn(64, 2)
    lin = model.transition(z, u)
    det = torch.linalg.det(lin.A.double())
    one_plus_rv = 1 + (lin.V * lin.R).sum((-1, -2))
    assert torch.isfinite(lin.A).all()
    assert (one_plus_rv > 1 - 0.95 - 1e-6).all() and (one_plus_rv < 1.95 + 1e-6).all()
    torch.testing.assert_close(det, one_plus_rv.double(), rtol=1e-5, atol=1e-6)
    assert (det > 0).all()


@pytest.mark.parametrize("magnitude", [1.0, 1e3, 1e30])
def test_a_of_rank_two_is_i_plus_v_r_transposed_with_det_in_its_bounds(magnitude: float) -> None:
    n, k, bound = 4, 2, 0.95
    model = tiny_model(latent_dim=n, transition_rank=k)
    with torch.no_grad():
        model.transition_net.net[-1].weight.mul_(magnitude)
    z, u = torch.randn(64, n), torch.randn(64, 2)
    lin = model.transition(z, u)
    assert lin.V.shape == lin.R.shape == (64, n, k) and lin.A.shape == (64, n, n)
    torch.testing.assert_close(lin.A, torch.eye(n) + lin.V @ lin.R.transpose(-1, -2))
    low_rank = lin.V.double() @ lin.R.double().transpose(-1, -2)
    assert torch.linalg.matrix_rank(low_rank).max().item() == k
    spectral = torch.linalg.matrix_norm((lin.R.transpose(-1, -2) @ lin.V).double(), ord=2)
    assert (spectral < bound + 1e-6).all()
    det = torch.linalg.det(lin.A.double())
    assert (det > (1 - bound) ** k - 1e-6).all() and (det < (1 + bound) ** k + 1e-6).all()


def test_a_transition_rank_above_the_latent_size_is_refused() -> None:
    with pytest.raises(ModelConfigError, match="transition_rank 4 exceeds latent_dim 3"):
        tiny_model(latent_dim=3, transition_rank=4)


def test_a_can_contract_and_expand() -> None:
    model = tiny_model(latent_dim=2)
    with torch.no_grad():
        last = model.transition_net.net[-1]
        last.weight.zero_()
        last.bias[:4] = torch.tensor([10.0, 0.0, -10.0, 0.0])  # v ~ e1, r ~ -e1
    lin = model.transition(torch.zeros(1, 2), torch.zeros(1, 2))
    assert 0.05 < torch.linalg.det(lin.A).item() < 0.06
    with torch.no_grad():
        last.bias[2] = 10.0
    lin = model.transition(torch.zeros(1, 2), torch.zeros(1, 2))
    assert 1.94 < torch.linalg.det(lin.A).item() < 1.95


# --- dynamics protocol ----------------------------------------------------------------------


TRANSITION_VARIANTS = [{}, {"condition_on_action": True}]


@pytest.mark.parametrize("variant", TRANSITION_VARIANTS)
def test_step_is_the_local_linear_map_at_z_itself(variant: dict[str, bool]) -> None:
    model = tiny_model(**variant)
    z, u = torch.randn(6, 3), torch.randn(6, 2)
    lin = model.transition(z, u)
    expected = (lin.A @ z.unsqueeze(-1)).squeeze(-1) + (lin.B @ u.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(model.step(z, u), expected + lin.o)
    torch.testing.assert_close(apply_local_linear(lin, z, u), expected + lin.o)


@pytest.mark.parametrize("variant", TRANSITION_VARIANTS)
def test_exact_linearization_is_the_jacobian_of_step(variant: dict[str, bool]) -> None:
    model = tiny_model(**variant).double()
    z, u = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    A, B, c = model.linearize(z, u)
    for i in range(5):
        J_z, J_u = torch.autograd.functional.jacobian(
            lambda zi, ui: model.step(zi[None], ui[None])[0], (z[i], u[i])
        )
        torch.testing.assert_close(A[i], J_z, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(B[i], J_u, rtol=1e-10, atol=1e-12)
    f = model.step(z, u)
    torch.testing.assert_close(c, f - (A @ z[..., None])[..., 0] - (B @ u[..., None])[..., 0])


def test_a_global_transition_is_one_linear_map_that_trains() -> None:
    model = tiny_model(global_transition=True).double()
    z, u = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    lin = model.transition(z, u)
    for M in (lin.A, lin.B, lin.o):  # the same for every z
        torch.testing.assert_close(M, M[:1].expand_as(M))
    A, B, _ = model.linearize(z, u)  # exact Jacobians: the same matrices
    torch.testing.assert_close(A, lin.A)
    torch.testing.assert_close(B, lin.B)
    assert [name for name, _ in model.transition_net.named_parameters()] == ["constant"]
    model.step(z, u).square().sum().backward()
    constant = model.transition_net.constant
    assert constant is not None and constant.grad is not None and constant.grad.abs().min() > 0


def test_exact_linearization_works_in_float32_and_without_grad() -> None:
    model = tiny_model()
    z, u = torch.randn(4, 3), torch.randn(4, 2)
    with torch.no_grad():
        A, B, c = model.linearize(z, u)
    assert not A.requires_grad and A.dtype == torch.float32
    reference = copy.deepcopy(model).double().linearize(z.double(), u.double())
    for ours, ref in zip((A, B, c), reference, strict=True):
        torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-6)


def test_e2c_linearization_returns_the_network_matrices() -> None:
    model = tiny_model()
    z, u = torch.randn(4, 3), torch.randn(4, 2)
    lin = model.transition(z, u)
    A, B, c = model.linearize(z, u, jacobian="e2c")
    assert torch.equal(A, lin.A) and torch.equal(B, lin.B) and torch.equal(c, lin.o)
    A_exact, B_exact, _ = model.linearize(z, u)
    # Without u in the network, f is linear in u: both give the same B, but not the same A.
    torch.testing.assert_close(B_exact, B)
    assert (A_exact - A).abs().max() > 1e-3
    default_e2c = E2C(model.config, jacobian="e2c")
    default_e2c.load_state_dict(model.state_dict())
    assert torch.equal(default_e2c.linearize(z, u)[0], lin.A)
    with pytest.raises(ValueError, match="exact"):
        model.linearize(z, u, jacobian="numeric")  # type: ignore[arg-type]


# --- decoder likelihoods --------------------------------------------------------------------


def test_gaussian_decoder_with_fixed_std() -> None:
    model = tiny_model(likelihood="gaussian", gaussian_std=0.2)
    assert model.decoder.log_std().item() == pytest.approx(math.log(0.2))
    assert all("log_std" not in name for name, _ in model.named_parameters())
    assert "decoder.raw_log_std" in model.state_dict()


def test_gaussian_decoder_with_learned_std_starts_at_the_given_std_and_keeps_a_floor() -> None:
    model = tiny_model(likelihood="gaussian", gaussian_std=0.2, learn_gaussian_std=True)
    assert model.decoder.log_std().item() == pytest.approx(math.log(0.2), rel=1e-6)
    assert any(name == "decoder.raw_log_std" for name, _ in model.named_parameters())
    with torch.no_grad():
        model.decoder.raw_log_std.fill_(-1e4)
    assert model.decoder.log_std().item() == pytest.approx(math.log(MIN_GAUSSIAN_STD))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_model_runs_on_cuda() -> None:
    model = tiny_model(encoder="conv", decoder="deconv").cuda()
    q = model.encode(random_images(4).cuda())
    z, u = q.sample(), torch.randn(4, 2, device="cuda")
    assert model.decode(z).is_cuda
    A, B, c = model.linearize(z, u)
    assert A.is_cuda and B.is_cuda and c.is_cuda
