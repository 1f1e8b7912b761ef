"""Checkpoints without pickle: safetensors for tensors, JSON for everything else.

A run directory holds ``config.json`` (the :class:`ExperimentConfig`) and ``checkpoint/``::

    model.safetensors       model weights
    optimizer.safetensors   optimizer tensors (Adam moments, step counts)
    rng.safetensors         torch CPU / CUDA generator states and the data-order generator
    trainer.json            epochs done, global step, optimizer hyper-parameters

A checkpoint is written to ``checkpoint.tmp/`` and swapped in with renames, so a kill at any
moment leaves the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from latentrl.config import ExperimentConfig, load_config
from latentrl.errors import UserError
from latentrl.models import E2C

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoint"


@dataclass(frozen=True)
class TrainerState:
    """Where training stands: ``epoch`` epochs are complete, ``step`` optimizer steps taken."""

    epoch: int
    step: int


def save_checkpoint(
    run_dir: Path,
    model: E2C,
    optimizer: torch.optim.Optimizer,
    data_order: torch.Generator,
    state: TrainerState,
) -> None:
    final = run_dir / CHECKPOINT_DIR
    tmp, old = final.with_name(CHECKPOINT_DIR + ".tmp"), final.with_name(CHECKPOINT_DIR + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    tensors, groups = _flatten_optimizer(optimizer.state_dict())
    save_file(tensors, tmp / "optimizer.safetensors")
    rng = {"torch_cpu": torch.get_rng_state(), "data_order": data_order.get_state()}
    if torch.cuda.is_available():
        rng["torch_cuda"] = torch.cuda.get_rng_state()
    save_file(rng, tmp / "rng.safetensors")
    trainer = {"epoch": state.epoch, "step": state.step, "param_groups": groups}
    (tmp / "trainer.json").write_text(json.dumps(trainer, indent=2) + "\n")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def has_checkpoint(run_dir: Path) -> bool:
    return (run_dir / CHECKPOINT_DIR / "trainer.json").exists() or (
        run_dir / (CHECKPOINT_DIR + ".old") / "trainer.json"
    ).exists()


def load_checkpoint(
    run_dir: Path,
    model: E2C,
    optimizer: torch.optim.Optimizer,
    data_order: torch.Generator,
) -> TrainerState:
    """Restore model, optimizer and generators in place; returns the trainer state."""
    directory = _checkpoint_dir(run_dir)
    trainer = _read_json(directory / "trainer.json")
    model.load_state_dict(_load_tensors(directory / "model.safetensors", "cpu"))
    tensors = _load_tensors(directory / "optimizer.safetensors", "cpu")
    optimizer.load_state_dict(_unflatten_optimizer(tensors, trainer["param_groups"]))
    rng = _load_tensors(directory / "rng.safetensors", "cpu")
    torch.set_rng_state(rng["torch_cpu"])
    data_order.set_state(rng["data_order"])
    if "torch_cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["torch_cuda"])
    return TrainerState(epoch=int(trainer["epoch"]), step=int(trainer["step"]))


def load_model(
    run_dir: Path | str, device: torch.device | str = "cpu"
) -> tuple[E2C, ExperimentConfig]:
    """The trained model of a run directory (its last checkpoint) and the run's config."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise UserError(f"{run_dir} is not a latentrl run directory (no {CONFIG_FILE})")
    config = load_config(run_dir / CONFIG_FILE)
    if not has_checkpoint(run_dir):
        raise UserError(f"run {run_dir} has no checkpoint yet; train it with `latentrl train`")
    model = E2C(config.model)
    weights = _load_tensors(_checkpoint_dir(run_dir) / "model.safetensors", "cpu")
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise UserError(f"checkpoint of {run_dir} does not fit its config: {exc}") from None
    return model.to(device).eval(), config


def _checkpoint_dir(run_dir: Path) -> Path:
    final = run_dir / CHECKPOINT_DIR
    if (final / "trainer.json").exists():
        return final
    old = run_dir / (CHECKPOINT_DIR + ".old")  # killed between the two renames
    if (old / "trainer.json").exists():
        return old
    raise UserError(f"no checkpoint in {run_dir}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"checkpoint file {path} is unreadable ({exc})") from None


def _load_tensors(path: Path, device: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(path, device=device)
    except (OSError, SafetensorError) as exc:
        raise UserError(f"checkpoint file {path} is missing or corrupt ({exc})") from None


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list]:
    tensors: dict[str, torch.Tensor] = {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{index}.{key}"] = tensor.detach().cpu().contiguous()
    return tensors, state_dict["param_groups"]


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    return {"state": state, "param_groups": groups}
