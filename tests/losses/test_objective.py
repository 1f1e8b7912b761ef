"""The composed objective: its terms, weights, metric keys and gradients."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch

from latentrl.kinds import EVERY_KIND_READS, MODEL_KINDS
from latentrl.losses import (
    TERMS,
    Continuation,
    CurvatureConfig,
    KLTransitionConfig,
    LossConfig,
    MultiStepConfig,
    MultiStepPredictionConfig,
    active_terms,
    objective,
)
from latentrl.models import E2C

E2C_TERMS = ("reconstruction", "prediction", "kl_prior", "kl_transition")


def weights(**values: float) -> LossConfig:
    """A LossConfig with the given weights and the other sections' defaults."""
    defaults = LossConfig()
    return LossConfig(
        **{
            name: dataclasses.replace(getattr(defaults, name), weight=value)
            for name, value in values.items()
        }
    )


def test_the_terms_are_the_config_sections_in_order() -> None:
    sections = [f.name for f in dataclasses.fields(LossConfig)]
    assert [spec.name for spec in TERMS] == sections[: len(TERMS)]
    # after E2C's terms come the sections of the other model kinds, one each, then those
    # every kind reads
    kinds = {kind.loss_section for kind in MODEL_KINDS.values()} - {None}
    shared = len(EVERY_KIND_READS)
    assert set(sections[len(TERMS) : -shared]) == kinds
    assert tuple(sections[-shared:]) == EVERY_KIND_READS
    assert [spec.name for spec in TERMS if not spec.optional] == list(E2C_TERMS)


def test_defaults_are_e2c_with_the_multi_step_term_off() -> None:
    config = LossConfig()
    assert [getattr(config, name).weight for name in E2C_TERMS] == [1.0, 1.0, 1.0, 1.0]
    assert config.kl_transition == KLTransitionConfig(weight=1.0)  # not E2C's 0.25
    assert config.multi_step == MultiStepConfig(weight=1.0, horizon=1, encoder_gradient=1.0)
    assert config.multi_step_prediction == MultiStepPredictionConfig(weight=0.0)
    assert config.curvature == CurvatureConfig(weight=0.0, radius=0.2)
    assert [s.name for s in active_terms(config, windows=False)] == list(E2C_TERMS)
    assert [s.name for s in active_terms(config, windows=True)] == [*E2C_TERMS, "multi_step"]
    everything = weights(multi_step_prediction=1.0, curvature=2.0)
    assert [s.name for s in active_terms(everything, windows=False)] == [*E2C_TERMS, "curvature"]
    assert len(active_terms(everything, windows=True)) == len(TERMS)


def test_metric_names_are_stable_and_total_is_the_weighted_sum(
    tiny_model: Callable[..., E2C], blob_transitions: Callable[..., tuple[torch.Tensor, ...]]
) -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(8)
    config = weights(reconstruction=0.5, prediction=2.0, kl_prior=3.0, kl_transition=0.7)
    loss, metrics = objective(model, x, u, x_next, config)
    assert list(metrics)[:5] == ["loss/total", *(f"loss/{t}" for t in E2C_TERMS)]
    assert {k for k in metrics if k.startswith("loss/")} == {"loss/total"} | {
        f"loss/{t}" for t in E2C_TERMS
    }
    assert set(metrics) - {k for k in metrics if k.startswith("loss/")} == {
        "diag/det_A_mean",
        "diag/det_A_min",
        "diag/det_A_max",
        "diag/abs_vr_mean",
        "diag/latent_std_mean",
        "diag/prediction_error",
    }
    assert all(not m.requires_grad and m.dim() == 0 for m in metrics.values())
    expected = sum(getattr(config, t).weight * metrics[f"loss/{t}"] for t in E2C_TERMS)
    torch.testing.assert_close(loss.detach(), expected)
    assert torch.equal(metrics["loss/total"], loss.detach())
    assert 0.05 < metrics["diag/det_A_min"] <= metrics["diag/det_A_max"] < 1.95


def test_e2c_terms_are_reported_at_weight_zero(
    tiny_model: Callable[..., E2C], blob_transitions: Callable[..., tuple[torch.Tensor, ...]]
) -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(8)
    torch.manual_seed(2)
    loss, metrics = objective(model, x, u, x_next, weights(reconstruction=0.0, kl_prior=0.0))
    assert metrics["loss/reconstruction"] > 10 and metrics["loss/kl_prior"] > 0
    expected = metrics["loss/prediction"] + metrics["loss/kl_transition"]
    torch.testing.assert_close(loss.detach(), expected)


def test_uint8_and_float_batches_give_the_same_loss(
    tiny_model: Callable[..., E2C], blob_transitions: Callable[..., tuple[torch.Tensor, ...]]
) -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(8)
    torch.manual_seed(1)
    a, _ = objective(model, x, u, x_next)
    torch.manual_seed(1)
    b, _ = objective(model, x.float() / 255, u, x_next.float() / 255)
    torch.testing.assert_close(a, b)


def test_batches_of_other_shapes_are_refused(
    tiny_model: Callable[..., E2C], blob_transitions: Callable[..., tuple[torch.Tensor, ...]]
) -> None:
    x, u, x_next = blob_transitions(8)
    with pytest.raises(ValueError, match=r"x_t \(8, 2, 8, 8\) and x_next \(7, 2, 8, 8\) differ"):
        objective(tiny_model(), x, u, x_next[:7])


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
def test_loss_backpropagates_to_every_parameter(
    overrides: dict[str, object],
    tiny_model: Callable[..., E2C],
    blob_transitions: Callable[..., tuple[torch.Tensor, ...]],
) -> None:
    model = tiny_model(**overrides)
    x, u, x_next = blob_transitions(8)
    loss, metrics = objective(model, x, u, x_next)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    if model.config.likelihood == "gaussian":
        assert metrics["diag/gaussian_std"].item() == pytest.approx(0.1)


def test_every_term_adds_its_weighted_mean_and_draws_in_a_fixed_order(
    tiny_model: Callable[..., E2C],
    blob_transitions: Callable[..., tuple[torch.Tensor, ...]],
    continuation: Callable[..., Continuation],
) -> None:
    model = tiny_model(transition_noise=0.05)
    x, u, x_next = blob_transitions(6)
    windows = continuation(6)
    config = weights(multi_step=0.5, multi_step_prediction=0.25, curvature=2.0)
    config = dataclasses.replace(
        config, multi_step=dataclasses.replace(config.multi_step, horizon=3)
    )
    torch.manual_seed(3)
    loss, metrics = objective(model, x, u, x_next, config, windows)
    names = [spec.name for spec in TERMS]
    assert [k for k in metrics if k.startswith("loss/")] == ["loss/total"] + [
        f"loss/{n}" for n in names
    ]
    expected = sum(getattr(config, n).weight * metrics[f"loss/{n}"] for n in names)
    torch.testing.assert_close(loss.detach(), expected)
    torch.manual_seed(3)
    again, same = objective(model, x, u, x_next, config, windows)
    assert torch.equal(again, loss) and all(torch.equal(same[k], metrics[k]) for k in metrics)


def test_a_few_hundred_adam_steps_lower_the_loss(
    tiny_model: Callable[..., E2C], blob_transitions: Callable[..., tuple[torch.Tensor, ...]]
) -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(64)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(300):
        loss, _ = objective(model, x, u, x_next)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    first, last = sum(history[:20]) / 20, sum(history[-20:]) / 20
    assert last < 0.4 * first, (first, last)  # measured: 153 -> 44 nats
