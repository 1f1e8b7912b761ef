"""Joint training of the E2C encoder, transition and decoder (``latentrl train``).

The whole dataset is moved to the device once; minibatches are fixed-shape index slices of a
seeded permutation (the last partial batch is dropped), which keeps shapes static for
``torch.compile``. Metrics are summed on the device and read once per epoch, so the GPU is
never waited on inside an epoch. Every epoch ends with validation on the held-out split and a
checkpoint, kept only when the validation losses, weights and optimizer state are all finite
(else :class:`TrainingDivergedError`); ``resume=True`` continues a killed run from its last
checkpoint with the same weights, optimizer state, step counter, generators and W&B run (a run
killed before its first checkpoint starts over: the same seeds give the same weights).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from latentrl import distributed
from latentrl.checkpoint import (
    TrainerState,
    has_checkpoint,
    kept_checkpoint,
    load_checkpoint,
    nonfinite_tensors,
    save_checkpoint,
)
from latentrl.config import ExperimentConfig, load_config, save_config, to_dict
from latentrl.data import TransitionDataset, load_transitions
from latentrl.devices import resolve_device
from latentrl.envs import (
    ControlEnv,
    goal_observation,
    make_env,
    require_control_env,
    state_costs,
)
from latentrl.errors import UserError
from latentrl.kinds import build_model, model_kind
from latentrl.latent_diagnostics import (
    encode_rollouts,
    latent_stretch,
    open_loop_error,
    random_rollouts,
    state_step_sizes,
)
from latentrl.locks import hold
from latentrl.logging import Logger, resolve_wandb_mode, run_group, summary_line
from latentrl.losses import Continuation, GoalCostConfig, GoalCostTarget
from latentrl.models import E2C
from latentrl.recipe import experiment_and_preset
from latentrl.run_directory import RunDirectory
from latentrl.training_report import latent_map_image, probe_r2, reconstruction_grid
from latentrl.training_windows import (
    continuation,
    validation_windows,
    window_key,
    window_mask,
)

VALIDATION_BATCH = 1_024
VALIDATION_SEED = 1_234  # fixed noise: validation losses of different epochs are comparable
OPEN_LOOP_EPISODES = 64
OPEN_LOOP_STEPS = (1, 10, 20, 40)
"""Validation reports the open-loop error
(:func:`latentrl.latent_diagnostics.open_loop_error`) after these many steps: what a planner
with that horizon relies on."""


class TrainingDivergedError(UserError):
    """The loss, a validation loss, a weight or an optimizer state became NaN or infinite;
    the epoch is not saved, and the checkpoint before it (if any) is kept."""


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    epochs: int
    steps: int
    final_metrics: Mapping[str, float]


def train(
    config: ExperimentConfig,
    run_dir: Path,
    dataset_dir: Path,
    *,
    resume: bool = False,
    wandb_mode: str | None = None,
) -> TrainResult:
    """Train ``config`` on the dataset in ``dataset_dir``, writing everything to ``run_dir``.

    In a process group (torchrun, :mod:`latentrl.distributed`) every rank calls it with the
    same arguments: each trains on its block of every batch, rank 0 writes the run."""
    world = distributed.current_world()
    if not world.writes:
        return _train(config, Path(run_dir), dataset_dir, resume, wandb_mode, world)
    with hold(Path(run_dir)):
        return _train(config, Path(run_dir), dataset_dir, resume, wandb_mode, world)


def _train(
    config: ExperimentConfig,
    run_dir: Path,
    dataset_dir: Path,
    resume: bool,
    wandb_mode: str | None,
    world: distributed.World,
) -> TrainResult:
    paths = RunDirectory(run_dir)
    if resume:
        # A run killed before its first checkpoint holds its config only: it starts over.
        paths.require_run()
        saved = load_config(paths.config)
        if to_dict(saved.model) != to_dict(config.model) or saved.data != config.data:
            raise UserError(
                f"--resume: the model or data config differs from the one {run_dir} was "
                "started with; resume without changing them (only train.* may change)"
            )
    elif world.writes:
        paths.require_new()
    try:
        device = distributed.rank_device(resolve_device(config.train.device), world)
        train_set, val_set, window_start = _checked_data(config, dataset_dir, world)
    except UserError:
        if world.writes and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # the empty directory new_run_dir reserved
        raise
    if world.writes:  # only now, with the data checked, does the run directory get written
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, paths.config)
        paths.record_dataset(dataset_dir)
    train_set, val_set = train_set.to(device), val_set.to(device)
    if window_start is not None:
        window_start = window_start.to(device)

    if config.train.tf32 and device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    torch.manual_seed(config.train.seed)
    model = build_model(config.model).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.train.learning_rate,
        weight_decay=config.train.weight_decay,
        fused=device.type == "cuda",
    )
    data_order = torch.Generator().manual_seed(config.train.seed)
    state = TrainerState(epoch=0, step=0)
    if resume and has_checkpoint(run_dir):
        state = load_checkpoint(run_dir, model, optimizer, data_order)

    mode = resolve_wandb_mode(wandb_mode, os.environ)
    logger = distributed.QuietLogger() if not world.writes else Logger(
        run_dir,
        name=run_dir.name,
        config=to_dict(config),
        wandb_mode=mode,
        group=run_group(config.name, config.preset, to_dict(config)),
        job_type="train",
        resume=resume,
        resume_step=state.step if resume else None,
    )  # fmt: skip
    experiment, preset = experiment_and_preset(config.name, config.preset, config.data.env_id)
    with logger:
        logger.echo(
            f"training {experiment}/{preset}, model.kind={config.model.kind}, on {device}: "
            f"{len(train_set)} train / "
            f"{len(val_set)} validation transitions, {model.num_parameters():,} parameters"
        )
        if window_start is not None:
            logger.echo(
                f"windows of {model_kind(config.model.kind).window(config.loss)} steps: "
                f"{int(window_start.sum())} of {len(train_set)} training transitions start one"
            )
        loop = _Loop(
            config, model, optimizer, data_order, train_set, val_set, window_start, logger, run_dir
        )
        state = loop.run(state, world)
        final = loop.finish(state) if world.writes else {}
    return TrainResult(run_dir, state.epoch, state.step, final)


def _checked_data(
    config: ExperimentConfig, dataset_dir: Path, world: distributed.World
) -> tuple[TransitionDataset, TransitionDataset, torch.Tensor | None]:
    """The training and validation splits of the dataset and the multi-step window starts;
    UserError when the dataset does not fit the config (or a batch the processes)."""
    train_set, val_set = dataset_splits(config, dataset_dir)
    if len(train_set) < config.train.batch_size:
        raise UserError(
            f"{len(train_set)} training transitions are fewer than one batch of "
            f"{config.train.batch_size}; collect more data or lower train.batch_size"
        )
    kind = model_kind(config.model.kind)
    distributed.check_world(config.train, kind.window(config.loss), kind.whole_windows, world)
    if world.distributed and config.loss.goal_cost.weight > 0:
        raise UserError(
            f"loss.goal_cost on {world.size} processes is not supported yet; train on one "
            "process, or set loss.goal_cost.weight=0"
        )
    return train_set, val_set, window_mask(train_set, kind.window(config.loss), window_key(kind))


def dataset_splits(
    config: ExperimentConfig, dataset_dir: Path
) -> tuple[TransitionDataset, TransitionDataset]:
    """The training and validation splits a run with ``config`` cuts from the dataset in
    ``dataset_dir``; UserError when the dataset was not collected for the config's env."""
    data = load_transitions(
        dataset_dir,
        expect={
            "env_id": config.data.env_id,
            "env_kwargs": config.data.env_kwargs,
            "obs_shape": config.model.obs_shape,
            "action_dim": config.model.action_dim,
        },
    )
    return data.split(config.data.validation_fraction, seed=config.data.seed)


