"""The run directory layer: every path of a run, new run directories, the dataset pointer."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from latentrl.code_version import code_version
from latentrl.config import DataConfig, ExperimentConfig, TrainConfig
from latentrl.errors import UserError
from latentrl.models import ModelConfig
from latentrl.run_directory import (
    EvalDirectory,
    LogDirectory,
    RunDirectory,
    dataset_of_run,
    new_run_dir,
    run_name,
)

NOW = datetime(2026, 11, 21, 16, 6, 0)


def test_every_path_of_a_run(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path / "r")
    relative = {
        "config": run.config,
        "run.json": run.run_record,
        "metrics": run.metrics,
        "summary": run.summary,
        "wandb id": run.wandb_id,
        "wandb": run.wandb,
        "images": run.images,
        "image": run.image("latent map/z", 120),
        "model": run.checkpoint.model,
        "optimizer": run.checkpoint.optimizer,
        "rng": run.checkpoint.rng,
        "trainer": run.checkpoint.trainer,
        "tmp trainer": run.checkpoint_tmp.trainer,
        "old model": run.checkpoint_old.model,
        "eval": run.eval.path,
        "results": run.eval.results,
        "trajectories": run.eval.trajectories,
        "plot": run.eval.states_plot,
        "videos": run.eval.videos,
        "video": run.eval.video("latent", 3),
        "eval metrics": run.eval.metrics,
        "eval summary": run.eval.summary,
        "eval wandb": run.eval.wandb,
    }
    assert {k: p.relative_to(run.path).as_posix() for k, p in relative.items()} == {
        "config": "config.json",
        "run.json": "run.json",
        "metrics": "metrics.jsonl",
        "summary": "summary.json",
        "wandb id": "wandb_id.txt",
        "wandb": "wandb",
        "images": "images",
        "image": "images/latent_map_z_0000120.png",
        "model": "checkpoint/model.safetensors",
        "optimizer": "checkpoint/optimizer.safetensors",
        "rng": "checkpoint/rng.safetensors",
        "trainer": "checkpoint/trainer.json",
        "tmp trainer": "checkpoint.tmp/trainer.json",
        "old model": "checkpoint.old/model.safetensors",
        "eval": "eval",
        "results": "eval/results.json",
        "trajectories": "eval/trajectories.npz",
        "plot": "eval/states.png",
        "videos": "eval/videos",
        "video": "eval/videos/latent_episode_03.gif",
        "eval metrics": "eval/metrics.jsonl",
        "eval summary": "eval/summary.json",
        "eval wandb": "eval/wandb",
    }
    assert isinstance(run.eval, EvalDirectory) and isinstance(run.eval, LogDirectory)
    assert RunDirectory(str(tmp_path / "r")) == run and run.name == "r"


def test_a_folder_holds_a_run_when_it_has_a_config(tmp_path: Path) -> None:
    run = RunDirectory(tmp_path)
    assert not run.is_run()
    with pytest.raises(UserError, match=r"is not a latentrl run directory \(no config.json\)"):
        run.require_run()
    run.config.write_text("{}")
    assert run.is_run() and run.require_run() is run


def test_an_evaluation_is_there_when_its_folder_holds_anything(tmp_path: Path) -> None:
    ev = RunDirectory(tmp_path).eval
    assert not ev.holds_evaluation() and not ev.has_results()
    ev.path.mkdir()
    assert not ev.holds_evaluation()
    ev.videos.mkdir()
    for name in ("oracle_episode_00.gif", "latent_episode_01.gif", "latent_episode_00.gif"):
        (ev.videos / name).write_bytes(b"")
    assert ev.holds_evaluation() and not ev.has_results()
    assert [p.name for p in ev.agent_videos("latent")] == [
        "latent_episode_00.gif",
        "latent_episode_01.gif",
    ]
    ev.results.write_text("{}")
    assert ev.has_results()


def test_the_dataset_pointer_round_trips_as_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run = RunDirectory(tmp_path / "run")
    run.path.mkdir()
    with pytest.raises(UserError, match=r"does not record its dataset \(run.json\); pass --data"):
        run.dataset()
    run.record_dataset(Path("data/set"))
    record = json.loads(run.run_record.read_text())
    assert record == {"dataset": str(tmp_path / "data" / "set"), "code": [code_version()]}
    assert run.dataset() == tmp_path / "data" / "set" == dataset_of_run(run.path)
    run.run_record.write_text('{"data": "x"}')
    with pytest.raises(UserError, match="pass --data"):
        dataset_of_run(run.path)


def test_run_json_lists_each_code_that_trained_the_run_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = RunDirectory(tmp_path / "run")
    run.path.mkdir()
    assert run.training_code() == []
    run.run_record.write_text('{"dataset": "/data/set"}')  # a run from before the codes
    assert run.training_code() == []
    run.record_dataset("/data/set")
    run.record_dataset("/data/set")  # resumed by the same code: not listed again
    first = code_version()
    assert run.training_code() == [first]
    later = {"version": "9.9.9", "commit": "f" * 40}
    monkeypatch.setattr("latentrl.run_directory.code_version", lambda: later)
    run.record_dataset("/data/set")  # resumed by another code
    assert run.training_code() == [first, later]
    assert run.dataset() == Path("/data/set")
    run.run_record.write_text('{"dataset": "/data/set", "code": "0.4.0"}')  # not a list
    assert run.training_code() == []


def test_run_names_and_new_run_directories(tmp_path: Path) -> None:
    assert run_name("latentrl/Pendulum-v0", "my exp", 3, NOW) == (
        "Pendulum-v0__my_exp__3__20261121-160600"
    )
    config = ExperimentConfig(
        name="pendulum",
        preset="test",
        data=DataConfig(env_id="latentrl/Pendulum-v0", transitions=600),
        model=ModelConfig((2, 48, 48), 1, latent_dim=3),
        train=TrainConfig(seed=7),
    )
    root = tmp_path / "runs" / "deeper"
    made = [new_run_dir(root, config, NOW) for _ in range(3)]
    assert [p.name for p in made] == [
        "Pendulum-v0__pendulum__7__20261121-160600",
        "Pendulum-v0__pendulum__7__20261121-160600-2",
        "Pendulum-v0__pendulum__7__20261121-160600-3",
    ]
    assert all(p.is_dir() and not any(p.iterdir()) and p.parent == root for p in made)
    other = RunDirectory.create(root, "my_module:Cart/Pole-v1", "cart", 0, NOW)
    assert other.path.name == "Pole-v1__cart__0__20261121-160600"
