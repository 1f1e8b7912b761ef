"""How many threads torch uses in a latentrl command: the CPUs the process may really use.

torch's default is every core of the machine, which oversubscribes a process confined to fewer
(a CPU affinity mask, a container's cgroup CPU quota) or a machine shared with other jobs.
``latentrl`` sets the count once, at its entry (:func:`configure_threads`), to the first of:

1. ``LATENTRL_THREADS``: torch's intra-op threads in latentrl commands;
2. ``OMP_NUM_THREADS``: the usual OpenMP setting (its first entry, for a list such as ``4,2``);
3. the CPUs available: those in the process's affinity mask (``os.sched_getaffinity``), capped
   by the cgroup CPU quota rounded up (``cpu.max`` of cgroup v2, ``cpu.cfs_quota_us`` /
   ``cpu.cfs_period_us`` of v1), at least 1.

Worker processes (collection workers, vector envs) inherit ``OMP_NUM_THREADS=1`` (and the MKL
and OpenBLAS equivalents): one thread each, unless the user set ``OMP_NUM_THREADS``, which then
applies to them as it does everywhere.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from latentrl.errors import UserError

THREADS_VARIABLE = "LATENTRL_THREADS"
WORKER_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def thread_count(affinity: int, quota: float | None, environ: Mapping[str, str]) -> int:
    """Torch's intra-op threads for a process that may run on ``affinity`` CPUs under a cgroup
    quota of ``quota`` CPUs (None: no quota), given the environment ``environ``.

    UserError when ``LATENTRL_THREADS`` is not a positive integer; an ``OMP_NUM_THREADS`` that
    is not one is ignored (it is not latentrl's to judge)."""
    ours = environ.get(THREADS_VARIABLE, "").strip()
    if ours:
        if not ours.isdigit() or int(ours) < 1:
            raise UserError(f"{THREADS_VARIABLE}={ours!r}: give a positive number of threads")
        return int(ours)
    omp = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isdigit() and int(omp) >= 1:
        return int(omp)
    count = max(affinity, 1)
    if quota is not None and quota > 0:
        count = min(count, math.ceil(quota))
    return max(count, 1)


def worker_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to ``environ`` so that worker processes run one thread each:
    none when the user set ``OMP_NUM_THREADS``."""
    if "OMP_NUM_THREADS" in environ:
        return {}
    return {name: "1" for name in WORKER_VARIABLES if name not in environ}


def parse_cpu_max(text: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` (``"QUOTA PERIOD"``; ``"max ..."``: None)."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs(quota_text: str, period_text: str) -> float | None:
    """CPUs allowed by cgroup v1 ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` (-1: None)."""
    try:
        quota, period = int(quota_text), int(period_text)
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def cgroup_quota(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The tightest CPU quota (in CPUs) of this process's cgroup and its ancestors, v2 or v1;
    None when there is none or it cannot be read."""
    quotas: list[float] = []
    for folder in _cgroup_folders(root, proc_cgroup):
        v2 = _read(folder / "cpu.max")
        if v2 is not None and (quota := parse_cpu_max(v2)) is not None:
            quotas.append(quota)
        cfs = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        if cfs[0] is not None and cfs[1] is not None and (quota := parse_cfs(*cfs)) is not None:
            quotas.append(quota)
    return min(quotas) if quotas else None


def available_cpus() -> tuple[int, float | None]:
    """``(CPUs in the affinity mask, cgroup quota in CPUs or None)`` of this process."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        affinity = os.cpu_count() or 1
    return affinity, cgroup_quota()


def configure_threads(environ: MutableMapping[str, str] = os.environ) -> int:
    """Set torch's intra-op threads for this process (:func:`thread_count` of the CPUs
    available) and one thread for the workers it starts; returns the count."""
    import torch

    count = thread_count(*available_cpus(), environ)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    environ.update(worker_environment(environ))
    return count


def _cgroup_folders(root: Path, proc_cgroup: Path) -> list[Path]:
    """The cgroup folders (v2 unified and v1 cpu) of this process, innermost first, then
    their ancestors up to ``root``."""
    text = _read(proc_cgroup) or ""
    folders: list[Path] = []
    for line in text.splitlines():
        _, controllers, relative = [*line.split(":", 2), "", ""][:3]
        if controllers == "":
            base = root
        elif "cpu" in controllers.split(","):
            base = root / "cpu" if (root / "cpu").is_dir() else root / controllers
        else:
            continue
        leaf = base / relative.lstrip("/")
        folders += [leaf, *(p for p in leaf.parents if p.is_relative_to(base))]
    return list(dict.fromkeys(folders)) or [root]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
