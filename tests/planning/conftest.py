"""Planner tests run single-threaded."""

from collections.abc import Iterator

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
