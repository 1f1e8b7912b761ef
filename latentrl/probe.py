"""How much of the true state a latent space holds: a small regression probe and its R^2.

The E2C pendulum latent is a twisted cylinder: theta_dot is not a linear function of the
latent mean over the whole circle, so the probe is a small MLP, fitted on the training split
and scored on the validation split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from latentrl.envs.contract import wrap_angle


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


def state_errors(
    predicted: np.ndarray, states: np.ndarray, angle_dims: Sequence[int]
) -> np.ndarray:
    """Per-coordinate errors ``(N, d)`` of predicted :func:`state_features` ``(N, f)`` (angles
    as cos, sin) against the true ``states (N, d)``; an angle's error is wrapped to [-pi, pi)."""
    columns, col = [], 0
    for dim in range(states.shape[1]):
        if dim in angle_dims:
            angle = np.arctan2(predicted[:, col + 1], predicted[:, col])
            columns.append(wrap_angle(angle - states[:, dim]))
            col += 2
        else:
            columns.append(predicted[:, col] - states[:, dim])
            col += 1
    return np.stack(columns, axis=1)


def r_squared(prediction: Tensor, target: Tensor) -> Tensor:
    """Coefficient of determination per column: ``(f,)``."""
    residual = (prediction - target).square().sum(0)
    total = (target - target.mean(0)).square().sum(0).clamp_min(1e-12)
    return 1.0 - residual / total


def train_probe(
    z_train: Tensor,
    y_train: Tensor,
    *,
    steps: int = 1_500,
    hidden: int = 64,
    seed: int = 0,
) -> Callable[[Tensor], Tensor]:
    """Fit an MLP z -> y (full-batch Adam on standardised inputs and targets); returns the
    fitted map ``z (N, n) -> y (N, f)``, without gradients, on ``z_train``'s device."""
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

    def predict(z: Tensor) -> Tensor:
        with torch.no_grad():
            return probe((z - z_mean) / z_std) * y_std + y_mean

    return predict


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
    """:func:`train_probe` on the training split; its validation R^2 per column ``(f,)``."""
    probe = train_probe(z_train, y_train, steps=steps, hidden=hidden, seed=seed)
    return r_squared(probe(z_val), y_val)
