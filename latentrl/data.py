"""Image-transition datasets: on-disk format, writing, loading and splits.

A dataset is a directory::

    metadata.json                  what was collected, how, with which versions, and the chunks
    chunk-00000.safetensors.gz     arrays of one chunk (safetensors inside gzip)
    chunk-00001.safetensors.gz     ...

Each chunk holds ``obs`` (N, k, H, W) uint8, ``action`` (N, m) float32, ``next_obs``
(N, k, H, W) uint8, ``state`` (N, d) float64 and ``next_state`` (N, d) float64.
Safetensors is a plain header plus raw bytes: nothing is ever unpickled. Chunk bytes are a
pure function of their arrays (gzip with a zero timestamp), so the same seed gives the same
bytes. ``metadata.json`` records a SHA-256 per chunk and one of its own bytes
(:mod:`latentrl.sealed_json`), checked on load, and ``complete``, which
stays false until the last chunk is written: an interrupted collection is a marked partial
dataset that ``latentrl collect --resume`` finishes, never a silently short one.

Loading reads everything into torch tensors; images stay uint8 until a batch is formed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import itertools
import json
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import save as safetensors_save

from latentrl.errors import UserError
from latentrl.sealed_json import DIGEST_KEY, is_intact, seal

FORMAT = "latentrl-transitions"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
ARRAY_NAMES = ("obs", "action", "next_obs", "state", "next_state")
GZIP_LEVEL = 1  # level 1 already shrinks mostly-black frames ~10x; higher levels cost speed
_VERSIONED_PACKAGES = ("latentrl", "gymnasium", "mujoco", "numpy", "safetensors")


@dataclass(frozen=True)
class CollectionSpec:
    """What identifies a collection: two datasets with equal specs have equal bytes."""

    env_id: str
    mode: str
    seed: int
    transitions: int
    chunk_size: int
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    num_envs: int = 1
    """Parallel environments of a rollout collection (its bytes depend on it); 1 for uniform."""
    chain_length: int = 1
    """Uniform mode: transitions per chain. A chain starts at a uniformly drawn state and
    follows random controls, so row i + 1 continues row i; 1 gives independent transitions."""
    near_goal_share: float = 0.0
    """Uniform mode: share of each chunk's chains that start near the goal
    (:func:`latentrl.envs.contract.sample_near_goal_states`) rather than anywhere."""
    near_goal_widths: tuple[float, ...] | None = None
    """The near-goal box's half-width per state coordinate, as a fraction of the state box's
    half-width; None: :data:`latentrl.envs.contract.NEAR_GOAL_FRACTION` in every one."""

    def num_chunks(self) -> int:
        return -(-self.transitions // self.chunk_size)

    def chunk_count(self, index: int) -> int:
        """Transitions in chunk ``index`` (the last one may be short)."""
        return min(self.chunk_size, self.transitions - index * self.chunk_size)

    def as_dict(self) -> dict[str, Any]:
        """The spec as metadata keys; the :data:`OPTIONAL_SPEC_KEYS` only when they differ from
        their defaults, so datasets collected before they existed keep their metadata."""
        spec = {
            "env_id": self.env_id,
            "env_kwargs": dict(self.env_kwargs),
            "mode": self.mode,
            "seed": self.seed,
            "transitions": self.transitions,
            "chunk_size": self.chunk_size,
            "num_envs": self.num_envs,
        }
        for key, default in OPTIONAL_SPEC_KEYS.items():
            value = getattr(self, key)
            if value != default:
                spec[key] = list(value) if isinstance(value, tuple) else value
        return spec


OPTIONAL_SPEC_KEYS: dict[str, Any] = {
    "chain_length": 1,
    "near_goal_share": 0.0,
    "near_goal_widths": None,
}
"""Spec keys written to the metadata only when they differ from these defaults."""
METADATA_KEYS = frozenset(
    {f.name for f in fields(CollectionSpec)}
    | {"format", "format_version", "obs_shape", "action_dim", "state_dim", "state_names"}
    | {"angle_dims", "versions", "complete", "chunks", DIGEST_KEY}
)
"""Every key a metadata file may hold; another one is a flipped byte in a key's name."""


def check_near_goal_share(share: float, mode: str, widths: Sequence[float] | None = None) -> None:
    """UserError unless ``share`` lies in [0, 1], and is 0 outside uniform mode; and unless
    ``widths`` (the near-goal box's, None: the default) come with a share above 0."""
    if not 0 <= share <= 1 or (share > 0 and mode != "uniform"):
        raise UserError(
            f"near_goal_share must lie in [0, 1] and applies to uniform mode only (rollouts "
            f"start where the env's reset puts them), got {share} with mode {mode!r}"
        )
    if widths is not None and share == 0:
        raise UserError(
            "near_goal_widths shape the box the near-goal chains start in, and near_goal_share "
            "is 0 (no chain starts near the goal): set near_goal_share above 0, or leave "
            "near_goal_widths out"
        )


