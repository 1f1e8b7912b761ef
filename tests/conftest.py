"""Shared fixtures. The plug-in example of docs/new_environment.md is importable in tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from latentrl.threads import THREADS_VARIABLE, thread_count

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread unless LATENTRL_THREADS or OMP_NUM_THREADS ask for more: the tests'
    tensors are small, and on a 2-core machine one thread ran the suite faster than two. The
    count goes into LATENTRL_THREADS too, so that the CLI, in this process or another, keeps
    it (:mod:`latentrl.threads`)."""
    threads, before = torch.get_num_threads(), os.environ.get(THREADS_VARIABLE)
    count = thread_count(affinity=1, quota=None, environ=os.environ)
    os.environ[THREADS_VARIABLE] = str(count)
    torch.set_num_threads(count)
    yield
    torch.set_num_threads(threads)
    if before is None:
        os.environ.pop(THREADS_VARIABLE, None)
    else:
        os.environ[THREADS_VARIABLE] = before


@pytest.fixture(autouse=True)
def _no_wandb_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never talk to the W&B service."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")
