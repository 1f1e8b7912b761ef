"""Which block of the whole batch an objective sees, when training runs on several processes.

On one process (or outside training) an objective's batch is the whole batch. Inside a
training step on several processes (:mod:`latentrl.distributed`), each process holds a
contiguous block of the whole batch; an objective that couples its rows other than through a
mean (PC3's InfoNCE, whose negatives are the other rows) reads the whole batch through
:func:`whole_batch` and finds its own rows at :func:`block_start`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor

_BLOCK: ContextVar[tuple[int, int] | None] = ContextVar("batch_block", default=None)
"""(rank, processes) while a training step on several processes runs; None otherwise."""


@contextmanager
def batch_block(rank: int, processes: int) -> Iterator[None]:
    """Within the ``with`` block, this process's batch is block ``rank`` of ``processes``
    equal blocks of the whole batch (the process group of ``torch.distributed`` joins them)."""
    token = _BLOCK.set((rank, processes))
    try:
        yield
    finally:
        _BLOCK.reset(token)


def whole_batch(x: Tensor) -> Tensor:
    """``x (b, ...)``, this process's rows, as the whole batch's ``(processes * b, ...)``:
    every process's block in rank order, differentiable (the gradient of every copy reaches
    the process that holds the rows). ``x`` itself on one process."""
    if _BLOCK.get() is None:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def block_start(rows: int) -> int:
    """Index in the whole batch of this process's first row, its blocks ``rows`` long."""
    block = _BLOCK.get()
    return 0 if block is None else block[0] * rows
