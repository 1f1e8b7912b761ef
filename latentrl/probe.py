"""How much of the true state a latent space holds: a small regression probe and its R^2.

The E2C pendulum latent is a twisted cylinder: theta_dot is not a linear function of the
latent mean over the whole circle, so the probe is a small MLP, fitted on the training split
and scored on the validation split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from latentrl.envs.contract import wrap_angle
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


class Rollouts(NamedTuple):
    """True rollouts of an env from :func:`random_rollouts`."""

    observations: np.ndarray  # uint8 (steps + 1, episodes, *obs_shape)
    actions: np.ndarray  # float32 (steps, episodes, m)
    states: np.ndarray  # float64 (steps + 1, episodes, d)


def random_rollouts(
    env: Any,
    *,
    episodes: int = 64,
    steps: int = 40,
    seed: int = 0,
    starts: np.ndarray | None = None,
) -> Rollouts:
    """``episodes`` true rollouts for :func:`open_loop_error` and :func:`latent_stretch`.

    Starts are drawn by ``env.sample_states`` (or given: ``starts (episodes, d)``), actions
    uniformly from the action box, and the states follow ``env.next_states``.
    """
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    if starts is not None and starts.shape[0] != episodes:
        raise ValueError(f"expected {episodes} start states, got {starts.shape[0]}")
    states = [env.sample_states(episodes, rng) if starts is None else starts]
    observations, actions = [env.observe(states[0])], []
    for _ in range(steps):
        actions.append(rng.uniform(low, high, size=(episodes, *low.shape)).astype(np.float32))
        states.append(env.next_states(states[-1], actions[-1]))
        observations.append(env.observe(states[-1]))
    return Rollouts(np.stack(observations), np.stack(actions), np.stack(states))


def state_step_sizes(
    states: np.ndarray, span: np.ndarray, angle_dims: Sequence[int] = ()
) -> np.ndarray:
    """Length of each true step of ``states (steps + 1, episodes, d)`` in units of the state
    box's ``span (d,)``, angles wrapped: ``(steps, episodes)``."""
    step = np.diff(np.asarray(states, dtype=np.float64), axis=0)
    for dim in angle_dims:
        step[..., dim] = (step[..., dim] + np.pi) % (2 * np.pi) - np.pi
    return np.linalg.norm(step / span, axis=-1)


ENCODE_BLOCK = 2048
"""Images per encoder pass in :func:`encoder_means`: bounds the activations' memory."""


@torch.no_grad()
def encoder_means(model: Any, images: Tensor, block: int = ENCODE_BLOCK) -> Tensor:
    """Encoder means ``(N, n)`` of images uint8 ``(N, k, H, W)``, ``block`` at a time, on the
    model's device."""
    device = next(model.parameters()).device
    return torch.cat(
        [model.encode(images[s : s + block].to(device)).mean for s in range(0, len(images), block)]
    )


@torch.no_grad()
def encode_rollouts(model: Any, observations: np.ndarray) -> Tensor:
    """Encoder means ``(steps + 1, episodes, n)`` of rollout observations ``(steps + 1,
    episodes, ...)``, on the model's device: the input of :func:`open_loop_error` and
    :func:`latent_stretch`."""
    device = next(model.parameters()).device
    return torch.stack([model.encode(torch.as_tensor(x, device=device)).mean for x in observations])


def latent_stretch(encoded: Tensor, state_steps: np.ndarray) -> float:
    """How torn the latent space is: the largest latent step per unit of true step over the
    rollout transitions, divided by its median.

    A smooth embedding keeps this near the spread of its local scale (2.6-6.7 for the smooth
    Pendulum-v0 models measured here); a latent space cut open along a line of states (two
    neighbouring images encoded far apart) gave 11.6-14.9, but one torn model only 7.0, so
    it is a hint, not a test. Planar models score about 23 with or without a tear: compare
    runs of one env only.

    ``encoded (steps + 1, episodes, n)`` from :func:`encode_rollouts`, ``state_steps (steps,
    episodes)`` from :func:`state_step_sizes`; steps shorter than a tenth of the median are
    left out (no motion, no ratio).
    """
    latent_steps = (encoded[1:] - encoded[:-1]).norm(dim=-1).double().cpu().numpy()
    moving = state_steps > 0.1 * np.median(state_steps)
    ratio = latent_steps[moving] / state_steps[moving]
    return float(ratio.max() / max(np.median(ratio), 1e-12))


@torch.no_grad()
def open_loop_error(model: Any, encoded: Tensor, actions: np.ndarray) -> Tensor:
    """How far the model's own rollout drifts from the encodings of the true rollout.

    From the encoder means ``encoded`` of the true rollout (:func:`encode_rollouts`), the
    model applies its mean transition ``model.step`` open loop from the first ones to the true
    ``actions`` (see :func:`random_rollouts` for the shapes). Returns ``(steps,)``: the mean
    distance ``|z_pred_k - z_enc_k|`` after ``k = 1 .. steps`` steps divided by the RMS
    distance of the encodings from their mean, so the number is scale-free: 1.0 is as far off
    as a random latent of the data.
    """
    u = torch.as_tensor(actions, device=encoded.device, dtype=encoded.dtype).transpose(0, 1)
    predicted = roll_mean(model, encoded[0], u).transpose(0, 1)  # (steps, episodes, n)
    truth = encoded[1:]
    spread = (truth - truth.mean((0, 1))).square().sum(-1).mean().sqrt()
    error = (predicted - truth).norm(dim=-1).mean(-1)
    return (error / spread.clamp_min(1e-12)).float().cpu()
