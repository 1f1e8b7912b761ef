"""Checkpoints: a SHA-256 per file, verified on every load; a changed byte anywhere is one
error naming the file; checkpoints without a manifest still load; what a stopped run keeps."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from point_mass import ENV_ID as POINT_MASS_ID

from latentrl import cli
from latentrl.checkpoint import (
    TrainerState,
    checkpoint_epoch,
    kept_checkpoint,
    load_checkpoint,
    load_model,
    nonfinite_tensors,
    save_checkpoint,
    verify_checkpoint,
)
from latentrl.config import DataConfig, ExperimentConfig, save_config
from latentrl.errors import UserError
from latentrl.models import E2C, ModelConfig
from latentrl.run_directory import CONFIG_FILE, RunDirectory

FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "trainer.json")
MASKS = (0x01, 0x80, 0xFF)


def checkpointed_run(run_dir: Path, obs_shape: tuple[int, int, int] = (2, 32, 32)) -> Path:
    """A run directory with a config and the checkpoint of one optimizer step of a tiny E2C."""
    config = ExperimentConfig(
        name="point_mass",
        preset="test",
        data=DataConfig(env_id=POINT_MASS_ID, transitions=100),
        model=ModelConfig(
            obs_shape=obs_shape,
            action_dim=1,
            latent_dim=2,
            hidden_sizes=(8,),
            transition_hidden_sizes=(4,),
        ),
    )
    run_dir.mkdir(parents=True)
    save_config(config, run_dir / CONFIG_FILE)
    model, optimizer, generator = _trainer_parts(config)
    sum(p.square().sum() for p in model.parameters()).backward()
    optimizer.step()
    save_checkpoint(run_dir, model, optimizer, generator, TrainerState(epoch=1, step=1))
    return run_dir


def _trainer_parts(config: ExperimentConfig) -> tuple[E2C, torch.optim.Optimizer, torch.Generator]:
    torch.manual_seed(0)
    model = E2C(config.model)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3), torch.Generator().manual_seed(3)


def _load_for_resume(run_dir: Path) -> TrainerState:
    from latentrl.config import load_config

    model, optimizer, generator = _trainer_parts(load_config(run_dir / CONFIG_FILE))
    return load_checkpoint(run_dir, model, optimizer, generator)


def _flip(path: Path, position: int, mask: int) -> bytes:
    """Flip the bits ``mask`` of byte ``position`` of ``path``; returns the original bytes."""
    original = path.read_bytes()
    changed = bytearray(original)
    changed[position] ^= mask
    path.write_bytes(bytes(changed))
    return original


def test_a_checkpoint_lists_the_sha256_of_each_of_its_files(tmp_path: Path) -> None:
    run = checkpointed_run(tmp_path / "run")
    folder = RunDirectory(run).checkpoint
    manifest = json.loads(folder.manifest.read_text())
    assert sorted(manifest["sha256"]) == sorted(FILES)
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((folder.path / name).read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in folder.path.iterdir()) == sorted((*FILES, "manifest.json"))
    model, _ = load_model(run)
    weights = E2C(model.config).state_dict()
    assert weights.keys() == model.state_dict().keys()
    assert _load_for_resume(run) == TrainerState(epoch=1, step=1)


@pytest.mark.parametrize("name", [*FILES, "manifest.json"])
def test_a_flipped_byte_in_any_checkpoint_file_is_one_error_naming_it(
    name: str, tmp_path: Path
) -> None:
    run = checkpointed_run(tmp_path / "run")
    path = RunDirectory(run).checkpoint.path / name
    size = path.stat().st_size
    positions = sorted(
        {0, 1, 2, size // 7, size // 3, size // 2, 2 * size // 3, size - 2, size - 1}
    )
    for position in positions:
        for mask in MASKS:
            original = _flip(path, position, mask)
            for load in (load_model, _load_for_resume):
                with pytest.raises(UserError, match="checkpoint file ") as caught:
                    load(run)
                message = str(caught.value)
                assert "\n" not in message
                # a flipped digest in the manifest is reported with the file it no longer fits
                assert name in message or "manifest.json" in message, (position, mask, message)
                if name != "manifest.json":
                    assert str(path) in message
            path.write_bytes(original)
    assert _load_for_resume(run) == TrainerState(epoch=1, step=1)


@pytest.mark.slow
def test_every_byte_of_a_small_checkpoint_is_covered(tmp_path: Path) -> None:
    run = checkpointed_run(tmp_path / "run", obs_shape=(1, 4, 4))
    folder = RunDirectory(run).checkpoint
    flips = 0
    for path in sorted(folder.path.iterdir()):
        original = path.read_bytes()
        for position in range(len(original)):
            changed = bytearray(original)
            changed[position] ^= 0x01
            path.write_bytes(bytes(changed))
            with pytest.raises(UserError, match="checkpoint file"):
                verify_checkpoint(folder)
            flips += 1
        path.write_bytes(original)
    verify_checkpoint(folder)
    assert flips == sum(p.stat().st_size for p in folder.path.iterdir()) > 5_000


def test_a_missing_or_unknown_file_is_refused(tmp_path: Path) -> None:
    run = checkpointed_run(tmp_path / "run")
    folder = RunDirectory(run).checkpoint.path
    (folder / "extra.bin").write_bytes(b"x")
    with pytest.raises(UserError, match=r"manifest.json does not match .*extra.bin is not listed"):
        load_model(run)
    (folder / "extra.bin").unlink()
    (folder / "rng.safetensors").unlink()
    with pytest.raises(UserError, match=r"rng.safetensors is listed but missing"):
        _load_for_resume(run)


def test_evaluate_names_the_corrupt_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = checkpointed_run(tmp_path / "run")
    path = RunDirectory(run).checkpoint.model
    _flip(path, path.stat().st_size // 2, 0x10)
    args = ["evaluate", str(run), "--agents", "latent", "--episodes", "1", "--wandb", "disabled"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path} is corrupt" in err[0], err
    assert not RunDirectory(run).eval.holds_evaluation()


def test_a_checkpoint_without_manifest_loads_with_one_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = checkpointed_run(tmp_path / "run")
    expected = load_model(run)[0].state_dict()
    RunDirectory(run).checkpoint.manifest.unlink()
    for _ in range(2):
        model, _ = load_model(run)
        for key, value in model.state_dict().items():
            assert torch.equal(value, expected[key]), key
    assert capsys.readouterr().err.count("no manifest.json") == 1


def test_what_a_stopped_run_keeps(tmp_path: Path) -> None:
    run = checkpointed_run(tmp_path / "run")
    assert checkpoint_epoch(run) == 1
    assert kept_checkpoint(run, " --set x=1") == (
        f"the checkpoint after epoch 1 is kept in {run}; continue with: "
        f"latentrl train --run-dir {run} --resume --set x=1"
    )
    shutil.rmtree(RunDirectory(run).checkpoint.path)
    assert checkpoint_epoch(run) is None
    assert kept_checkpoint(run).startswith(f"no checkpoint was written, so {run} cannot be")


def test_nonfinite_tensors_names_weights_and_optimizer_state() -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    assert nonfinite_tensors(model, optimizer) == []
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    assert nonfinite_tensors(model, optimizer) == []
    with torch.no_grad():
        model.weight[1, 2] = float("nan")
    optimizer.state[model.bias]["exp_avg_sq"][0] = float("inf")
    assert nonfinite_tensors(model, optimizer) == ["model weight", "optimizer 1.exp_avg_sq"]
