"""The PC3 objective: InfoNCE against a direct loop, every part on the same draws, its
gradients and its settings."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

from latentrl.errors import UserError
from latentrl.kinds import build_model, model_kind
from latentrl.losses import Continuation, LossConfig, PC3LossConfig, info_nce, pc3_objective
from latentrl.models import ModelConfig
from latentrl.models.pc3 import PC3

F64 = torch.float64


def tiny_pc3(seed: int = 0) -> PC3:
    torch.manual_seed(seed)
    config = ModelConfig(
        obs_shape=(2, 8, 8),
        action_dim=1,
        latent_dim=2,
        kind="pc3",
        hidden_sizes=(32,),
        transition_hidden_sizes=(16,),
    )
    model = build_model(config).to(F64)
    assert isinstance(model, PC3)
    return model


def info_nce_by_loop(scores: np.ndarray) -> np.ndarray:
    """-log [exp(s_ii) / (1/K sum_j exp(s_ij))], one row at a time."""
    k = len(scores)
    out = np.empty(k)
    for i in range(k):
        mean_negative = sum(math.exp(scores[i, j]) for j in range(k)) / k
        out[i] = -math.log(math.exp(scores[i, i]) / mean_negative)
    return out


def test_info_nce_matches_a_direct_loop_and_is_bounded_by_log_k() -> None:
    g = torch.Generator().manual_seed(0)
    scores = 3 * torch.randn(7, 7, generator=g, dtype=F64)
    np.testing.assert_allclose(info_nce(scores).numpy(), info_nce_by_loop(scores.numpy()))
    assert bool((info_nce(scores) >= -math.log(7)).all())
    # a perfect critic reaches the bound: the positive dwarfs every negative
    perfect = torch.full((7, 7), -1e3, dtype=F64).fill_diagonal_(0.0)
    torch.testing.assert_close(info_nce(perfect), torch.full((7,), -math.log(7), dtype=F64))
    # scores far from 0 stay finite (no exp overflow)
    assert bool(torch.isfinite(info_nce(scores * 1e4)).all())


def test_every_part_matches_a_direct_computation_on_the_same_draws(
    blob_transitions: Callable[..., tuple[torch.Tensor, ...]],
) -> None:
    model = tiny_pc3()
    x, u, x_next = blob_transitions(6)
    config = PC3LossConfig(lambda_cpc=2.0, lambda_c=0.5, lambda_cur=3.0, latent_noise=0.2)
    torch.manual_seed(4)
    total, metrics = pc3_objective(model, x, u, x_next, config)

    torch.manual_seed(4)
    with torch.no_grad():  # the direct computation, without a graph
        u = u.to(F64)
        z, encoded_next = model.encoder(x).mean, model.encoder(x_next).mean
        z_next = encoded_next + 0.2 * torch.randn_like(encoded_next)
        mean, std = model.step(z, u), model.process_noise.logvar().mul(0.5).exp()
        d = 0.1 * torch.randn(z.shape, dtype=F64)
        e = 0.1 * torch.randn(u.shape, dtype=F64)
        scores = np.array(
            [
                [float(Independent(Normal(mean[j], std), 1).log_prob(z_next[i])) for j in range(6)]
                for i in range(6)
            ]
        )
        cpc = info_nce_by_loop(scores).mean()
        consistency = -np.diag(scores).mean()
        A, B, _ = model.linearize(z, u)
        taylor = model.step(z + d, u + e) - mean
        taylor = taylor - torch.einsum("bij,bj->bi", A, d) - torch.einsum("bij,bj->bi", B, e)
        curvature = float(taylor.square().sum(-1).mean())
        center = float(z.mean(0).square().sum())

    assert float(metrics["loss/cpc"]) == pytest.approx(cpc, rel=1e-12)
    assert float(metrics["loss/consistency"]) == pytest.approx(consistency, rel=1e-12)
    assert float(metrics["loss/curvature"]) == pytest.approx(curvature, rel=1e-10)
    assert float(metrics["loss/center"]) == pytest.approx(center, rel=1e-12)
    assert float(metrics["diag/mutual_information"]) == pytest.approx(-cpc)
    assert -cpc <= math.log(6)
    weighted = 2.0 * cpc + 0.5 * consistency + 3.0 * curvature + 0.1 * center
    assert float(total.detach()) == pytest.approx(weighted, rel=1e-12)


def test_the_gradient_reaches_every_parameter_but_the_unused_log_variances(
    blob_transitions: Callable[..., tuple[torch.Tensor, ...]],
) -> None:
    x, u, x_next = blob_transitions(8)
    model = tiny_pc3()
    pc3_objective(model, x, u, x_next, PC3LossConfig())[0].backward()
    n = model.config.latent_dim
    last = model.encoder.head[-1]
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        grad = parameter.grad
        if parameter is last.weight or parameter is last.bias:
            assert grad[:n].abs().sum() > 0, name  # the mean's outputs train
            assert grad[n:].abs().sum() == 0, name  # the log-variance's never do
        else:
            assert grad.abs().sum() > 0, name


def test_without_latent_noise_the_next_latent_is_the_encoding(
    blob_transitions: Callable[..., tuple[torch.Tensor, ...]],
) -> None:
    x, u, x_next = blob_transitions(5)
    model = tiny_pc3()
    config = PC3LossConfig(latent_noise=0.0)
    first = pc3_objective(model, x, u, x_next, config)[1]
    second = pc3_objective(model, x, u, x_next, config)[1]
    for key in ("loss/cpc", "loss/consistency", "loss/center"):
        assert float(first[key]) == float(second[key]), key  # no draw in these any more
    noisy = pc3_objective(model, x, u, x_next, PC3LossConfig(latent_noise=0.5))[1]
    assert float(noisy["loss/consistency"]) != float(first["loss/consistency"])


def test_the_multi_step_consistency_matches_a_step_by_step_rollout(
    blob_transitions: Callable[..., tuple[torch.Tensor, ...]],
    continuation: Callable[..., Continuation],
) -> None:
    x, u, x_next = blob_transitions(4)
    model = tiny_pc3()
    valid = torch.tensor([True, False, True, True])
    steps = continuation(4, valid)
    one_step = PC3LossConfig(latent_noise=0.0)
    windowed = dataclasses.replace(one_step, window=3, lambda_multi=2.5)
    torch.manual_seed(3)  # the same curvature draws in both
    total_one, metrics_one = pc3_objective(model, x, u, x_next, one_step)
    torch.manual_seed(3)
    total, metrics = pc3_objective(model, x, u, x_next, windowed, steps)

    with torch.no_grad():  # z^ rolled one step at a time, in units of F's std
        variance = model.process_noise.logvar().exp()
        errors = []
        for i in valid.nonzero().flatten().tolist():
            z = model.step(model.encoder(x[i : i + 1]).mean, u[i : i + 1].to(F64))
            per_step = []
            for k in range(2):
                z = model.step(z, steps.action[i : i + 1, k].to(F64))
                target = model.encoder(steps.next_obs[i : i + 1, k]).mean
                per_step.append(float(0.5 * ((z - target).square() / variance).sum()))
            errors.append(sum(per_step) / 2)
    expected = sum(errors) / len(errors)  # the mean over the windows, not over every row
    assert float(metrics["loss/multi_step"]) == pytest.approx(expected, rel=1e-10)
    assert "loss/multi_step" not in metrics_one
    assert float((total - total_one).detach()) == pytest.approx(2.5 * expected, rel=1e-10)


def test_the_multi_step_targets_get_no_gradient_and_the_encoder_gets_it_through_z_t(
    blob_transitions: Callable[..., tuple[torch.Tensor, ...]],
    continuation: Callable[..., Continuation],
) -> None:
    x, u, x_next = blob_transitions(3)
    model = tiny_pc3()
    steps = continuation(3)
    # images as floats in [0, 1], so that they can ask for a gradient
    future = (steps.next_obs.to(F64) / 255).requires_grad_()
    x_t = (x.to(F64) / 255).requires_grad_()
    # the multi-step consistency alone
    config = PC3LossConfig(
        window=3, lambda_cpc=0.0, lambda_c=0.0, lambda_cur=0.0, center_weight=0.0
    )
    total, _ = pc3_objective(model, x_t, u, x_next, config, steps._replace(next_obs=future))
    total.backward()
    assert future.grad is None  # the encoded future is a fixed target
    assert x_t.grad is not None and float(x_t.grad.abs().sum()) > 0


def test_without_the_steps_after_each_row_the_window_is_left_out_and_sets_the_kinds_window(
    blob_transitions: Callable[..., tuple[torch.Tensor, ...]],
) -> None:
    x, u, x_next = blob_transitions(3)
    model = tiny_pc3()
    torch.manual_seed(1)
    total_one = pc3_objective(model, x, u, x_next, PC3LossConfig())[0]
    torch.manual_seed(1)
    total, metrics = pc3_objective(model, x, u, x_next, PC3LossConfig(window=4))
    assert torch.equal(total, total_one) and "loss/multi_step" not in metrics
    kind = model_kind("pc3")
    assert kind.window(LossConfig()) == 1
    assert kind.window(LossConfig(pc3=PC3LossConfig(window=8))) == 8


def test_the_kind_reads_loss_pc3_and_has_no_decoder() -> None:
    kind = model_kind("pc3")
    assert kind.loss_sections() == ("pc3", "goal_cost") and kind.model_class is PC3
    assert not kind.model_class.has_decoder and not kind.whole_windows


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lambda_cpc", -1.0, r"loss\.pc3\.lambda_cpc must be a finite number >= 0"),
        ("center_weight", True, r"loss\.pc3\.center_weight must be a finite number"),
        ("latent_noise", -0.1, r"loss\.pc3\.latent_noise must be a finite number >= 0"),
        ("curvature_radius", math.inf, r"loss\.pc3\.curvature_radius must be a finite number > 0"),
        ("window", 0, r"loss\.pc3\.window must be an int >= 1"),
        ("lambda_multi", -2.0, r"loss\.pc3\.lambda_multi must be a finite number >= 0"),
    ],
)
def test_bad_settings_are_user_errors(field: str, value: object, message: str) -> None:
    with pytest.raises(UserError, match=message):
        dataclasses.replace(PC3LossConfig(), **{field: value})
