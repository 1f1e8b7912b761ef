"""How much of the true state a latent space holds: a small regression probe and its R^2.

The E2C pendulum latent is a twisted cylinder: theta_dot is not a linear function of the
latent mean over the whole circle, so the probe is a small MLP, fitted on the training split
and scored on the validation split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from latentrl.losses import roll_mean


def state_features(
    states: Tensor, names: Sequence[str], angle_dims: Sequence[int]
) -> tuple[Tensor, list[str]]:
    """Probe targets: each angle as (cos, sin), every other coordinate as it is.

    states: ``(N, d)``; returns ``(N, f)`` float32 and the ``f`` feature names.
    """
    columns, labels = [], []
    for dim, name in enumerate(names):
        value = states[:, dim].float()
        if dim in angle_dims:
            columns += [torch.cos(value), torch.sin(value)]
            labels += [f"cos_{name}", f"sin_{name}"]
        else:
            columns.append(value)
            labels.append(name)
    return torch.stack(columns, dim=1), labels


def r_squared(prediction: Tensor, target: Tensor) -> Tensor:
    """Coefficient of determination per column: ``(f,)``."""
    residual = (prediction - target).square().sum(0)
    total = (target - target.mean(0)).square().sum(0).clamp_min(1e-12)
    return 1.0 - residual / total


def fit_probe(
    z_train: Tensor,
    y_train: Tensor,
    z_val: Tensor,
    y_val: Tensor,
    *,
    steps: int = 1_500,
    hidden: int = 64,
    seed: int = 0,
) -> Tensor:
    """Fit an MLP z -> y (full-batch Adam) and return its validation R^2 per column ``(f,)``."""
    generator = torch.Generator().manual_seed(seed)
    z_mean, z_std = z_train.mean(0), z_train.std(0).clamp_min(1e-6)
    y_mean, y_std = y_train.mean(0), y_train.std(0).clamp_min(1e-6)
    n, f = z_train.shape[1], y_train.shape[1]
    probe = nn.Sequential(
        nn.Linear(n, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, f)
    )
    with torch.no_grad():
        for layer in probe:
            if isinstance(layer, nn.Linear):
                layer.weight.copy_(
                    torch.randn(layer.weight.shape, generator=generator) / layer.in_features**0.5
                )
                layer.bias.zero_()
    probe = probe.to(z_train.device)
    optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    inputs, targets = (z_train - z_mean) / z_std, (y_train - y_mean) / y_std
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        nn.functional.mse_loss(probe(inputs), targets).backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        prediction = probe((z_val - z_mean) / z_std) * y_std + y_mean
    return r_squared(prediction, y_val)


def random_rollouts(
    env: Any, *, episodes: int = 64, steps: int = 40, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Observations and actions of ``episodes`` true rollouts for :func:`open_loop_error`.

    Starts are drawn by ``env.sample_states``, actions uniformly from the action box, and the
    states follow ``env.next_states``. Returns observations uint8 ``(steps + 1, episodes,
    *obs_shape)`` and actions float32 ``(steps, episodes, m)``.
    """
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    states = env.sample_states(episodes, rng)
    observations, actions = [env.observe(states)], []
    for _ in range(steps):
        actions.append(rng.uniform(low, high, size=(episodes, *low.shape)).astype(np.float32))
        states = env.next_states(states, actions[-1])
        observations.append(env.observe(states))
    return np.stack(observations), np.stack(actions)


@torch.no_grad()
def open_loop_error(model: Any, observations: np.ndarray, actions: np.ndarray) -> Tensor:
    """How far the model's own rollout drifts from the encodings of the true rollout.

    From the encoder mean of the first observations, the model applies its mean transition
    ``model.step`` open loop to the true ``actions`` (see :func:`random_rollouts` for the
    shapes). Returns ``(steps,)``: the mean distance ``|z_pred_k - z_enc_k|`` after ``k = 1 ..
    steps`` steps divided by the RMS distance of the encodings from their mean, so the number
    is scale-free: 1.0 is as far off as a random latent of the data.
    """
    device = next(model.parameters()).device
    encoded = torch.stack(
        [model.encode(torch.as_tensor(x, device=device)).mean for x in observations]
    )  # (steps + 1, episodes, n)
    u = torch.as_tensor(actions, device=device, dtype=encoded.dtype).transpose(0, 1)
    predicted = roll_mean(model, encoded[0], u).transpose(0, 1)  # (steps, episodes, n)
    truth = encoded[1:]
    spread = (truth - truth.mean((0, 1))).square().sum(-1).mean().sqrt()
    error = (predicted - truth).norm(dim=-1).mean(-1)
    return (error / spread.clamp_min(1e-12)).float().cpu()
