"""Torch's threads from the CPUs a process may use: affinity, cgroup quota, environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from latentrl import cli, threads
from latentrl.errors import UserError
from latentrl.threads import (
    cgroup_quota,
    parse_cfs,
    parse_cpu_max,
    thread_count,
    worker_environment,
)

# (affinity, quota, environment) -> threads
TABLE = [
    (2, None, {}, 2),
    (16, None, {}, 16),
    (16, 4.0, {}, 4),
    (16, 1.5, {}, 2),  # a quota of 1.5 CPUs: rounded up
    (16, 0.2, {}, 1),
    (2, 8.0, {}, 2),  # the affinity mask is tighter than the quota
    (0, None, {}, 1),
    (16, 4.0, {"OMP_NUM_THREADS": "3"}, 3),
    (16, 4.0, {"OMP_NUM_THREADS": "6,2"}, 6),  # an OpenMP list: its first level
    (16, 4.0, {"OMP_NUM_THREADS": "lots"}, 4),  # not ours to judge: ignored
    (16, 4.0, {"OMP_NUM_THREADS": "0"}, 4),
    (16, 4.0, {"LATENTRL_THREADS": "8"}, 8),
    (16, 4.0, {"LATENTRL_THREADS": "8", "OMP_NUM_THREADS": "1"}, 8),  # ours wins
    (16, 4.0, {"LATENTRL_THREADS": " ", "OMP_NUM_THREADS": "5"}, 5),  # empty: unset
]


@pytest.mark.parametrize(("affinity", "quota", "environ", "expected"), TABLE)
def test_thread_count(
    affinity: int, quota: float | None, environ: dict[str, str], expected: int
) -> None:
    assert thread_count(affinity, quota, environ) == expected


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_latentrl_threads_is_one_clear_error(value: str) -> None:
    with pytest.raises(UserError, match=f"LATENTRL_THREADS='{value}': give a positive number"):
        thread_count(4, None, {"LATENTRL_THREADS": value})


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}),
        ({"MKL_NUM_THREADS": "2"}, {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}),
        ({"OMP_NUM_THREADS": "4"}, {}),  # the user's choice holds in workers too
        ({"LATENTRL_THREADS": "4"}, {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                                     "OPENBLAS_NUM_THREADS": "1"}),
    ],
)  # fmt: skip
def test_workers_get_one_thread(environ: dict[str, str], expected: dict[str, str]) -> None:
    assert worker_environment(environ) == expected


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("max 100000", None), ("200000 100000", 2.0), ("150000 100000", 1.5), ("", None),
     ("x 100000", None), ("0 100000", None)],
)  # fmt: skip
def test_parse_cpu_max(text: str, cpus: float | None) -> None:
    assert parse_cpu_max(text) == cpus


def test_parse_cfs() -> None:
    assert parse_cfs("-1", "100000") is None
    assert parse_cfs("50000", "100000") == 0.5
    assert parse_cfs("", "100000") is None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_cgroup_quota_takes_the_tightest_of_the_group_and_its_parents(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    v2 = tmp_path / "v2"
    _write(proc, "0::/machine/job")
    _write(v2 / "machine" / "job" / "cpu.max", "max 100000")
    _write(v2 / "machine" / "cpu.max", "300000 100000")
    _write(v2 / "cpu.max", "800000 100000")
    assert cgroup_quota(v2, proc) == 3.0
    # cgroup v1: cpu,cpuacct controllers, the quota in cpu.cfs_quota_us of the group
    v1 = tmp_path / "v1"
    _write(proc, "4:memory:/x\n1:cpu,cpuacct:/job\n0::/")
    _write(v1 / "cpu" / "job" / "cpu.cfs_quota_us", "150000")
    _write(v1 / "cpu" / "job" / "cpu.cfs_period_us", "100000")
    _write(v1 / "cpu" / "cpu.cfs_quota_us", "-1")
    _write(v1 / "cpu" / "cpu.cfs_period_us", "100000")
    assert cgroup_quota(v1, proc) == 1.5
    assert cgroup_quota(tmp_path / "none", tmp_path / "missing") is None


def test_the_cli_sets_the_threads_for_itself_and_one_for_its_workers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(threads, "available_cpus", lambda: (5, 3.0))
    for name in ("LATENTRL_THREADS", *threads.WORKER_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    try:
        assert cli.main(["experiments"]) == 0
        assert torch.get_num_threads() == 3
        assert {name: os.environ[name] for name in threads.WORKER_VARIABLES} == {
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        }
        monkeypatch.setenv("LATENTRL_THREADS", "2")
        assert cli.main(["experiments"]) == 0
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("LATENTRL_THREADS", "zero")
        assert cli.main(["experiments"]) == 2
        assert (
            capsys.readouterr()
            .err.strip()
            .endswith("LATENTRL_THREADS='zero': give a positive number of threads")
        )
    finally:
        torch.set_num_threads(before)
