"""Faults: killed parents, flipped bytes, full disks (issue #30 item 6).

The fast tests run in-process or with one small subprocess; the kill-and-resume trials of
experiments/benchmarks/fault_injection.py are marked slow (that script runs many more).
"""

from __future__ import annotations

import errno
import importlib.util
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from point_mass import ENV_ID as POINT_MASS_ID

from latentrl import checkpoint as checkpoint_module
from latentrl.checkpoint import load_checkpoint, load_model
from latentrl.cli import main, sigterm_as_ctrl_c
from latentrl.collect import collect
from latentrl.config import DataConfig, ExperimentConfig, TrainConfig, load_config
from latentrl.data import METADATA_FILE, chunk_file_name, load_transitions
from latentrl.errors import UserError
from latentrl.models import E2C, ModelConfig
from latentrl.train import train

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "benchmarks" / "fault_injection.py"
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fault_injection() -> ModuleType:
    """experiments/benchmarks/fault_injection.py as a module."""
    spec = importlib.util.spec_from_file_location("fault_injection", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fault_injection"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def tiny_config(epochs: int = 2) -> ExperimentConfig:
    return ExperimentConfig(
        name="point_mass",
        preset="test",
        data=DataConfig(env_id=POINT_MASS_ID, transitions=600),
        model=ModelConfig(
            obs_shape=(2, 32, 32),
            action_dim=1,
            latent_dim=2,
            hidden_sizes=(32,),
            transition_hidden_sizes=(8,),
        ),
        train=TrainConfig(epochs=epochs, batch_size=100, image_every=10, probe_steps=10),
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "pm"
    return collect(POINT_MASS_ID, 600, out, seed=0, chunk_size=250, progress=False)


# --- workers die with their parent ------------------------------------------------------------

PARENT = """
import multiprocessing, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import resource_tracker
from latentrl.worker_lifetime import ChildOf

if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(2, mp_context=context, initializer=ChildOf(int))
    futures = [pool.submit(time.sleep, 600) for _ in range(2)]
    while len(pool._processes) < 2:
        time.sleep(0.05)
    pids = [*pool._processes, resource_tracker._resource_tracker._pid]
    print(" ".join(map(str, pids)), flush=True)
    time.sleep(600)
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_spawned_workers_and_the_resource_tracker_die_with_a_killed_parent(
    tmp_path: Path,
) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 3 and all(_running(p) for p in pids)
        time.sleep(3.0)  # let the workers' initializers arm the parent-death signal
        assert all(_running(p) for p in pids)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 20
    while any(_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in pids if _running(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []


# --- flipped bytes ----------------------------------------------------------------------------


def assert_every_flip_detected(
    files: list[Path], load: Callable[[], None], per_file: int = 8
) -> None:
    """Each file flipped at ``per_file`` random positions, one at a time: every flip makes
    ``load`` raise a UserError of one line."""
    counts = fault_injection().flip_trials(files, load, per_file, np.random.default_rng(0))
    assert counts["detected"] == per_file * len(files), dict(counts)


def test_a_flipped_byte_in_any_file_of_a_dataset_is_one_clean_error(dataset: Path) -> None:
    files = sorted(dataset.iterdir())
    assert [f.name for f in files] == [*(chunk_file_name(i) for i in range(3)), METADATA_FILE]
    assert_every_flip_detected(files, lambda: load_transitions(dataset))
    load_transitions(dataset)  # the files are restored


CHECKPOINT_VERIFIED = "sha256" in inspect.getsource(checkpoint_module).lower()


@pytest.mark.xfail(
    not CHECKPOINT_VERIFIED,
    reason="checkpoints carry no SHA-256 manifest on this branch yet (issue #30 item 3): "
    "flipped weights load silently",
    strict=False,
)
def test_a_flipped_byte_in_any_file_of_a_checkpoint_is_one_clean_error(
    dataset: Path, tmp_path: Path
) -> None:
    run = train(tiny_config(epochs=1), tmp_path / "run", dataset, wandb_mode="disabled").run_dir
    config = load_config(run / "config.json")

    def resume_and_evaluate() -> None:
        model = E2C(config.model)
        load_checkpoint(run, model, torch.optim.AdamW(model.parameters()), torch.Generator())
        load_model(run)

    resume_and_evaluate()
    assert_every_flip_detected(sorted((run / "checkpoint").iterdir()), resume_and_evaluate)


# --- a full disk ------------------------------------------------------------------------------


def test_a_full_disk_during_collection_keeps_the_chunks_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = collect(POINT_MASS_ID, 600, tmp_path / "ref", chunk_size=250, progress=False)
    out = tmp_path / "data"
    writes = {"count": 0}
    write_bytes = Path.write_bytes

    def fill_the_disk(path: Path, data: bytes) -> int:
        writes["count"] += 1
        if writes["count"] == 4:  # metadata, chunk 0, metadata, then chunk 1: half of it
            write_bytes(path, data[: len(data) // 2])
            raise ENOSPC
        return write_bytes(path, data)

    command = ["collect", POINT_MASS_ID, "--transitions", "600", "--chunk-size", "250"]
    command += ["--out", str(out)]
    monkeypatch.setattr(Path, "write_bytes", fill_the_disk)
    assert main(command) == 2
    error = capsys.readouterr().err
    last = error.strip().splitlines()[-1]  # after the progress bar
    assert "Traceback" not in error and last.startswith("latentrl collect: error: cannot write")
    assert "No space left on device" in last and "--resume" in last
    assert sorted(p.name for p in out.iterdir()) == [chunk_file_name(0), METADATA_FILE]
    meta = json.loads((out / METADATA_FILE).read_text())
    assert [c["file"] for c in meta["chunks"]] == [chunk_file_name(0)] and not meta["complete"]
    monkeypatch.undo()
    assert main([*command, "--resume"]) == 0
    for name in sorted(p.name for p in reference.iterdir()):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_a_full_disk_during_checkpointing_keeps_the_previous_checkpoint(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = train(tiny_config(), tmp_path / "ref", dataset, wandb_mode="disabled").run_dir
    saves = {"count": 0}
    write = checkpoint_module._write

    def fill_the_disk(path: Path, data: bytes, digests: dict[str, str]) -> None:
        saves["count"] += 1
        if saves["count"] == 5:  # the model file of the second checkpoint (4 files each)
            Path(path).write_bytes(b"\0" * 100)
            raise ENOSPC
        write(path, data, digests)

    monkeypatch.setattr(checkpoint_module, "_write", fill_the_disk)
    run = tmp_path / "run"
    with pytest.raises(UserError) as caught:
        train(tiny_config(), run, dataset, wandb_mode="disabled")
    message = str(caught.value)
    assert "\n" not in message and "No space left on device" in message
    assert "the previous one is kept" in message and "--resume" in message
    assert json.loads((run / "checkpoint" / "trainer.json").read_text())["epoch"] == 1
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("checkpoint")) == [
        "checkpoint"
    ]
    monkeypatch.undo()
    train(tiny_config(), run, dataset, resume=True, wandb_mode="disabled")
    model = "checkpoint/model.safetensors"
    assert (run / model).read_bytes() == (reference / model).read_bytes()


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_over(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = train(tiny_config(1), tmp_path / "ref", dataset, wandb_mode="disabled").run_dir

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module, "_write", killed)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(1), run, dataset, wandb_mode="disabled")
    assert (run / "config.json").is_file() and not (run / "checkpoint").exists()
    monkeypatch.undo()
    assert main(["train", "--run-dir", str(run), "--resume", "--wandb", "disabled"]) == 0
    model = "checkpoint/model.safetensors"
    assert (run / model).read_bytes() == (reference / model).read_bytes()


# --- SIGTERM is Ctrl-C --------------------------------------------------------------------------


def test_sigterm_interrupts_a_command_as_ctrl_c_does_and_only_while_it_runs() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), sigterm_as_ctrl_c():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at the next bytecode; never reached
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.slow
def test_a_training_stopped_by_sigterm_says_how_to_continue_and_resumes(
    dataset: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    small = ["train.epochs=200", "model.hidden_sizes=[32]", "model.transition_hidden_sizes=[8]"]
    command = [sys.executable, "-m", "latentrl", "train", "--data", str(dataset), "--run-dir",
               str(run), "--wandb", "disabled", *(f"--set={s}" for s in small)]  # fmt: skip
    examples = str(ROOT / "docs" / "examples")  # the point mass env's module
    path = os.pathsep.join(p for p in (examples, os.environ.get("PYTHONPATH")) if p)
    env = os.environ | {"PYTHONPATH": path}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    trainer = run / "checkpoint" / "trainer.json"
    deadline = time.monotonic() + 120
    while not trainer.exists():
        assert time.monotonic() < deadline
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    stderr = process.stderr.read() if process.stderr else ""
    assert f"interrupted: continue with `latentrl train --run-dir {run} --resume`" in stderr
    assert "Traceback" not in stderr
    epoch = json.loads(trainer.read_text())["epoch"]
    assert 1 <= epoch < 200
    resumed = ["train", "--run-dir", str(run), "--resume", "--wandb", "disabled"]
    assert main([*resumed, "--set", f"train.epochs={epoch + 1}"]) == 0
    assert json.loads(trainer.read_text())["epoch"] == epoch + 1


# --- kill -9 and resume (slow) ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_trials_resume_bit_exact_without_orphans(tmp_path: Path) -> None:
    """Two kill trials of each command at seeded random points (see the script for more)."""
    faults = fault_injection()
    refs = faults.make_references(tmp_path / "reference")
    results = faults.run_trials(refs, 6, 1, tmp_path / "trials")
    assert [r.command for r in results] == [*faults.COMMANDS, *faults.COMMANDS]
    assert [r.note for r in results] == [""] * 6
    assert all(r.bit_exact and r.orphans == 0 for r in results)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_of_collect_with_workers_leaves_no_process_behind(tmp_path: Path) -> None:
    faults = fault_injection()
    out = tmp_path / "data"
    command = [*faults.LATENTRL, "collect", "latentrl/Pendulum-v0", "--transitions", "200000"]
    command += ["--chunk-size", "1000", "--workers", "2", "--out", str(out)]
    process = subprocess.Popen(
        command, env=faults.command_env(), stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / chunk_file_name(1)).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        below = faults.descendants(process.pid)
        assert len(below) >= 3  # two workers and the resource tracker
    finally:
        process.kill()
        process.wait()
    deadline = time.monotonic() + faults.GRACE_SECONDS
    while faults.alive(below, process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = faults.alive(below, process.pid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == set()
