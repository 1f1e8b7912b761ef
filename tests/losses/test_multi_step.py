"""The rollout over a window and the multi-step term."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch

from latentrl.losses import (
    Continuation,
    LossConfig,
    MultiStepConfig,
    forward_pass,
    multi_step_error,
    objective,
    roll_mean,
    with_rollout,
)
from latentrl.losses import multi_step as multi_step_module
from latentrl.models import E2C


def only(**sections: object) -> LossConfig:
    """E2C's terms at weight 0 and the given sections."""
    defaults = LossConfig()
    zeros = {
        name: dataclasses.replace(getattr(defaults, name), weight=0.0)
        for name in ("reconstruction", "prediction", "kl_prior", "kl_transition")
    }
    return LossConfig(**(zeros | sections))  # type: ignore[arg-type]


def test_roll_mean_repeats_the_mean_transition(tiny_model: Callable[..., E2C]) -> None:
    model = tiny_model()
    z = torch.randn(5, 2)
    actions = torch.randn(5, 3, 1)
    rolled = roll_mean(model, z, actions)
    expected = z
    for k in range(3):
        expected = model.step(expected, actions[:, k])
        torch.testing.assert_close(rolled[:, k], expected)


def test_the_rollout_starts_at_the_predicted_sample(
    tiny_model: Callable[..., E2C],
    blob_transitions: Callable[..., tuple[torch.Tensor, ...]],
    continuation: Callable[..., Continuation],
) -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(6)
    windows = continuation(6)
    fp = forward_pass(model, x, u, x_next)
    assert fp.rollout is None and fp.continuation is None
    rolled = with_rollout(fp, windows, encoder_gradient=0.5)
    assert rolled.continuation is windows and rolled.rollout is not None
    torch.testing.assert_close(rolled.rollout, roll_mean(model, fp.z_hat, windows.action))


def test_multi_step_error_is_the_mean_scaled_error_over_valid_windows() -> None:
    predicted = torch.tensor([[[1.0, 0.0], [2.0, 0.0]], [[9.0, 9.0], [9.0, 9.0]]])
    target_mean = torch.zeros(2, 2, 2)
    target_logvar = torch.log(torch.full((2, 2, 2), 4.0))  # std 2
    valid = torch.tensor([True, False])
    error = multi_step_error(predicted, target_mean, target_logvar, valid)
    # window 0: (0.5 * 1/4 + 0.5 * 4/4) / 2 steps = 0.3125, counted twice (2 rows, 1 valid)
    torch.testing.assert_close(error, torch.tensor([0.625, 0.0]))
    assert error.mean() == pytest.approx(0.3125)


def test_the_term_needs_the_rollout(
    tiny_model: Callable[..., E2C], blob_transitions: Callable[..., tuple[torch.Tensor, ...]]
) -> None:
    fp = forward_pass(tiny_model(), *blob_transitions(4))
    with pytest.raises(ValueError, match="needs the forward pass with_rollout"):
        multi_step_module.term(fp, MultiStepConfig())


def test_the_multi_step_term_rolls_on_and_ignores_rows_without_a_window(
    tiny_model: Callable[..., E2C],
    blob_transitions: Callable[..., tuple[torch.Tensor, ...]],
    continuation: Callable[..., Continuation],
) -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(6)
    windows = continuation(6, torch.tensor([1, 1, 1, 0, 0, 1]) > 0)
    config = LossConfig(multi_step=MultiStepConfig(weight=0.5, horizon=3))
    torch.manual_seed(3)
    loss, metrics = objective(model, x, u, x_next, config, windows)
    assert "loss/multi_step_prediction" not in metrics  # weight 0: not computed
    assert "loss/curvature" not in metrics
    names = ("reconstruction", "prediction", "kl_prior", "kl_transition", "multi_step")
    expected = sum(getattr(config, t).weight * metrics[f"loss/{t}"] for t in names)
    torch.testing.assert_close(loss.detach(), expected)
    assert metrics["loss/multi_step"] > 0

    # rows 3 and 4 start no window: their futures do not matter
    other = Continuation(windows.action.clone(), windows.next_obs.clone(), windows.valid)
    other.action[3:5] = 5.0
    other.next_obs[3:5] = 0.0
    torch.manual_seed(3)
    same, _ = objective(model, x, u, x_next, config, other)
    torch.testing.assert_close(same, loss)

    # the encodings of the future are targets: no gradient flows through them
    model.zero_grad()
    future = windows.next_obs.float().requires_grad_()
    torch.manual_seed(3)
    objective(model, x, u, x_next, config, windows._replace(next_obs=future))[0].backward()
    assert future.grad is None

    # without a continuation the term is not computed, whatever its weight
    _, without = objective(model, x, u, x_next, config)
    assert "loss/multi_step" not in without


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_the_multi_step_gradient_into_the_encoder_is_scaled(
    share: float,
    tiny_model: Callable[..., E2C],
    blob_transitions: Callable[..., tuple[torch.Tensor, ...]],
    continuation: Callable[..., Continuation],
) -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(6)
    windows = continuation(6)

    def gradients(encoder_gradient: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        torch.manual_seed(5)
        config = only(multi_step=MultiStepConfig(horizon=3, encoder_gradient=encoder_gradient))
        loss, _ = objective(model, x, u, x_next, config, windows)
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
