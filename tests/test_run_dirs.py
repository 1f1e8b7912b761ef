"""Run directories are never clobbered: a command writes only into a folder it created or one
holding a run of its kind, and a flag that cannot apply is an error, not ignored."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from latentrl import cli
from latentrl.collect import collect
from latentrl.config import DataConfig, ExperimentConfig, TrainConfig
from latentrl.data import METADATA_FILE
from latentrl.errors import UserError
from latentrl.models import ModelConfig
from latentrl.pipeline import dataset_dir, ensure_dataset
from latentrl.run_directory import CONFIG_FILE, RunDirectory, new_run_dir
from latentrl.sealed_json import seal
from latentrl.train import train

POINT_MASS_ID = "point_mass:PointMass-v0"
TINY = [
    "model.hidden_sizes=[16]",
    "model.transition_hidden_sizes=[8]",
    "model.latent_dim=2",
    "train.batch_size=50",
    "train.probe_steps=10",
    "train.image_every=5",
]


def tiny_config(epochs: int = 1) -> ExperimentConfig:
    return ExperimentConfig(
        name="point_mass",
        preset="test",
        data=DataConfig(env_id=POINT_MASS_ID, transitions=400),
        model=ModelConfig(
            obs_shape=(2, 32, 32),
            action_dim=1,
            latent_dim=2,
            hidden_sizes=(16,),
            transition_hidden_sizes=(8,),
        ),
        train=TrainConfig(epochs=epochs, batch_size=50, probe_steps=10),
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "point_mass"
    return collect(POINT_MASS_ID, 400, out, progress=False)


def _train(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["train", "--wandb", "disabled", *argv])
    return code, capsys.readouterr().err


def test_a_run_is_continued_only_with_resume_and_only_as_itself(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    sets = [a for s in [*TINY, "train.epochs=1"] for a in ("--set", s)]
    code, _ = _train(["--data", str(dataset), "--run-dir", str(run), *sets], capsys)
    assert code == 0 and (run / "checkpoint").is_dir()
    config_text = (run / CONFIG_FILE).read_text()
    # a second new run into it: refused, with the flag to use, and nothing rewritten
    code, err = _train(["--data", str(dataset), "--run-dir", str(run), *sets], capsys)
    assert code == 2 and err.strip() == (
        f"latentrl train: error: --run-dir {run} already holds a run; continue it with "
        "--resume, or choose a new --run-dir"
    )
    assert (run / CONFIG_FILE).read_text() == config_text and "resume=True" not in err
    # --experiment (or --seed, ...) cannot apply to a resumed run: an error, not ignored
    code, err = _train(["--run-dir", str(run), "--resume", "--experiment", "planar"], capsys)
    assert code == 2 and "--experiment cannot apply with --resume" in err
    code, err = _train(["--run-dir", str(run), "--resume", "--seed", "1"], capsys)
    assert code == 2 and "--seed cannot apply with --resume" in err
    assert (run / CONFIG_FILE).read_text() == config_text
    # resuming as itself continues it
    code, _ = _train(["--run-dir", str(run), "--resume", "--set", "train.epochs=2"], capsys)
    assert code == 0
    trainer = json.loads((run / "checkpoint" / "trainer.json").read_text())
    assert trainer["epoch"] == 2


def test_a_folder_of_other_files_or_someone_elses_config_is_left_alone(
    dataset: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty and holds no latentrl run"):
        train(tiny_config(1), mine, dataset, wandb_mode="disabled")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    other = tmp_path / "other"
    other.mkdir()
    (other / CONFIG_FILE).write_text('{"theirs": true}\n')
    with pytest.raises(UserError, match="already holds a run; continue it with --resume"):
        train(tiny_config(1), other, dataset, wandb_mode="disabled")
    assert (other / CONFIG_FILE).read_text() == '{"theirs": true}\n'
    with pytest.raises(UserError, match=r"other/config\.json: unknown field\(s\) theirs"):
        train(tiny_config(1), other, dataset, resume=True, wandb_mode="disabled")
    assert [p.name for p in other.iterdir()] == [CONFIG_FILE]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_the_machine_lacks_leaves_no_run_folder(dataset: Path, tmp_path: Path) -> None:
    config = tiny_config(1)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, device="cuda"))
    run_dir = new_run_dir(tmp_path / "runs", config)
    with pytest.raises(UserError, match=r"train\.device='cuda' but CUDA is not available"):
        train(config, run_dir, dataset, wandb_mode="disabled")
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_dataset_another_command_began_is_named_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import latentrl.pipeline as pipeline

    data = dataclasses.replace(tiny_config().data, transitions=40)
    path = dataset_dir(data, tmp_path)
    # the other command has written its metadata (a partial dataset) after this one looked
    real = pipeline.read_metadata
    collect(POINT_MASS_ID, 40, path, progress=False)
    meta = json.loads((path / METADATA_FILE).read_text())
    (path / METADATA_FILE).write_bytes(seal({**meta, "complete": False, "chunks": []}))
    calls: list[Path] = []

    def first_look_sees_nothing(where: Path) -> dict | None:
        calls.append(where)
        return None if len(calls) == 1 else real(where)

    monkeypatch.setattr(pipeline, "read_metadata", first_look_sees_nothing)
    with pytest.raises(UserError) as info:
        ensure_dataset(data, tmp_path)
    message = str(info.value)
    assert message.startswith(f"another latentrl command began collecting the dataset {path}")
    assert "pass --resume" not in message and "interrupted" not in message


def test_a_missing_or_empty_folder_takes_a_new_run(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path / "fresh")
    assert run.require_new() is run and not run.path.exists()
    run.path.mkdir()
    assert run.require_new() is run  # an empty folder takes a new run
