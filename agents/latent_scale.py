"""The spread of a run's training encodings: the unit of the latent planner's state cost.

With ``plan.state_scale = "encodings"`` the planner's state weights are divided by ``s²``, the
mean per-coordinate variance of the model's belief means over the run's training
observations, so the cost's weights mean the same whatever scale the model kind gives its
latent.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from latentrl.data import TransitionDataset, load_transitions
from latentrl.errors import UserError
from latentrl.models import E2C
from latentrl.run_directory import dataset_of_run

SPREAD_SAMPLE = 4096
"""Training observations (evenly spaced over the dataset) whose encodings set the spread."""
_BLOCK = 512  # observations encoded at a time


def training_data_of_run(run_dir: Path | str, model: E2C, needed_by: str) -> TransitionDataset:
    """The dataset a run was trained on (``run.json``). Raises UserError naming ``needed_by``
    (the setting that reads it) when the dataset is gone or is not the model's."""
    config = model.config
    try:
        data_dir = dataset_of_run(Path(run_dir))
        return load_transitions(
            data_dir, {"obs_shape": config.obs_shape, "action_dim": config.action_dim}
        )
    except UserError as exc:
        raise UserError(
            f"{needed_by} needs the run's training data: {exc}. Collect it again with the "
            f"run's data config (`latentrl collect`), or remove {needed_by}"
        ) from None


def mean_variance(latents: Tensor) -> float:
    """Mean over coordinates of the variance over rows of ``latents (N, n)``, N >= 2."""
    if latents.ndim != 2 or latents.shape[0] < 2:
        raise ValueError(f"need latents (N >= 2, n), got {tuple(latents.shape)}")
    return float(latents.double().var(dim=0).mean())


@torch.no_grad()
def encoding_spread(model: E2C, images: Tensor, sample: int = SPREAD_SAMPLE) -> float:
    """``s²``: :func:`mean_variance` of the initial-belief means of ``sample`` of the images
    uint8 ``(N, k, H, W)``, evenly spaced. Raises UserError when the latent does not vary."""
    rows = torch.linspace(0, len(images) - 1, min(sample, len(images))).round().long()
    device = next(model.parameters()).device
    picked = images[rows]
    means = torch.cat(
        [
            model.initial_belief(picked[s : s + _BLOCK].to(device)).mean
            for s in range(0, len(picked), _BLOCK)
        ]
    )
    spread = mean_variance(means)
    if not spread > 0.0:
        raise UserError(
            "the model encodes every training observation to the same latent, so its spread "
            "cannot set the cost's unit: use plan.state_scale=unit"
        )
    return spread


def encoding_spread_of_run(run_dir: Path | str, model: E2C) -> float:
    """:func:`encoding_spread` of the observations of the dataset the run was trained on."""
    dataset = training_data_of_run(run_dir, model, "plan.state_scale=encodings")
    return encoding_spread(model, dataset.obs)
