"""Training on several processes with DistributedDataParallel (torchrun, ``train --nproc N``).

Every process (rank) holds the whole dataset and the same model. Each draws the same global
batch of ``train.batch_size`` rows from the same data-order generator and trains on its own
contiguous block of it (:func:`shard`); DDP averages the gradients, so a step sees the mean
over the global batch, as one process would. The reparameterisation noise is drawn for the
whole global batch on every rank, each keeping its block (:class:`GlobalBatchNoise`): with the
same seed, N processes train the same weights as one process, up to the order of float sums.

Rank 0 writes (run directory, checkpoints, metrics, W&B); the other ranks log nothing
(:class:`QuietLogger`). Every rank validates the whole validation split itself, so every rank
decides alike when an epoch diverges. The backend is NCCL on CUDA, gloo on the CPU.

An objective that couples the rows of a batch other than through a mean (PC3's InfoNCE, whose
negatives are the other rows) reads the whole batch through
:func:`latentrl.losses.batch_shards.whole_batch`.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from latentrl.data import TransitionDataset
from latentrl.errors import UserError
from latentrl.losses import Continuation, GoalCostTarget
from latentrl.losses.batch_shards import batch_block

if TYPE_CHECKING:
    from latentrl.config import TrainConfig

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def writes(self) -> bool:
        """Whether this process writes the run (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def block(self) -> tuple[int, int]:
        """``(rank, size)``: which block of each batch this process trains on."""
        return self.rank, self.size


def launched_world(environ: Mapping[str, str] = os.environ) -> World:
    """The world torchrun describes in ``environ`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``);
    one process when it describes none."""
    try:
        return World(
            rank=int(environ.get("RANK", "0")),
            size=int(environ.get("WORLD_SIZE", "1")),
            local_rank=int(environ.get("LOCAL_RANK", "0")),
        )
    except ValueError:
        raise UserError(
            "RANK, WORLD_SIZE or LOCAL_RANK is not an integer; start several processes with "
            "torchrun or `latentrl train --nproc N`"
        ) from None


def current_world() -> World:
    """The world of the initialised process group (one process when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    launched = launched_world()
    return World(dist.get_rank(), dist.get_world_size(), launched.local_rank)


def rank_device(device: torch.device, world: World) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for CUDA with several processes (one GPU
    per process), else ``device``."""
    if device.type == "cuda" and world.distributed:
        if world.local_rank >= torch.cuda.device_count():
            raise UserError(
                f"process {world.local_rank} of this node has no GPU: the node has "
                f"{torch.cuda.device_count()}; start at most that many processes per node"
            )
        return torch.device("cuda", world.local_rank)
    return device


@contextmanager
def process_group(device: torch.device, world: World) -> Iterator[World]:
    """Join the process group of ``world`` for the ``with`` block (NCCL on CUDA, gloo on the
    CPU) and leave it after; nothing for one process."""
    if not world.distributed:
        yield world
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    try:
        yield current_world()
    finally:
        dist.destroy_process_group()


def decided_by_rank0(world: World, decide: Callable[[], T]) -> T:
    """``decide()`` run on rank 0 only, its result (or its UserError) given to every rank:
    what must be decided once (the run directory, the dataset collected)."""
    if not world.distributed:
        return decide()
    box: list[Any] = [None]
    if world.writes:
        try:
            box[0] = ("ok", decide())
        except UserError as exc:
            box[0] = ("error", str(exc))
            dist.broadcast_object_list(box, src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise SharedUserError(value)
    return value


class SharedUserError(UserError):
    """A UserError rank 0 raised and reported; the other ranks exit with it quietly."""


def check_world(train: TrainConfig, window: int, whole_windows: bool, world: World) -> None:
    """UserError unless ``train`` can run on ``world``'s processes: a step's rows
    (``train.batch_size`` transitions, or for a kind trained on whole windows,
    ``batch_size // window`` windows) must split evenly (unequal blocks would weigh the rows
    unequally in the averaged gradient), and the objective is not compiled (the noise of the
    whole batch, :class:`GlobalBatchNoise`, does not compile)."""
    if not world.distributed:
        return
    if train.compile:
        raise UserError(
            f"train.compile=true on {world.size} processes is not supported yet (the noise of "
            "the whole batch that makes them train one process's weights does not compile); "
            "set train.compile=false, or train compiled on one process"
        )
    rows, key = train.batch_size, "train.batch_size"
    if whole_windows and window > 1:
        rows, key = rows // window, f"train.batch_size // {window} (windows of {window})"
    if rows % world.size:
        raise UserError(
            f"{key} gives {rows} rows per step, which do not split evenly across "
            f"{world.size} processes; choose a train.batch_size that does"
        )


def shard(rows: Tensor, world: World) -> Tensor:
    """This rank's contiguous block of the global batch's ``rows (B,)``: ``(B / size,)``."""
    if not world.distributed:
        return rows
    return rows.view(world.size, -1)[world.rank]


class GlobalBatchNoise(TorchFunctionMode):
    """While active, a normal draw (``torch.randn``, ``torch.randn_like``) whose first
    dimension is this rank's ``rows`` draws for all ``world.size * rows`` rows of the global
    batch and keeps this rank's block: the global RNG advances as in one process, and each row
    gets the noise one process would give it. Other draws pass through unchanged."""

    def __init__(self, rows: int, world: World) -> None:
        super().__init__()
        self.rows, self.world = rows, world

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Sequence[type],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = dict(kwargs or {})
        if func is torch.randn_like and args and args[0].dim() >= 1:
            like = args[0]
            if like.shape[0] == self.rows:
                kwargs.setdefault("dtype", like.dtype)
                kwargs.setdefault("device", like.device)
                kwargs.pop("memory_format", None)
                return self._block(torch.randn(self._whole(like.shape), **kwargs))
        if func is torch.randn:
            shape = args[0] if len(args) == 1 and not isinstance(args[0], int) else args
            if len(shape) >= 1 and shape[0] == self.rows:
                return self._block(torch.randn(self._whole(shape), **kwargs))
        return func(*args, **kwargs)

    def _whole(self, shape: Sequence[int]) -> tuple[int, ...]:
        return (self.rows * self.world.size, *shape[1:])

    def _block(self, whole: Tensor) -> Tensor:
        start = self.world.rank * self.rows
        return whole[start : start + self.rows]


class ObjectiveModule(nn.Module):
    """The model with its objective as ``forward``, the module DDP wraps: DDP syncs the
    gradients of what runs inside its ``forward``."""

    def __init__(self, model: nn.Module, objective: Callable[..., Any], loss: Any) -> None:
        super().__init__()
        self.model, self.objective, self.loss = model, objective, loss

    def forward(
        self, x_t: Tensor, u_t: Tensor, x_next: Tensor, continuation: Continuation | None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return self.objective(self.model, x_t, u_t, x_next, self.loss, continuation)


class BatchObjective:
    """A training step's objective on the global batch's rows ``index (B,)``: on one process
    the whole batch; on several, this rank's block through DDP, with the noise one process
    would draw for those rows."""

    def __init__(
        self,
        model: nn.Module,
        objective: Callable[..., tuple[Tensor, dict[str, Tensor]]],
        loss: Any,
        data: TransitionDataset,
        windows: tuple[Callable[[Tensor], Continuation | None], Tensor | None],
        world: World,
        goal_cost: GoalCostTarget | None = None,
    ) -> None:
        self.model, self.objective, self.loss, self.data = model, objective, loss, data
        self.continuation, self.window_start = windows
        """``continuation(rows)``: the steps after training rows ``(B,)``; ``window_start``
        ``(N,)``: which rows start a whole window (None: no windows)."""
        self.world = world
        self.goal_cost = goal_cost
        """The goal-cost term added to the kind's objective (one process only); None: off."""
        if world.distributed:
            self.objective = ddp_objective(model, objective, loss)

    def __call__(self, index: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        local = shard(index, self.world)
        batch = self.data.batch(local)
        cont = self.continuation(local)
        if not self.world.distributed:
            loss, metrics = self.objective(
                self.model, batch.obs, batch.action, batch.next_obs, self.loss, cont
            )
            if self.goal_cost is None:
                return loss, metrics
            value = self.goal_cost.term(lambda x: self.model.encode(x).mean, batch.obs, local)
            loss = loss + self.goal_cost.config.weight * value
            return loss, metrics | {"loss/goal_cost": value.detach(), "loss/total": loss.detach()}
        if cont is not None and self.window_start is not None:
            # a mean over valid windows counts those of the whole batch
            cont = cont._replace(batch_valid=self.window_start[index])
        with GlobalBatchNoise(len(local), self.world), batch_block(*self.world.block):
            return self.objective(batch.obs, batch.action, batch.next_obs, cont)


def ddp_objective(
    model: nn.Module, objective: Callable[..., Any], loss: Any
) -> Callable[..., tuple[Tensor, dict[str, Tensor]]]:
    """``objective(model, x_t, u_t, x_next, loss, continuation)`` as a DDP module's call
    ``(x_t, u_t, x_next, continuation)``. Every kind's objective uses every parameter of its
    model in every step, so DDP does not search the graph for unused ones."""
    module = ObjectiveModule(model, objective, loss)
    return nn.parallel.DistributedDataParallel(module)


def mean_over_ranks(values: dict[str, Tensor], world: World) -> dict[str, Tensor]:
    """Each of ``values`` (scalars) averaged over the ranks, in one all-reduce."""
    if not world.distributed or not values:
        return values
    keys = list(values)  # the same order on every rank
    stacked = torch.stack([values[k].detach().float() for k in keys])
    dist.all_reduce(stacked)
    stacked /= world.size
    return dict(zip(keys, stacked.unbind(), strict=True))


class QuietLogger:
    """The logger of a rank that does not write: the :class:`latentrl.logging.Logger` calls
    the training loop makes, doing nothing."""

    def echo(self, message: str) -> None:
        pass

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        pass

    def log_images(self, images: Mapping[str, Any], step: int) -> dict:
        return {}

    def log_summary(self, metrics: Mapping[str, Any]) -> None:
        pass

    def update_progress(self, n: int = 1, postfix: Mapping[str, float] | None = None) -> None:
        pass

    @contextmanager
    def progress(self, total: int, initial: int = 0, desc: str = "") -> Iterator[None]:
        yield

    def __enter__(self) -> QuietLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m latentrl ARGV`` in ``nproc`` processes on this machine through torch's
    elastic launcher (what ``torchrun --standalone --nproc-per-node N`` does); returns the
    exit status: 0, the first failed process's status, or 130 after Ctrl-C."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from latentrl.threads import available_cpus, thread_count

    if "OMP_NUM_THREADS" not in os.environ and "LATENTRL_THREADS" not in os.environ:
        # each process gets its share of the CPUs, as torchrun gives one thread by default
        os.environ["OMP_NUM_THREADS"] = str(max(1, thread_count(*available_cpus(), {}) // nproc))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.1,
    )
    try:
        elastic_launch(config, sys.executable)("-m", "latentrl", *argv)
    except ChildFailedError as exc:
        codes = [failure.exitcode for failure in exc.failures.values()]
        first = exc.get_first_failure()[1].exitcode
        return 130 if 130 in codes else (first if first > 0 else 1)
    except (SignalException, KeyboardInterrupt):
        return 130
    return 0