def check_chain_length(chain_length: int, mode: str) -> None:
    """UserError unless ``chain_length`` >= 1, and 1 outside uniform mode."""
    if chain_length < 1 or (chain_length > 1 and mode != "uniform"):
        raise UserError(
            f"chain_length must be >= 1 and applies to uniform mode only (rollouts are chained "
            f"already), got {chain_length} with mode {mode!r}"
        )


def chunk_file_name(index: int) -> str:
    return f"chunk-{index:05d}.safetensors.gz"


def encode_chunk(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Serialize one chunk's arrays to the bytes of a chunk file (deterministic)."""
    raw = safetensors_save({name: np.ascontiguousarray(arrays[name]) for name in ARRAY_NAMES})
    return gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def read_metadata(directory: Path) -> dict[str, Any] | None:
    """The metadata of the dataset in ``directory``; None if there is none."""
    path = Path(directory) / METADATA_FILE
    if not path.exists():
        return None
    raw = path.read_bytes()
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is corrupt ({exc}); re-collect the dataset") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path} is not the metadata of a latentrl transition dataset")
    unknown = sorted(set(meta) - METADATA_KEYS)
    if unknown or not is_intact(raw, meta):
        found = f"unknown keys {', '.join(unknown)}" if unknown else "its checksum does not match"
        raise UserError(f"{path} is corrupt ({found}); re-collect the dataset")
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path} has format version {meta.get('format_version')}; this latentrl reads "
            f"version {FORMAT_VERSION}: re-collect the dataset"
        )
    return meta


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` through a ``.tmp`` file and a rename: a kill or a full disk leaves the
    old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class DatasetWriter:
    """Writes a dataset chunk by chunk; the metadata is rewritten after every chunk.

    Opening an output directory that already holds data is refused unless ``overwrite``
    (replace it) or, for a partial dataset with the same spec, ``resume`` (keep its chunks).
    """

    def __init__(
        self,
        directory: Path,
        spec: CollectionSpec,
        shapes: Mapping[str, tuple[int, ...]],
        state_names: tuple[str, ...] = (),
        angle_dims: tuple[int, ...] = (),
        *,
        overwrite: bool = False,
        resume: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.spec = spec
        self._chunks: list[dict[str, Any]] = []
        self._meta: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **spec.as_dict(),
            "obs_shape": list(shapes["obs"]),
            "action_dim": shapes["action"][0],
            "state_dim": shapes["state"][0],
            "state_names": list(state_names),
            "angle_dims": list(angle_dims),
            "versions": package_versions(),
            "complete": False,
            "chunks": self._chunks,
        }
        self._prepare(overwrite=overwrite, resume=resume)

    @property
    def chunks_done(self) -> int:
        return len(self._chunks)

    @property
    def transitions_done(self) -> int:
        return sum(chunk["count"] for chunk in self._chunks)

    def _prepare(self, *, overwrite: bool, resume: bool) -> None:
        directory = self.directory
        if directory.exists() and not directory.is_dir():
            raise UserError(f"output {directory} exists and is not a directory")
        existing = read_metadata(directory) if directory.exists() else None
        # metadata.json.tmp: left by a collection killed while it rewrote the metadata.
        ours = {METADATA_FILE, METADATA_FILE + ".tmp"}
        ours |= {chunk_file_name(i) for i in range(self.spec.num_chunks())}
        foreign = [
            p.name
            for p in (directory.iterdir() if directory.exists() else ())
            if p.name not in ours and not p.name.startswith("chunk-")
        ]
        if foreign:
            raise UserError(
                f"output directory {directory} holds files that are not part of a latentrl "
                f"dataset ({', '.join(sorted(foreign)[:3])}); choose a new or empty directory"
            )
        if existing is None:
            directory.mkdir(parents=True, exist_ok=True)
            self._write_metadata()
            return
        if overwrite:
            for path in directory.iterdir():
                path.unlink()
            self._write_metadata()
            return
        done, total = len(existing.get("chunks", [])), self.spec.num_chunks()
        if existing.get("complete") and not resume:
            raise UserError(
                f"{directory} already holds a complete dataset of {existing['transitions']} "
                "transitions; pass --overwrite to replace it or choose another --out"
            )
        if not resume:
            raise UserError(
                f"{directory} holds a partial dataset ({done} chunks written, interrupted); "
                "pass --resume to finish it or --overwrite to start again"
            )
        previous = {key: existing.get(key) for key in self.spec.as_dict()}
        for key, default in OPTIONAL_SPEC_KEYS.items():
            if existing.get(key, default) != getattr(self.spec, key):
                previous[key] = existing.get(key, default)
        if previous != self.spec.as_dict():
            raise UserError(
                f"cannot resume {directory}: it was collected with {previous}, "
                f"not {self.spec.as_dict()}; repeat the original command with --resume"
            )
        if existing.get("complete"):  # --resume after the last chunk: nothing left to do
            self._meta, self._chunks = existing, existing["chunks"]
            return
        self._chunks.extend(existing["chunks"])
        if done > total:
            raise UserError(f"{directory}: metadata lists {done} chunks, expected {total}")

    def _write_metadata(self) -> None:
        self._write(self.directory / METADATA_FILE, seal(self._meta))

    def _write(self, path: Path, data: bytes) -> None:
        """Write one file of the dataset; a full disk or another OSError is a UserError."""
        try:
            _write_atomically(path, data)
        except OSError as exc:
            raise UserError(
                f"cannot write {path} ({exc.strerror or exc}); the dataset keeps its "
                f"{self.chunks_done} finished chunks: make room, then repeat the command with "
                "--resume"
            ) from None

    def write_chunk(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Append the next chunk: its file first, then the metadata that lists it."""
        index = len(self._chunks)
        expected = self.spec.chunk_count(index)
        counts = {name: len(arrays[name]) for name in ARRAY_NAMES}
        if set(counts.values()) != {expected}:
            raise ValueError(f"chunk {index} should hold {expected} transitions, got {counts}")
        data = encode_chunk(arrays)
        name = chunk_file_name(index)
        self._write(self.directory / name, data)
        digest = hashlib.sha256(data).hexdigest()
        self._chunks.append({"file": name, "count": expected, "sha256": digest})
        self._write_metadata()

    def finish(self) -> Path:
        if self.transitions_done != self.spec.transitions:
            raise RuntimeError(
                f"finish() after {self.transitions_done} of {self.spec.transitions} transitions"
            )
        self._meta["complete"] = True
        self._write_metadata()
        return self.directory


def decode_chunk(path: Path, expected_sha256: str | None = None) -> dict[str, np.ndarray]:
    """Read one chunk file; UserError naming the file if it is missing, truncated or corrupt."""
    from safetensors.numpy import load as safetensors_load

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"dataset file {path} is missing; re-collect the dataset") from None
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise UserError(
            f"dataset file {path} is corrupt or truncated (checksum mismatch); "
            "re-collect the dataset (latentrl collect ... --overwrite)"
        )
    try:
        arrays = safetensors_load(gzip.decompress(data))
    except (OSError, EOFError, zlib.error, SafetensorError) as exc:
        raise UserError(f"dataset file {path} is corrupt or truncated ({exc})") from None
    missing = set(ARRAY_NAMES) - set(arrays)
    if missing:
        raise UserError(f"dataset file {path} lacks arrays {sorted(missing)}")
    return arrays


@dataclass(frozen=True)
class TransitionBatch:
    """A minibatch on one device. Images stay uint8; the model converts them."""

    obs: torch.Tensor  # (B, k, H, W) uint8
    action: torch.Tensor  # (B, m) float32
    next_obs: torch.Tensor  # (B, k, H, W) uint8
    state: torch.Tensor  # (B, d) float64
    next_state: torch.Tensor  # (B, d) float64


@dataclass(frozen=True)
class TransitionDataset:
    """All transitions of a dataset as tensors (first dimension N), plus its metadata."""

    obs: torch.Tensor  # (N, k, H, W) uint8
    action: torch.Tensor  # (N, m) float32
    next_obs: torch.Tensor  # (N, k, H, W) uint8
    state: torch.Tensor  # (N, d) float64
    next_state: torch.Tensor  # (N, d) float64
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.obs.shape[0]

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        return tuple(self.obs.shape[1:])  # type: ignore[return-value]

    def batch(self, index: torch.Tensor) -> TransitionBatch:
        """The transitions at ``index`` (B,) (on this dataset's device)."""
        return TransitionBatch(*(getattr(self, name)[index] for name in ARRAY_NAMES))

    def subset(self, index: torch.Tensor) -> TransitionDataset:
        return TransitionDataset(
            *(getattr(self, name)[index] for name in ARRAY_NAMES), metadata=self.metadata
        )

    def to(self, device: torch.device | str) -> TransitionDataset:
        return TransitionDataset(
            *(getattr(self, name).to(device) for name in ARRAY_NAMES), metadata=self.metadata
        )

    def continues(self) -> torch.Tensor:
        """``(N - 1,)`` bool: row i + 1 starts where row i ends (the same chain or episode).

        Read from the true states, so it holds for chained uniform data and for rollouts of
        one env alike; independent uniform draws never continue each other.
        """
        return (self.state[1:] == self.next_state[:-1]).all(-1)

    def window_starts(self, steps: int) -> torch.Tensor:
        """Indices i whose rows i, ..., i + steps - 1 form one chain of ``steps`` transitions."""
        if steps < 1:
            raise ValueError(f"a window needs at least one transition, got {steps}")
        if steps > len(self):
            return torch.zeros(0, dtype=torch.long, device=self.state.device)
        ok = torch.ones(len(self) - steps + 1, dtype=torch.bool, device=self.state.device)
        links = self.continues()
        for offset in range(steps - 1):
            ok &= links[offset : offset + len(ok)]
        return torch.nonzero(ok).squeeze(-1)

    def split(
        self, validation_fraction: float, seed: int = 0
    ) -> tuple[TransitionDataset, TransitionDataset]:
        """Deterministic (train, validation) split: a seeded permutation of the chains (single
        transitions when nothing is chained), then a cut. Chains stay whole and in order."""
        if not 0.0 < validation_fraction < 1.0:
            raise UserError(f"validation fraction must lie in (0, 1), got {validation_fraction}")
        starts = torch.cat([torch.zeros(1, dtype=torch.long), 1 + _where(~self.continues())])
        bounds = torch.cat([starts, torch.tensor([len(self)])]).tolist()
        chains = [torch.arange(a, b) for a, b in itertools.pairwise(bounds)]
        n_val = max(1, round(len(chains) * validation_fraction))
        if n_val >= len(chains):
            raise UserError(
                f"a dataset of {len(self)} transitions in {len(chains)} chains is too small "
                "to split"
            )
        order = np.random.default_rng(seed).permutation(len(chains)).tolist()
        val = torch.cat([chains[i] for i in order[:n_val]])
        train = torch.cat([chains[i] for i in order[n_val:]])
        return self.subset(train), self.subset(val)


def _where(mask: torch.Tensor) -> torch.Tensor:
    return torch.nonzero(mask.cpu()).squeeze(-1)


def load_transitions(
    directory: Path | str, expect: Mapping[str, Any] | None = None
) -> TransitionDataset:
    """Load a complete dataset into CPU tensors.

    ``expect`` maps metadata keys (``env_id``, ``obs_shape``, ``action_dim``, ...) to the values
    the caller needs; a mismatch is a UserError that names both.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"no dataset at {directory}; make one with `latentrl collect`")
    meta = read_metadata(directory)
    if meta is None:
        raise UserError(f"{directory} has no {METADATA_FILE}: it is not a latentrl dataset")
    if not meta.get("complete"):
        raise UserError(
            f"{directory} is a partial dataset ({len(meta.get('chunks', []))} chunks written, "
            "interrupted); finish it by repeating its `latentrl collect` command with --resume"
        )
    for key, wanted in (expect or {}).items():
        found = meta.get(key)
        if _normalise(found) != _normalise(wanted):
            raise UserError(
                f"dataset {directory} has {key}={found!r} but {wanted!r} is expected; "
                "collect a dataset for this configuration"
            )
    total = int(meta["transitions"])
    shape = tuple(meta["obs_shape"])
    arrays = {
        "obs": torch.empty((total, *shape), dtype=torch.uint8),
        "action": torch.empty((total, meta["action_dim"]), dtype=torch.float32),
        "next_obs": torch.empty((total, *shape), dtype=torch.uint8),
        "state": torch.empty((total, meta["state_dim"]), dtype=torch.float64),
        "next_state": torch.empty((total, meta["state_dim"]), dtype=torch.float64),
    }
    start = 0
    for chunk in meta["chunks"]:
        path = directory / chunk["file"]
        part = decode_chunk(path, chunk["sha256"])
        count = int(chunk["count"])
        for name, target in arrays.items():
            source = part[name]
            if source.shape != (count, *target.shape[1:]):
                raise UserError(
                    f"dataset file {path}: array {name} has shape {source.shape}, "
                    f"expected {(count, *target.shape[1:])}"
                )
            target[start : start + count] = torch.from_numpy(source)
        start += count
    if start != total:
        raise UserError(f"{directory}: chunks hold {start} transitions, metadata says {total}")
    return TransitionDataset(**arrays, metadata=meta)


def _normalise(value: Any) -> Any:
    """Make tuples and lists compare equal (JSON has only lists)."""
    if isinstance(value, tuple | list):
        return [_normalise(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _normalise(v) for k, v in value.items()}
    return value
