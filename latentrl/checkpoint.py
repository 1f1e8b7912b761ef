"""Checkpoints without pickle: safetensors for tensors, JSON for everything else.

A run directory (:class:`latentrl.run_directory.RunDirectory`) holds ``config.json`` (the
:class:`ExperimentConfig`) and ``checkpoint/``::

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
from latentrl.run_directory import CheckpointFiles, RunDirectory


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
    """Write the checkpoint of ``state``. A full disk (or another write error) is a UserError
    of one line; the previous checkpoint, if any, is kept."""
    try:
        _write_checkpoint(run_dir, model, optimizer, data_order, state)
    except (OSError, SafetensorError) as exc:
        shutil.rmtree(RunDirectory(run_dir).checkpoint_tmp.path, ignore_errors=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        kept = "the previous one is kept" if has_checkpoint(run_dir) else "there is none before it"
        raise UserError(
            f"cannot write the checkpoint after epoch {state.epoch} in {run_dir} "
            f"({reason.splitlines()[0] if reason else type(exc).__name__}); {kept}. Make room, "
            f"then continue with: latentrl train --run-dir {run_dir} --resume"
        ) from None


def _write_checkpoint(
    run_dir: Path,
    model: E2C,
    optimizer: torch.optim.Optimizer,
    data_order: torch.Generator,
    state: TrainerState,
) -> None:
    paths = RunDirectory(run_dir)
    files = paths.checkpoint_tmp
    final, tmp, old = paths.checkpoint.path, files.path, paths.checkpoint_old.path
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, files.model)
    tensors, groups = _flatten_optimizer(optimizer.state_dict())
    save_file(tensors, files.optimizer)
    rng = {"torch_cpu": torch.get_rng_state(), "data_order": data_order.get_state()}
    if torch.cuda.is_available():
        rng["torch_cuda"] = torch.cuda.get_rng_state()
    save_file(rng, files.rng)
    trainer = {"epoch": state.epoch, "step": state.step, "param_groups": groups}
    files.trainer.write_text(json.dumps(trainer, indent=2) + "\n")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def has_checkpoint(run_dir: Path) -> bool:
    paths = RunDirectory(run_dir)
    return paths.checkpoint.is_complete() or paths.checkpoint_old.is_complete()


def load_checkpoint(
    run_dir: Path,
    model: E2C,
    optimizer: torch.optim.Optimizer,
    data_order: torch.Generator,
) -> TrainerState:
    """Restore model, optimizer and generators in place; returns the trainer state."""
    files = _checkpoint_files(run_dir)
    trainer = _read_json(files.trainer)
    model.load_state_dict(_load_tensors(files.model, "cpu"))
    tensors = _load_tensors(files.optimizer, "cpu")
    optimizer.load_state_dict(_unflatten_optimizer(tensors, trainer["param_groups"]))
    rng = _load_tensors(files.rng, "cpu")
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
    config = load_config(RunDirectory(run_dir).require_run().config)
    if not has_checkpoint(run_dir):
        raise UserError(f"run {run_dir} has no checkpoint yet; train it with `latentrl train`")
    model = E2C(config.model)
    weights = _load_tensors(_checkpoint_files(run_dir).model, "cpu")
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise UserError(f"checkpoint of {run_dir} does not fit its config: {exc}") from None
    return model.to(device).eval(), config


def _checkpoint_files(run_dir: Path) -> CheckpointFiles:
    paths = RunDirectory(run_dir)
    if paths.checkpoint.is_complete():
        return paths.checkpoint
    if paths.checkpoint_old.is_complete():  # killed between the two renames
        return paths.checkpoint_old
    raise UserError(f"no checkpoint in {run_dir}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
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