def goal_cost_target(
    env: ControlEnv, train_set: TransitionDataset, config: GoalCostConfig
) -> GoalCostTarget:
    """The goal image and the training rows' costs for ``loss.goal_cost``
    (:func:`~latentrl.envs.state_costs`). UserError when a cost is not finite."""
    costs = state_costs(env, train_set.state.cpu().numpy())
    if not np.all(np.isfinite(costs)):
        raise UserError(
            f"loss.goal_cost: {type(env).__name__}.cost gives non-finite costs for "
            f"{int(np.sum(~np.isfinite(costs)))} training states; fix the env's cost or set "
            "loss.goal_cost.weight=0"
        )
    device = train_set.obs.device
    image = torch.as_tensor(goal_observation(env))[None].to(device)
    return GoalCostTarget(image, torch.as_tensor(costs, device=device), config)


class _Loop:
    """The epoch loop of one run; state lives in the model, optimizer and generators."""

    def __init__(
        self,
        config: ExperimentConfig,
        model: E2C,
        optimizer: torch.optim.Optimizer,
        data_order: torch.Generator,
        train_set: TransitionDataset,
        val_set: TransitionDataset,
        window_start: torch.Tensor | None,
        logger: Logger | distributed.QuietLogger,
        run_dir: Path,
    ) -> None:
        self.config, self.model, self.optimizer = config, model, optimizer
        self.data_order, self.logger, self.run_dir = data_order, logger, run_dir
        self.train_set, self.val_set = train_set, val_set
        self.world = distributed.World()
        self.kind = model_kind(config.model.kind)
        self.window = self.kind.window(config.loss)
        self.steps_per_epoch = len(train_set) // config.train.batch_size
        self.rows_per_step = config.train.batch_size
        """Rows of a batch: transitions, or with whole windows, windows of transitions."""
        self.row_pool: torch.Tensor | None = None
        """The rows a batch is drawn from (None: every row)."""
        if self.kind.whole_windows and window_start is not None:
            self.rows_per_step = max(1, config.train.batch_size // self.window)
            self.row_pool = torch.nonzero(window_start).squeeze(-1)
            self.steps_per_epoch = min(
                self.steps_per_epoch, len(self.row_pool) // self.rows_per_step
            )
        self.total_steps = self.steps_per_epoch * config.train.epochs
        self.window_start = window_start
        """``(N,)`` bool: training row i starts a window of ``self.window`` steps (None:
        no windows)."""
        loss_fn = self.kind.compute
        if config.train.compile:
            loss_fn = torch.compile(loss_fn)
        self.loss_fn = loss_fn
        env = make_env(config.data.env_id, **config.data.env_kwargs)
        try:
            task = require_control_env(env)
            self.rollouts = random_rollouts(
                task, episodes=OPEN_LOOP_EPISODES, steps=max(OPEN_LOOP_STEPS), seed=VALIDATION_SEED
            )
            box = task.state_space
            self.state_steps = state_step_sizes(
                self.rollouts.states, box.high - box.low, task.angle_dims
            )
            self.goal_cost = None
            if config.loss.goal_cost.weight > 0:
                self.goal_cost = goal_cost_target(task, train_set, config.loss.goal_cost)
        finally:
            env.close()

    def continuation(
        self,
        index: torch.Tensor,
        data: TransitionDataset | None = None,
        window_start: torch.Tensor | None = None,
    ) -> Continuation | None:
        """The steps after the rows ``index`` of ``data`` (default: the training split) for
        the terms over windows (None: no windows)."""
        if data is None:
            data, window_start = self.train_set, self.window_start
        return continuation(data, index, self.window, window_start)

    def batch_rows(self) -> torch.Tensor:
        """``(steps_per_epoch, rows_per_step)``: the rows of each step of an epoch, from a
        permutation of the row pool drawn from the data-order generator."""
        pool_size = len(self.train_set) if self.row_pool is None else len(self.row_pool)
        order = torch.randperm(pool_size, generator=self.data_order)
        order = order.to(self.train_set.obs.device)
        if self.row_pool is not None:
            order = self.row_pool[order]
        used = order[: self.steps_per_epoch * self.rows_per_step]
        return used.view(self.steps_per_epoch, self.rows_per_step)

    def learning_rate(self, step: int) -> float:
        """Cosine decay from train.learning_rate to train.final_learning_rate."""
        cfg = self.config.train
        progress = min(step / max(self.total_steps, 1), 1.0)
        return cfg.final_learning_rate + 0.5 * (cfg.learning_rate - cfg.final_learning_rate) * (
            1.0 + math.cos(math.pi * progress)
        )

    def run(self, state: TrainerState, world: distributed.World) -> TrainerState:
        """Train from ``state`` to the last epoch; on ``world``'s processes, each on its block
        of every batch (:mod:`latentrl.distributed`)."""
        cfg, self.world = self.config.train, world
        self.objective = distributed.BatchObjective(
            self.model,
            self.loss_fn,
            self.config.loss,
            self.train_set,
            (self.continuation, self.window_start),
            world,
            self.goal_cost,
        )
        with self.logger.progress(total=cfg.epochs, initial=state.epoch, desc="epochs"):
            while state.epoch < cfg.epochs:
                try:
                    state = self.epoch(state)
                except KeyboardInterrupt:
                    self.logger.echo(
                        f"interrupted in epoch {state.epoch + 1}; {kept_checkpoint(self.run_dir)}"
                    )
                    raise
        return state

    def epoch(self, state: TrainerState) -> TrainerState:
        cfg, model = self.config.train, self.model
        device = self.train_set.obs.device
        model.train()
        sums: dict[str, torch.Tensor] = {}
        grad_norm_sum = torch.zeros((), device=device)
        start = time.perf_counter()
        step = state.step
        for index in self.batch_rows():
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate(step)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                loss, metrics = self.objective(index)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm_sum += torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
            self.optimizer.step()
            for key, value in metrics.items():
                sums[key] = sums[key] + value if key in sums else value.clone()
            step += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        sums = distributed.mean_over_ranks(sums, self.world)
        train_metrics = {f"train/{k}": float(v) / self.steps_per_epoch for k, v in sums.items()}
        epoch = state.epoch + 1
        if not all(math.isfinite(v) for v in train_metrics.values()):
            self.diverged(epoch, f"train loss {train_metrics['train/loss/total']}")
        metrics = train_metrics | self.validate()
        # A checkpoint is kept only when everything in it is finite after the epoch's last step.
        broken = [
            k for k, v in metrics.items() if k.startswith("val/loss/") and not math.isfinite(v)
        ]
        broken += nonfinite_tensors(model, self.optimizer)
        if broken:
            more = f" and {len(broken) - 3} more" if len(broken) > 3 else ""
            self.diverged(epoch, f"non-finite {', '.join(broken[:3])}{more}")
        metrics |= {
            "train/grad_norm": float(grad_norm_sum) / self.steps_per_epoch,
            "train/learning_rate": self.learning_rate(step),
            "train/samples_per_second": self.steps_per_epoch * cfg.batch_size / seconds,
            "epoch": epoch,
        }
        self.logger.log(metrics, step=step)
        new_state = TrainerState(epoch=epoch, step=step)
        if self.world.writes:
            if epoch % cfg.image_every == 0 or epoch == cfg.epochs:
                self.log_images(step)
            save_checkpoint(self.run_dir, model, self.optimizer, self.data_order, new_state)
        self.logger.update_progress(
            1, {"loss": metrics["train/loss/total"], "val": metrics["val/loss/total"]}
        )
        columns = {
            "loss": "train/loss/total",
            "val": "val/loss/total",
            "val_state": "val/state_loss",
            "val_next": "val/next_state_loss",
            "drift_20": "val/open_loop_error_20",
            "stretch": "val/latent_stretch",
        }
        shown = {label: metrics[key] for label, key in columns.items() if key in metrics}
        self.logger.echo(
            summary_line(f"epoch {epoch}/{cfg.epochs}", shown, metrics["train/samples_per_second"])
        )
        return new_state

    def diverged(self, epoch: int, what: str) -> None:
        """Raise TrainingDivergedError for ``epoch`` (not saved), naming what was non-finite
        and the checkpoint that really exists."""
        raise TrainingDivergedError(
            f"training diverged in epoch {epoch} ({what}) and was not saved; lower "
            f"train.learning_rate or train.grad_clip_norm; "
            + kept_checkpoint(self.run_dir, " --set train.learning_rate=...")
        )

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean objective terms on the validation split, with fixed reparameterisation noise:
        over every transition, or for a kind trained on whole windows, over windows starting
        every ``window`` steps."""
        self.model.eval()
        data, sums, count = self.val_set, {}, 0
        rows, window_start = validation_windows(self.val_set, self.window, self.kind.whole_windows)
        block = (
            VALIDATION_BATCH if window_start is None else max(1, VALIDATION_BATCH // self.window)
        )
        devices = [data.obs.device] if data.obs.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(VALIDATION_SEED)
            for start in range(0, len(rows), block):
                index = rows[start : start + block]
                batch = data.batch(index)
                _, metrics = self.kind.compute(
                    self.model,
                    batch.obs,
                    batch.action,
                    batch.next_obs,
                    self.config.loss,
                    self.continuation(index, data, window_start),
                )
                for key, value in metrics.items():
                    sums[key] = sums.get(key, 0.0) + value * len(index)
                count += len(index)
            encoded = encode_rollouts(self.model, self.rollouts.observations, self.rollouts.actions)
            drift = open_loop_error(self.model, encoded, self.rollouts.actions)
            stretch = latent_stretch(encoded, self.state_steps)
        self.model.train()
        means = {f"val/{k}": float(v) / count for k, v in sums.items()}
        means |= {f"val/open_loop_error_{k}": float(drift[k - 1]) for k in OPEN_LOOP_STEPS}
        means["val/latent_stretch"] = stretch
        # E2C's Table 1 columns: -log p(x_t | x^_t) and -log p(x_t+1 | x^_t+1)
        for column, term in (("state_loss", "reconstruction"), ("next_state_loss", "prediction")):
            if f"val/loss/{term}" in means:
                means[f"val/{column}"] = means[f"val/loss/{term}"]
        return means

    def log_images(self, step: int) -> None:
        model, data = self.model.eval(), self.val_set
        images = {
            "latent_map": latent_map_image(
                model, data, f"{self.config.name}: validation latent means"
            )
        }
        if model.has_decoder:
            bernoulli = self.config.model.likelihood == "bernoulli"
            images = {"reconstruction": reconstruction_grid(model, data, bernoulli)} | images
        self.logger.log_images(images, step)
        model.train()

    def finish(self, state: TrainerState) -> dict[str, float]:
        """Probe R^2 of the true state from the latent means; summary metrics of the run."""
        self.model.eval()
        cfg = self.config.train
        summary = probe_r2(self.model, self.train_set, self.val_set, cfg.probe_steps, cfg.seed)
        final = self.validate() | summary
        self.logger.log(summary, step=state.step)
        self.logger.log_summary(final | {"epochs": state.epoch, "steps": state.step})
        self.logger.echo(
            "probe R^2 (validation): "
            + ", ".join(f"{k.split('r2_')[1]} {v:.3f}" for k, v in summary.items())
        )
        return final
