"""Training on several processes: N gloo processes train the weights one process trains."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from latentrl.cli import main
from latentrl.config import TrainConfig
from latentrl.distributed import GlobalBatchNoise, World, check_world, shard
from latentrl.errors import UserError
from latentrl.logging import read_metrics
from latentrl.losses.batch_shards import block_start
from latentrl.losses.multi_step import multi_step_error
from latentrl.losses.pc3 import info_nce

TINY = [
    "--experiment",
    "pendulum",
    "--preset",
    "debug",
    "--set",
    "data.transitions=300",
    "--set",
    "train.epochs=1",
    "--set",
    "train.batch_size=128",
    "--set",
    "train.probe_steps=5",
    "--set",
    "model.hidden_sizes=[32, 32]",
    "--wandb",
    "disabled",
]
"""The pendulum debug experiment cut to 2 steps of 128 transitions (300 collected, 270 for
training), with the multi-step term over windows of 8."""


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoint" / "model.safetensors")


def _max_difference(a: Path, b: Path) -> float:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def _train(tmp_path: Path, name: str, *extra: str) -> list[str]:
    places = ["--data-root", str(tmp_path / "data"), "--run-dir", str(tmp_path / name)]
    return ["train", *TINY, *places, *extra]


def test_a_block_of_the_global_batch_per_rank() -> None:
    rows = torch.arange(8)
    assert shard(rows, World(rank=1, size=2)).tolist() == [4, 5, 6, 7]
    assert shard(rows, World()).tolist() == list(range(8))
    check_world(TrainConfig(batch_size=64), 8, True, World(size=2))  # 8 windows: 4 each
    check_world(TrainConfig(batch_size=7, compile=True), 8, True, World())  # one process
    with pytest.raises(UserError, match=r"train.batch_size // 8 .* 8 rows per step"):
        check_world(TrainConfig(batch_size=64), 8, True, World(size=3))
    with pytest.raises(UserError, match=r"train\.batch_size gives 10 rows per step"):
        check_world(TrainConfig(batch_size=10), 8, False, World(size=4))
    with pytest.raises(UserError, match=r"train\.compile=true on 2 processes"):
        check_world(TrainConfig(batch_size=64, compile=True), 1, False, World(size=2))


def test_each_rank_draws_the_noise_one_process_draws_for_its_rows() -> None:
    torch.manual_seed(3)
    whole = torch.randn(6, 2), torch.randn(6, 3)
    for rank in (0, 1):
        torch.manual_seed(3)
        like = torch.zeros(3, 2)
        with GlobalBatchNoise(3, World(rank=rank, size=2)):
            block = torch.randn_like(like), torch.randn((3, 3), dtype=torch.float32)
            other = torch.randn(5)  # not batch-shaped: drawn as it is
        assert torch.equal(block[0], whole[0][3 * rank : 3 * rank + 3])
        assert torch.equal(block[1], whole[1][3 * rank : 3 * rank + 3])
        torch.manual_seed(3)
        torch.randn(6, 2), torch.randn(6, 3)
        assert torch.equal(other, torch.randn(5))  # the RNG advanced as in one process


def test_the_multi_step_mean_counts_the_valid_windows_of_the_whole_batch() -> None:
    torch.manual_seed(0)
    predicted, target = torch.randn(8, 3, 2), torch.randn(8, 3, 2)
    logvar = torch.randn(8, 3, 2) * 0.1
    valid = torch.tensor([1, 1, 1, 0, 0, 0, 1, 0], dtype=torch.bool)  # 3 and 1 per half
    whole = multi_step_error(predicted, target, logvar, valid).mean()
    halves = [
        multi_step_error(predicted[s], target[s], logvar[s], valid[s], valid).mean()
        for s in (slice(0, 4), slice(4, 8))
    ]
    assert torch.allclose((halves[0] + halves[1]) / 2, whole, rtol=1e-6)
    unequal = [multi_step_error(predicted[s], target[s], logvar[s], valid[s]).mean()
               for s in (slice(0, 4), slice(4, 8))]  # fmt: skip
    assert not torch.allclose((unequal[0] + unequal[1]) / 2, whole, rtol=1e-3)


def test_infonce_of_a_block_of_rows_is_that_block_of_the_whole_batchs() -> None:
    torch.manual_seed(0)
    scores = torch.randn(6, 6)  # rows: next latents, columns: every row's dynamics
    whole = info_nce(scores)
    blocks = [info_nce(scores[3 * r : 3 * r + 3], offset=3 * r) for r in (0, 1)]
    assert torch.equal(torch.cat(blocks), whole)
    assert block_start(3) == 0  # outside a training step on several processes


def test_two_gloo_processes_train_the_weights_of_one(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert main(_train(tmp_path, "one")) == 0
    capfd.readouterr()
    assert main(_train(tmp_path, "two", "--nproc", "2")) == 0
    assert capfd.readouterr().out.count("trained 1 epochs (2 steps)") == 1  # rank 0 alone
    assert _max_difference(tmp_path / "one", tmp_path / "two") < 1e-5
    rows = [read_metrics(tmp_path / name) for name in ("one", "two")]
    assert len(rows[0]) == len(rows[1])
    for key in ("train/loss/total", "train/loss/multi_step", "val/loss/total"):
        assert rows[1][0][key] == pytest.approx(rows[0][0][key], rel=1e-5), key
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )


@pytest.mark.gpu
def test_two_nccl_processes_train_the_weights_of_one(tmp_path: Path) -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    on_gpu = ["--set", "train.device=cuda"]
    assert main(_train(tmp_path, "one", *on_gpu)) == 0
    assert main(_train(tmp_path, "two", *on_gpu, "--nproc", "2")) == 0
    assert _max_difference(tmp_path / "one", tmp_path / "two") < 1e-4


def test_a_batch_that_does_not_split_is_refused_before_any_process_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _train(tmp_path, "run", "--nproc", "3")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "do not split evenly across 3 processes" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["filter", "pcc", "pc3"])
def test_every_kind_trained_on_two_processes_matches_one(kind: str, tmp_path: Path) -> None:
    extra = ["--set", f"model.kind={kind}"]
    assert main(_train(tmp_path, "one", *extra)) == 0
    assert main(_train(tmp_path, "two", *extra, "--nproc", "2")) == 0
    assert _max_difference(tmp_path / "one", tmp_path / "two") < 1e-5


@pytest.mark.slow
def test_ctrl_c_stops_every_rank_and_any_number_of_processes_resumes(tmp_path: Path) -> None:
    longer = ["--set", "train.epochs=3", "--set", "data.transitions=1000"]
    assert main(_train(tmp_path, "one", *longer)) == 0
    command = [sys.executable, "-m", "latentrl", *_train(tmp_path, "cut", *longer, "--nproc", "2")]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, text=True)
    trainer = tmp_path / "cut" / "checkpoint" / "trainer.json"
    deadline = time.monotonic() + 120
    while not (trainer.exists() and json.loads(trainer.read_text())["epoch"] >= 1):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the launcher and every rank
    assert process.wait(timeout=60) == 130
    assert json.loads(trainer.read_text())["epoch"] < 3
    resumed = ["train", "--run-dir", str(tmp_path / "cut"), "--resume", "--wandb", "disabled"]
    assert main(resumed) == 0  # on one process
    assert _max_difference(tmp_path / "one", tmp_path / "cut") < 1e-5
