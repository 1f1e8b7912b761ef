"""How a trained latent space behaves along true trajectories: random rollouts of an env,
their encodings, how far the model's open-loop predictions drift from them
(:func:`open_loop_error`), and how torn the latent is (:func:`latent_stretch`).
Training reports both every epoch (``val/open_loop_error_K``, ``val/latent_stretch``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from latentrl.losses import roll_mean
from latentrl.models import Gaussian


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
def belief_means(
    model: Any, images: Tensor, actions: Tensor, continues: Tensor, block: int = ENCODE_BLOCK
) -> Tensor:
    """The means ``(N, n)`` of the model's belief at each row of a dataset in chains.

    ``images`` uint8 ``(N, k, H, W)`` (x_t of each row), ``actions (N, m)`` (u_t),
    ``continues (N - 1,)`` (row i + 1 goes on from row i,
    :meth:`~latentrl.data.TransitionDataset.continues`). A row that starts a chain gets the
    initial belief, each next one the belief of the row before updated with that row's action;
    rows at the same place in their chains are updated together, ``block`` at a time. On the
    model's device.
    """
    device = next(model.parameters()).device
    follows = [False, *continues.cpu().bool().tolist()]
    position = np.zeros(len(images), dtype=np.int64)
    for i in range(1, len(images)):
        position[i] = position[i - 1] + 1 if follows[i] else 0
    if len(images) == 0:
        raise ValueError("belief_means needs at least one row")
    n = model.config.latent_dim
    dtype = next(model.parameters()).dtype
    mean = torch.zeros(len(images), n, dtype=dtype, device=device)
    logvar = torch.zeros_like(mean)
    for step in range(int(position.max()) + 1):
        at_step = torch.as_tensor(np.flatnonzero(position == step))
        for rows in at_step.split(block):
            x = images[rows.to(images.device)].to(device)
            if step == 0:
                belief = model.initial_belief(x)
            else:
                before = (rows - 1).to(device)
                u = actions[(rows - 1).to(actions.device)].to(device=device, dtype=dtype)
                belief = model.update_belief(Gaussian(mean[before], logvar[before]), u, x)
            mean[rows.to(device)] = belief.mean
            logvar[rows.to(device)] = belief.logvar
    return mean


@torch.no_grad()
def encode_rollouts(
    model: Any, observations: np.ndarray, actions: np.ndarray | None = None
) -> Tensor:
    """The belief means ``(steps + 1, episodes, n)`` along rollouts, on the model's device:
    the input of :func:`open_loop_error` and :func:`latent_stretch`. ``observations (steps +
    1, episodes, ...)``; with ``actions (steps, episodes, m)`` a model whose belief reads the
    history (``filters_history``) is filtered along each rollout, else each observation is
    encoded on its own (the encoder means)."""
    device = next(model.parameters()).device
    if actions is None or not getattr(model, "filters_history", False):
        return torch.stack(
            [model.encode(torch.as_tensor(x, device=device)).mean for x in observations]
        )
    belief = model.initial_belief(torch.as_tensor(observations[0], device=device))
    means = [belief.mean]
    for u, x in zip(actions, observations[1:], strict=True):
        u_t = torch.as_tensor(u, device=device, dtype=belief.mean.dtype)
        belief = model.update_belief(belief, u_t, torch.as_tensor(x, device=device))
        means.append(belief.mean)
    return torch.stack(means)


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
