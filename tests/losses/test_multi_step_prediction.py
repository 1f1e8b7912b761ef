"""The multi-step prediction term: one decoded future per window."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch

from latentrl.losses import (
    Continuation,
    LossConfig,
    MultiStepConfig,
    MultiStepPredictionConfig,
    forward_pass,
    objective,
    observation_nll,
    random_step_prediction_nll,
)
from latentrl.losses import multi_step_prediction as term_module
from latentrl.models import E2C


def test_random_step_prediction_scores_one_decoded_future_per_row(
    tiny_model: Callable[..., E2C],
) -> None:
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


def test_the_term_needs_the_rollout(
    tiny_model: Callable[..., E2C], blob_transitions: Callable[..., tuple[torch.Tensor, ...]]
) -> None:
    fp = forward_pass(tiny_model(), *blob_transitions(4))
    with pytest.raises(ValueError, match="needs the forward pass with_rollout"):
        term_module.term(fp, MultiStepPredictionConfig(weight=1.0))


def test_the_multi_step_prediction_term_alone_trains_encoder_transition_and_decoder(
    tiny_model: Callable[..., E2C],
    blob_transitions: Callable[..., tuple[torch.Tensor, ...]],
    continuation: Callable[..., Continuation],
) -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(6)
    defaults = LossConfig()
    zeros = {
        name: dataclasses.replace(getattr(defaults, name), weight=0.0)
        for name in ("reconstruction", "prediction", "kl_prior", "kl_transition")
    }
    config = LossConfig(
        **zeros,  # type: ignore[arg-type]
        multi_step=MultiStepConfig(weight=0.0, horizon=3),
        multi_step_prediction=MultiStepPredictionConfig(weight=1.0),
    )
    loss, metrics = objective(model, x, u, x_next, config, continuation(6))
    assert "loss/multi_step" not in metrics
    torch.testing.assert_close(loss.detach(), metrics["loss/multi_step_prediction"])
    # about 128 ln 2 nats from an untrained decoder
    assert metrics["loss/multi_step_prediction"] > 50
    loss.backward()
    for part in ("encoder.", "transition_net.", "decoder."):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(part)]
        assert any(g is not None and g.abs().max() > 0 for g in grads), part
