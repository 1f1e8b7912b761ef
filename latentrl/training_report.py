"""What training shows of a model besides its losses: image grids, the latent map and the
probe of the true state (read-only functions of a model and a dataset split).
"""

from __future__ import annotations

import numpy as np
import torch

from latentrl.data import TransitionDataset
from latentrl.latent_diagnostics import belief_means, encoder_means
from latentrl.models import E2C
from latentrl.plots import image_grid, latent_map
from latentrl.probe import fit_probe, state_features

ENCODING_BATCH = 1_024
"""Images encoded at once."""
GRID_SAMPLES = 8
"""Transitions in a reconstruction grid."""


def state_names(data: TransitionDataset) -> list[str]:
    """The names of the true state's coordinates (``s0``, ``s1``, ... when the env gave none)."""
    meta = data.metadata
    return list(meta.get("state_names") or [f"s{i}" for i in range(meta["state_dim"])])


def angle_names(data: TransitionDataset) -> list[str]:
    """The names of the coordinates that are angles."""
    names = state_names(data)
    return [names[i] for i in data.metadata.get("angle_dims", [])]


@torch.no_grad()
def latent_means(model: E2C, data: TransitionDataset) -> torch.Tensor:
    """The belief means ``(N, n)`` at the rows of ``data`` (filtered along its chains for a
    model whose belief reads the history), float32 on the CPU."""
    if model.filters_history:
        return belief_means(model, data.obs, data.action, data.continues()).float().cpu()
    return encoder_means(model, data.obs, ENCODING_BATCH).float().cpu()


def latent_map_image(model: E2C, data: TransitionDataset, title: str) -> np.ndarray:
    """The latent means of ``data`` coloured by each state coordinate, as an RGB image."""
    means = latent_means(model, data).numpy()
    states = data.state.cpu().numpy()
    colours = {name: states[:, i] for i, name in enumerate(state_names(data))}
    return latent_map(means, colours, title=title, angles=angle_names(data))


@torch.no_grad()
def reconstruction_grid(model: E2C, data: TransitionDataset, bernoulli: bool) -> np.ndarray:
    """The first :data:`GRID_SAMPLES` transitions of ``data``: x_t, its reconstruction, x_t+1
    and its one-step prediction, side by side (``bernoulli``: the decoder gives logits)."""
    index = torch.arange(min(GRID_SAMPLES, len(data)), device=data.obs.device)
    batch = data.batch(index)
    q = model.encode(batch.obs)
    predicted = model.step(q.mean, batch.action)
    decoded = model.decode(torch.cat([q.mean, predicted]))
    if bernoulli:
        decoded = torch.sigmoid(decoded)
    images = decoded.clamp(0, 1).cpu().numpy()
    n = len(index)
    return image_grid(
        [batch.obs.cpu().numpy(), images[:n], batch.next_obs.cpu().numpy(), images[n:]],
        labels=["x_t", "decoded", "x_t+1", "predicted"],
        scale=2,
    )


def probe_r2(
    model: E2C, train_set: TransitionDataset, val_set: TransitionDataset, steps: int, seed: int
) -> dict[str, float]:
    """Validation R² of a small MLP probe from the latent means to the true state's features
    (cos and sin of each angle), fitted on the training split: ``probe/r2_<feature>`` and
    ``probe/r2_mean``."""
    names, angle_dims = state_names(val_set), val_set.metadata.get("angle_dims", [])
    y_train, labels = state_features(train_set.state.cpu(), names, angle_dims)
    y_val, _ = state_features(val_set.state.cpu(), names, angle_dims)
    z_train, z_val = latent_means(model, train_set), latent_means(model, val_set)
    with torch.enable_grad():
        r2 = fit_probe(z_train, y_train, z_val, y_val, steps=steps, seed=seed)
    summary = {f"probe/r2_{label}": float(v) for label, v in zip(labels, r2, strict=True)}
    summary["probe/r2_mean"] = float(r2.mean())
    return summary
