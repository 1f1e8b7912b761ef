"""The GPU benchmark script builds each kind's batches as training does and runs on a CPU."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("kind", "rows", "future"), [("e2c", 16, 7), ("filter", 2, 7), ("pcc", 16, 0), ("pc3", 16, 0)]
)
def test_each_kind_gets_the_batch_training_gives_it(
    bench: ModuleType, kind: str, rows: int, future: int
) -> None:
    config = bench.bench_config(kind)
    batches = bench.training_batches(config, 16, torch.device("cpu"))
    assert len(batches) == bench.POOL
    x_t, u_t, x_next, continuation = batches[0]
    assert x_t.shape == (rows, 2, 48, 48) and x_t.dtype == torch.uint8
    assert u_t.shape == (rows, 1) and x_next.shape == x_t.shape
    if future:
        assert continuation.next_obs.shape == (rows, future, 2, 48, 48)
        assert bool(continuation.valid.all())
    else:
        assert continuation is None


def test_another_experiments_batches_are_its_envs_frames(bench: ModuleType) -> None:
    config = bench.bench_config("e2c", "planar", "debug")
    x_t, u_t, x_next, _ = bench.training_batches(config, 4, torch.device("cpu"))[0]
    assert x_t.shape == (4, *config.model.obs_shape) and u_t.shape == (4, 2)
    assert x_next.shape == x_t.shape and 0 < float(x_t.float().mean()) < 255
    rate = bench.time_training("e2c", 4, 1, torch.device("cpu"), False, False, ("planar", "debug"))
    assert math.isfinite(rate) and rate > 0
    args = bench.parse_args(["--quick", "--device", "cpu", "--experiment", "planar", "debug"])
    assert args.experiment == ["planar", "debug"]
    with pytest.raises(SystemExit):  # argparse's one-line usage error, not a traceback
        bench.parse_args(["--experiment", "nosuch", "full"])


def test_a_training_step_is_timed_and_quick_mode_fits_a_cpu(bench: ModuleType) -> None:
    for bf16 in (False, True):
        rate = bench.time_training("pc3", 16, 1, torch.device("cpu"), compile_loss=False, bf16=bf16)
        assert math.isfinite(rate) and rate > 0
    args = bench.parse_args(["--quick", "--device", "cpu"])
    assert args.batch_sizes == [128] and args.pipeline == "skip" and args.shooting == 16
    assert args.precisions == ["float32"]  # bf16 by default on a GPU only
    assert args.episodes == [20, 1_000] and sorted(args.kinds) == ["e2c", "filter", "pc3", "pcc"]
    assert args.experiment == ["pendulum", "full"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "usage: bash scripts/gpu_check.sh prepare | run STAGE OUT"),
        (["run", "tests"], "usage: bash scripts/gpu_check.sh run STAGE OUT"),
    ],
)
def test_the_gpu_check_script_says_how_to_call_it(args: list[str], message: str) -> None:
    script = SCRIPT.parents[2] / "scripts" / "gpu_check.sh"
    done = subprocess.run(["bash", str(script), *args], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip() == message
