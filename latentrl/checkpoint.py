"""Checkpoints without pickle: safetensors for tensors, JSON for everything else.

A run directory (:class:`latentrl.run_directory.RunDirectory`) holds ``config.json`` (the
:class:`ExperimentConfig`) and ``checkpoint/``::

    model.safetensors       model weights
    optimizer.safetensors   optimizer tensors (Adam moments, step counts)
    rng.safetensors         torch CPU / CUDA generator states and the data-order generator
    trainer.json            epochs done, global step, optimizer hyper-parameters
    manifest.json           {"sha256": {file name: SHA-256 of its bytes}}, written last

A checkpoint is written to ``checkpoint.tmp/`` and swapped in with renames, so a kill at any
moment leaves the previous checkpoint or the new one, never half of one. Every load checks
each file against the manifest first (:func:`verify_checkpoint`): a changed byte anywhere is
one error naming the file, never weights loaded silently. Checkpoints written before the
manifest existed load unverified, with a note.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from latentrl.config import ExperimentConfig, load_config
from latentrl.errors import UserError
from latentrl.kinds import build_model
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
    digests: dict[str, str] = {}
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    _write(files.model, save(weights), digests)
    tensors, groups = _flatten_optimizer(optimizer.state_dict())
    _write(files.optimizer, save(tensors), digests)
    rng = {"torch_cpu": torch.get_rng_state(), "data_order": data_order.get_state()}
    if torch.cuda.is_available():
        rng["torch_cuda"] = torch.cuda.get_rng_state()
    _write(files.rng, save(rng), digests)
    trainer = {"epoch": state.epoch, "step": state.step, "param_groups": groups}
    _write(files.trainer, (json.dumps(trainer, indent=2) + "\n").encode(), digests)
    files.manifest.write_text(json.dumps({"sha256": digests}, sort_keys=True) + "\n")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _write(path: Path, data: bytes, digests: dict[str, str]) -> None:
    path.write_bytes(data)
    digests[path.name] = hashlib.sha256(data).hexdigest()


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
    model = build_model(config.model)
    weights = _load_tensors(_checkpoint_files(run_dir).model, "cpu")
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise UserError(f"checkpoint of {run_dir} does not fit its config: {exc}") from None
    return model.to(device).eval(), config


def _checkpoint_files(run_dir: Path) -> CheckpointFiles:
    """The run's checkpoint folder, verified against its manifest."""
    paths = RunDirectory(run_dir)
    if paths.checkpoint.is_complete():
        files = paths.checkpoint
    elif paths.checkpoint_old.is_complete():  # killed between the two renames
        files = paths.checkpoint_old
    else:
        raise UserError(f"no checkpoint in {run_dir}")
    verify_checkpoint(files)
    return files


_SHA256 = re.compile(r"[0-9a-f]{64}")
_unverified: set[Path] = set()
"""Checkpoints without a manifest already noted in this process (the note is shown once)."""


def verify_checkpoint(files: CheckpointFiles) -> None:
    """Check every file of a checkpoint folder against its ``manifest.json``: each listed file
    must have the SHA-256 listed, and no other file may be there. UserError naming the first
    file that does not match. A folder without a manifest (written before checksums) passes, with a
    one-time note on stderr."""
    folder = files.path
    if not files.manifest.exists():
        if folder not in _unverified:
            _unverified.add(folder)
            print(
                f"note: {folder} has no manifest.json (written before checkpoints carried "
                "checksums); its files are loaded without checksum verification",
                file=sys.stderr,
            )
        return
    advice = "restore the run directory from a copy, or train a new run"
    listed = _manifest_digests(files.manifest, advice)
    present = {p.name for p in folder.iterdir() if p.name != files.manifest.name}
    missing, unknown = sorted(set(listed) - present), sorted(present - set(listed))
    if missing or unknown:
        found = [f"{name} is listed but missing" for name in missing]
        found += [f"{name} is not listed" for name in unknown]
        raise UserError(
            f"checkpoint file {files.manifest} does not match its folder ({'; '.join(found)}: "
            f"a missing or unknown file, or a corrupt manifest); {advice}"
        )
    for name in sorted(listed):
        path = folder / name
        if hashlib.sha256(path.read_bytes()).hexdigest() != listed[name]:
            raise UserError(
                f"checkpoint file {path} is corrupt: its SHA-256 differs from the one in "
                f"{files.manifest.name}; {advice}"
            )


def _manifest_digests(path: Path, advice: str) -> dict[str, str]:
    """``{file name: SHA-256}`` of a manifest; UserError when it is not what save writes."""
    try:
        digests = json.loads(path.read_bytes())["sha256"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(
            f"checkpoint file {path} is unreadable or corrupt ({exc}); {advice}"
        ) from None
    well_formed = isinstance(digests, dict) and all(
        isinstance(v, str) and _SHA256.fullmatch(v) for v in digests.values()
    )
    if not well_formed:
        raise UserError(f"checkpoint file {path} is corrupt (not a manifest); {advice}")
    return digests


def checkpoint_epoch(run_dir: Path) -> int | None:
    """The epoch of the checkpoint a run directory holds (None: it holds none)."""
    paths = RunDirectory(run_dir)
    for files in (paths.checkpoint, paths.checkpoint_old):
        if files.is_complete():
            try:
                return int(json.loads(files.trainer.read_text())["epoch"])
            except (OSError, ValueError, KeyError, TypeError):
                return None
    return None


def kept_checkpoint(run_dir: Path, flags: str = "") -> str:
    """What a stopped run leaves: the checkpoint it really holds and how to go on from it
    (``flags`` appended to the resume command), or that it holds none and how to start over."""
    epoch = checkpoint_epoch(run_dir)
    if epoch is None:
        return (
            f"no checkpoint was written, so {run_dir} cannot be resumed; start over in a new "
            "run directory"
        )
    return (
        f"the checkpoint after epoch {epoch} is kept in {run_dir}; continue with: "
        f"latentrl train --run-dir {run_dir} --resume{flags}"
    )


def nonfinite_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Names of the model's parameters and buffers and the optimizer's state tensors that hold
    a NaN or an infinity (one device sync for all of them)."""
    named = [(f"model {k}", v) for k, v in model.state_dict().items()]
    for index, values in optimizer.state_dict()["state"].items():
        named += [(f"optimizer {index}.{k}", v) for k, v in values.items() if torch.is_tensor(v)]
    floats = [(name, t) for name, t in named if t.is_floating_point() and t.numel()]
    if not floats:
        return []
    flags = [torch.isfinite(t).all() for _, t in floats]
    finite: dict[int, bool] = {}
    for device in {flag.device for flag in flags}:  # AdamW's step counts may sit on the CPU
        index = [i for i, flag in enumerate(flags) if flag.device == device]
        values = torch.stack([flags[i] for i in index]).cpu().tolist()
        finite |= dict(zip(index, values, strict=True))
    return [name for i, (name, _) in enumerate(floats) if not finite[i]]


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
