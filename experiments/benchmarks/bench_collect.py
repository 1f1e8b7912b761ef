"""Benchmark: collection throughput (transitions/s) per env and mode, and dataset load time.

Usage::

    python experiments/benchmarks/bench_collect.py [--transitions 20000] [--load 100000]
        [--envs ...]

Each collection writes a real dataset (into a temporary directory) through the same code path
as ``latentrl collect``; the time includes rendering, compression and writing, and excludes
Python start-up. The load benchmark collects ``--load`` pendulum transitions once, then times
``load_transitions`` (checksums, decompression, tensors).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from latentrl.collect import collect
from latentrl.data import load_transitions

ROW = "{:32s} {:8s} {:>7} {:>11} {:>8} {:>9}"
DEFAULT_RUNS = (
    ("latentrl/Pendulum-v0", "uniform", 1),
    ("latentrl/Pendulum-v0", "rollout", 1),
    ("latentrl/Planar-v0", "uniform", 1),
    ("latentrl/PendulumSwingup-v0", "uniform", 2),
    ("latentrl/PendulumSwingup-v0", "rollout", 2),
    ("latentrl/CartpoleSwingup-v0", "uniform", 2),
    ("latentrl/CartpoleSwingup-v0", "rollout", 2),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transitions", type=int, default=20_000)
    parser.add_argument("--mujoco-transitions", type=int, default=5_000)
    parser.add_argument("--load", type=int, default=100_000, help="0 skips the load benchmark")
    parser.add_argument("--envs", nargs="*", help="only these env ids")
    args = parser.parse_args()

    print(f"machine: {platform.machine()}, {platform.python_version()}")
    print(ROW.format("env", "mode", "workers", "transitions", "seconds", "per s"))
    with tempfile.TemporaryDirectory() as tmp:
        for index, (env_id, mode, workers) in enumerate(DEFAULT_RUNS):
            if args.envs and env_id not in args.envs:
                continue
            count = args.mujoco_transitions if "Swingup" in env_id else args.transitions
            start = time.perf_counter()
            collect(
                env_id, count, Path(tmp) / str(index), mode=mode, workers=workers, progress=False
            )
            seconds = time.perf_counter() - start
            rate = f"{count / seconds:,.0f}"
            print(ROW.format(env_id, mode, workers, count, f"{seconds:.2f}", rate))
        if args.load:
            path = collect("latentrl/Pendulum-v0", args.load, Path(tmp) / "load", progress=False)
            size = sum(p.stat().st_size for p in path.iterdir()) / 2**20
            start = time.perf_counter()
            data = load_transitions(path)
            seconds = time.perf_counter() - start
            print(
                f"load {len(data):,} pendulum transitions ({size:.0f} MiB on disk, "
                f"{data.obs.nbytes * 2 / 2**20:.0f} MiB of images in memory): {seconds:.2f} s"
            )


if __name__ == "__main__":
    main()
