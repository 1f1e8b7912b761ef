"""Which torch device a config's ``device`` field names."""

from __future__ import annotations

import torch

from latentrl.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; otherwise the named device, which must
    exist (UserError for CUDA on a machine without it)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device={name!r} but CUDA is not available; use 'auto' or 'cpu'")
    return device
