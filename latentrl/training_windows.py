"""Which rows of a dataset a training step reads when its objective spans windows of
transitions (E2C's multi-step term, the filtering kind's sequence ELBO)."""

from __future__ import annotations

import torch

from latentrl.data import TransitionDataset
from latentrl.errors import UserError
from latentrl.kinds import ModelKind
from latentrl.losses import Continuation


def window_key(kind: ModelKind) -> str:
    """The config key that sets the training window of ``kind``."""
    if kind.loss_section is None:
        return "loss.multi_step.horizon"
    return f"loss.{kind.loss_section}.window"


def window_mask(
    train_set: TransitionDataset, horizon: int, key: str = "loss.multi_step.horizon"
) -> torch.Tensor | None:
    """``(N,)`` bool: training row i starts ``horizon`` chained transitions (None: no
    windows, ``horizon == 1``). Raises UserError naming ``key`` when no row does."""
    if horizon == 1:
        return None
    starts = train_set.window_starts(horizon)
    if len(starts) == 0:
        raise UserError(
            f"{key}={horizon} but the dataset has no chains of "
            f"{horizon} transitions; collect it with data.chain_length >= {horizon}"
        )
    valid = torch.zeros(len(train_set), dtype=torch.bool, device=starts.device)
    valid[starts] = True
    return valid


def continuation(
    data: TransitionDataset,
    index: torch.Tensor,
    window: int,
    window_start: torch.Tensor | None,
) -> Continuation | None:
    """The ``window - 1`` steps after the rows ``index`` ``(B,)`` of ``data``, and which rows
    start a whole window (``window_start`` ``(N,)``; None: no windows, returns None)."""
    if window_start is None:
        return None
    offsets = torch.arange(1, window, device=index.device)
    future = (index.unsqueeze(-1) + offsets).clamp(max=len(data) - 1)  # (B, K - 1)
    return Continuation(data.action[future], data.next_obs[future], window_start[index])


def validation_windows(
    data: TransitionDataset, window: int, whole_windows: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The validation rows and, for a kind trained on whole windows, the ``(N,)`` mask of the
    rows starting one (None: single transitions, every row). Whole windows are read every
    ``window`` steps, so that they hardly overlap."""
    every = torch.arange(len(data), device=data.obs.device)
    if not (whole_windows and window > 1):
        return every, None
    starts = data.window_starts(window)
    if len(starts) == 0:
        return every, None
    mask = torch.zeros(len(data), dtype=torch.bool, device=data.obs.device)
    mask[starts] = True
    return starts[::window], mask
