"""Which torch device a config's ``device`` field names."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from latentrl.errors import UserError

DEVICE_TYPES = ("cpu", "cuda", "mps")
"""Device types a config may name (besides "auto")."""

DEVICE_WORDS = "'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


def device_name_problem(name: str) -> str | None:
    """None when ``name`` is a device a config may name ("auto", "cpu", "cuda", "cuda:1",
    "mps"), else what is allowed; whether the machine has it is :func:`resolve_device`'s
    check (a run trained on a GPU still loads on a CPU)."""
    if name == "auto":
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        return DEVICE_WORDS
    return None if device.type in DEVICE_TYPES else DEVICE_WORDS


def resolve_device(name: str, field: str = "train.device") -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; otherwise the named device, which must
    exist on this machine (UserError naming ``field`` otherwise)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device_name_problem(name) is not None:
        raise UserError(f"{field} must be {DEVICE_WORDS}, got {name!r}")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{field}={name!r} but CUDA is not available; use 'auto' or 'cpu'")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UserError(
                f"{field}={name!r} but this machine has {count} CUDA device(s): "
                f"use cuda:0 to cuda:{count - 1}, 'auto' or 'cpu'"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{field}={name!r} but MPS is not available; use 'auto' or 'cpu'")
    return device


def device_description(device: torch.device, cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """What a benchmark's figures were measured on: the GPU's name, or the CPU's model as
    ``cpuinfo`` names it (Linux), with whether it has bf16 matrix units (Intel AMX), where
    ``train.bf16`` speeds up a CPU's training step; else the platform's words for it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        lines = []
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    name = fields.get("model name") or platform.processor() or platform.machine()
    return f"{name}, AMX bf16" if "amx_bf16" in fields.get("flags", "").split() else name
