"""An experiment end to end: collect its dataset (once, shared by seeds), then train and
evaluate each seed.

``latentrl run EXPERIMENT --preset P --seeds 0 1 2`` and the scripts in experiments/ call
:func:`run_experiment`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from latentrl.collect import collect
from latentrl.config import DataConfig, ExperimentConfig, apply_overrides, preset
from latentrl.data import read_metadata
from latentrl.evaluate import EvalResult, evaluate_run
from latentrl.run_directory import new_run_dir
from latentrl.train import TrainResult, train

DATA_ROOT = Path("data")
RUNS_ROOT = Path("runs")


def dataset_dir(data: DataConfig, root: Path = DATA_ROOT) -> Path:
    """Where the dataset of ``data`` lives: one directory per distinct collection."""
    env_name = data.env_id.replace(":", "_").split("/")[-1]
    chains = f"__chain{data.chain_length}" if data.chain_length > 1 else ""
    near = f"__near{data.near_goal_share:g}" if data.near_goal_share > 0 else ""
    return root / f"{env_name}__{data.mode}__{data.transitions}__seed{data.seed}{chains}{near}"


def ensure_dataset(data: DataConfig, root: Path = DATA_ROOT) -> Path:
    """The dataset of ``data``: reused when complete, finished when partial, else collected."""
    path = dataset_dir(data, root)
    meta = read_metadata(path) if path.exists() else None
    if meta is not None and meta.get("complete"):
        return path
    return collect(
        data.env_id,
        data.transitions,
        path,
        mode=data.mode,
        seed=data.seed,
        workers=data.workers,
        chain_length=data.chain_length,
        near_goal_share=data.near_goal_share,
        resume=meta is not None,
    )


def experiment_config(
    experiment: str, preset_name: str, seed: int, overrides: Sequence[str] = ()
) -> ExperimentConfig:
    config = apply_overrides(preset(experiment, preset_name), overrides)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed))


@dataclass(frozen=True)
class ExperimentResult:
    """One seed of an experiment: its training and (unless skipped) its evaluation."""

    train: TrainResult
    evaluation: EvalResult | None


def run_experiment(
    experiment: str,
    preset_name: str = "full",
    seeds: Sequence[int] = (0,),
    overrides: Sequence[str] = (),
    *,
    runs_root: Path = RUNS_ROOT,
    data_root: Path = DATA_ROOT,
    wandb_mode: str | None = None,
    evaluate: bool = True,
) -> list[ExperimentResult]:
    """Collect (or reuse) the experiment's dataset, then train one run per seed and evaluate
    it with its ``eval`` config (results in ``run_dir/eval/``). The oracle and random agents
    do not depend on the model: they run in the first seed's evaluation, and the later seeds
    take them from it (``baselines_from`` in their ``results.json``)."""
    results: list[ExperimentResult] = []
    for seed in seeds:
        config = experiment_config(experiment, preset_name, seed, overrides)
        data = ensure_dataset(config.data, data_root)
        run_dir = new_run_dir(runs_root, config)
        trained = train(config, run_dir, data, wandb_mode=wandb_mode)
        evaluation = None
        if evaluate:
            first = results[0].train.run_dir if results else None
            evaluation = evaluate_run(trained.run_dir, wandb_mode=wandb_mode, baselines_from=first)
        results.append(ExperimentResult(trained, evaluation))
    return results
