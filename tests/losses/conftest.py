"""Tiny models and batches of blob images for the loss tests, which run single-threaded."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from latentrl.losses import Continuation
from latentrl.models import E2C, ModelConfig


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tensors this small gain nothing from intra-op threads, and on a busy machine waiting
    for them made the training test ten times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_tiny_model(seed: int = 0, **overrides: object) -> E2C:
    """An E2C model on 2 x 8 x 8 images with 1 action and 2 latent dimensions."""
    torch.manual_seed(seed)
    kwargs: dict[str, object] = {
        "obs_shape": (2, 8, 8),
        "action_dim": 1,
        "latent_dim": 2,
        "hidden_sizes": (32,),
        "transition_hidden_sizes": (16,),
        "conv_channels": (4, 8),
        **overrides,
    }
    return E2C(ModelConfig(**kwargs))  # type: ignore[arg-type]


def blob_images(position: torch.Tensor) -> torch.Tensor:
    """Two 8x8 frames of a bright blob at ``position (B, 2)`` in [0, 1]^2, uint8."""
    grid = (torch.arange(8) + 0.5) / 8
    d2 = (grid.view(1, 8, 1) - position[:, 0].view(-1, 1, 1)).square() + (
        grid.view(1, 1, 8) - position[:, 1].view(-1, 1, 1)
    ).square()
    frame = (255 * torch.exp(-d2 / 0.02)).to(torch.uint8)
    return torch.stack([frame, frame], dim=1)


def make_blob_transitions(batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """``(x_t (B, 2, 8, 8) uint8, u_t (B, 1), x_next)``: the blob pushed by 0.1 u."""
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(batch, 2, generator=g)
    u = torch.rand(batch, 1, generator=g) * 2 - 1
    s_next = (s + 0.1 * torch.cat([u, -u], dim=1)).clamp(0, 1)
    return blob_images(s), u, blob_images(s_next)


def make_continuation(batch: int, valid: torch.Tensor | None = None) -> Continuation:
    """Two more steps after each of ``batch`` rows (windows of K = 3)."""
    future_obs, future_u = make_blob_transitions(2 * batch, seed=1)[0], torch.randn(2 * batch, 1)
    if valid is None:
        valid = torch.ones(batch, dtype=torch.bool)
    return Continuation(future_u.view(batch, 2, 1), future_obs.view(batch, 2, 2, 8, 8), valid)


@pytest.fixture
def tiny_model() -> Callable[..., E2C]:
    """:func:`make_tiny_model`."""
    return make_tiny_model


@pytest.fixture
def blob_transitions() -> Callable[..., tuple[torch.Tensor, ...]]:
    """:func:`make_blob_transitions`."""
    return make_blob_transitions


@pytest.fixture
def continuation() -> Callable[..., Continuation]:
    """:func:`make_continuation`."""
    return make_continuation
