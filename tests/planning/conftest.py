"""Planner tests run single-threaded."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny batched ops gain nothing from a second thread, and on a shared CPU they stall for
    milliseconds waiting for it (measured: a (3, 8, 8) bmm 15 ms median with another process
    busy on both cores, 6 µs single-threaded)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# tests/planning/options/ imports the shared problems of planning_problems.py.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
