"""``latentrl diagnose RUN``: the lecture notes' claims about latent variable models, measured
on a trained run (:mod:`latentrl.diagnostics`).

On ``images`` validation images (the run's own split) it measures (1) log p(x) by importance
sampling and the IWAE curve against the ELBO, (2) per-image variational parameters against
the encoder (the amortization gap), (3) the variance of the reparameterised and score-function
gradients w.r.t. the encoder, and on validation transitions (4) the transition KL in closed
form against Monte Carlo and the linearization's error as the horizon grows. A model kind
without a decoder (pc3) gets (4)'s linearization only. In the run's env (5) the goal check
(:mod:`latentrl.diagnostics.goal_check`): whether the planner can hold the goal in the model,
and whether the model knows which way a push moves things near the goal.

Writes ``RUN/diagnose/`` (or ``out``; :class:`latentrl.run_directory.DiagnoseDirectory`):
``report.json`` (every number, written last: a folder without it is an unfinished diagnosis,
replaced by the next), one PNG per item, ``metrics.jsonl``/``summary.json`` and W&B (job type
``diagnose``); the ``diagnose/...`` numbers also go into the run's own ``summary.json`` when the
report is written into the run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from latentrl.agents.latent import ModelDynamics
from latentrl.checkpoint import load_model
from latentrl.config import ExperimentConfig, load_config, to_dict
from latentrl.data import TransitionDataset
from latentrl.diagnostics.goal_check import measure_goal
from latentrl.diagnostics.latent_model import posterior
from latentrl.diagnostics.measure import (
    freeze,
    measure_amortization,
    measure_elbo_gap,
    measure_gradients,
    measure_transitions,
)
from latentrl.diagnostics.report import figures, summary_lines, summary_metrics
from latentrl.diagnostics.settings import DiagnoseSettings
from latentrl.envs import make_env, require_control_env
from latentrl.errors import UserError
from latentrl.evaluate import evaluation_env_kwargs
from latentrl.locks import DirectoryBusyError, hold
from latentrl.logging import Logger, resolve_wandb_mode
from latentrl.models import E2C
from latentrl.run_directory import (
    DIAGNOSE_DIR,
    DiagnoseDirectory,
    RunDirectory,
    check_writable,
)
from latentrl.train import dataset_splits

NO_DECODER = (
    "model.kind={kind} has no decoder: the ELBO gap, the amortization gap, the gradient "
    "estimators and the transition KL need p(x|z); reporting the linearization only"
)


@dataclass(frozen=True)
class DiagnoseResult:
    out: Path
    report: dict[str, Any]
    lines: list[str]


def diagnose_run(
    run_dir: Path | str,
    out: Path | str | None = None,
    settings: DiagnoseSettings | None = None,
    *,
    data: Path | str | None = None,
    overwrite: bool = False,
    wandb_mode: str | None = None,
    echo: Callable[[str], None] = print,
) -> DiagnoseResult:
    """Diagnose the trained run in ``run_dir`` into ``out`` (default ``run_dir/diagnose``),
    on the validation split of ``data`` (default: the run's dataset). UserError, before
    anything is written, for a folder without a run or checkpoint, a missing dataset, or an
    earlier report without ``overwrite``."""
    settings = settings or DiagnoseSettings()
    run = RunDirectory(Path(run_dir)).require_run()
    target = DiagnoseDirectory(Path(out) if out is not None else run.path / DIAGNOSE_DIR)
    check_writable(target.path, "--out")
    dataset = Path(data) if data is not None else run.dataset()
    validation, training_size = _validation_split(load_config(run.config), dataset)
    model, config = load_model(run.path)
    with hold(target.path):
        _make_room(target, overwrite, echo)
        started = time.monotonic()
        report = _measure(model, config, validation, training_size, settings, echo)
        report["settings"] = asdict(settings)
        report["run"] = str(run.path)
        report["seconds"] = round(time.monotonic() - started, 1)
        lines = summary_lines(report)
        report["lines"] = lines
        summary = _write(target, run, config, report, wandb_mode)
    if out is None:
        try:
            _merge_summary(run, summary)
        except DirectoryBusyError:  # a training holds the run; its summary.json is its own
            echo(
                f"{run.path} is being trained: its summary.json is left as it is; the "
                f"diagnose/... numbers are in {target.summary}"
            )
    for line in lines:
        echo(line)
    return DiagnoseResult(target.path, report, lines)


def _make_room(target: DiagnoseDirectory, overwrite: bool, echo: Callable[[str], None]) -> None:
    """Empty ``target`` for a new report: an earlier one only with ``overwrite``, an
    unfinished one (no report.json) always; a folder of other files never."""
    if not target.path.exists():
        return
    if not target.path.is_dir():
        raise UserError(f"--out {target.path} is a file, not a directory")
    if not any(target.path.iterdir()):
        return
    if target.has_report():
        if not overwrite:
            raise UserError(
                f"{target.path} already holds a diagnosis; pass --overwrite to replace it"
            )
    elif not all(_written_here(path) for path in target.path.iterdir()):
        raise UserError(f"--out {target.path} holds other files; choose a new or empty directory")
    else:
        echo(f"replacing the unfinished diagnosis in {target.path} (interrupted)")
    shutil.rmtree(target.path)


def _written_here(path: Path) -> bool:
    """Whether ``path`` is one of the files a diagnosis writes (so a folder of only these is
    an unfinished diagnosis)."""
    logged = {"metrics.jsonl", "summary.json", "wandb_id.txt", "wandb", "report.tmp"}
    return path.name in logged or path.suffix == ".png"


def _validation_split(config: ExperimentConfig, dataset: Path) -> tuple[TransitionDataset, int]:
    """The run's validation split (the training split as the run cut it) and the size of its
    training split."""
    train, validation = dataset_splits(config, dataset)
    return validation, len(train)


def _generator(seed: int, part: int) -> torch.Generator:
    """One generator per measurement, so that each is reproducible on its own."""
    return torch.Generator().manual_seed(seed * 1_000 + part)


def _measure(
    model: E2C,
    config: ExperimentConfig,
    validation: TransitionDataset,
    training_size: int,
    s: DiagnoseSettings,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    freeze(model)
    report: dict[str, Any] = {"model_kind": config.model.kind}
    pick = torch.randperm(len(validation), generator=_generator(s.seed, 0))
    images = validation.obs[pick[: s.images]]
    grad_images = validation.obs[pick[: s.gradient_images]]
    seconds: dict[str, float] = {}

    def timed(part: str, started: float) -> None:
        seconds[part] = round(time.monotonic() - started, 1)

    if model.has_decoder:
        work = s.samples + s.fit_steps + 3 * len(grad_images)
        with tqdm(total=work, desc="diagnose", disable=None, leave=False) as bar:
            started = time.monotonic()
            report["elbo_gap"], gap = measure_elbo_gap(
                model, images, s, _generator(s.seed, 1), bar.update
            )
            timed("elbo_gap", started)
            started = time.monotonic()
            report["amortization"] = measure_amortization(
                model, images, s, gap, training_size, _generator(s.seed, 2), bar.update
            )
            timed("amortization", started)
            started = time.monotonic()
            report["gradients"] = measure_gradients(
                model, grad_images, s, _generator(s.seed, 3), bar.update
            )
            timed("gradients", started)
    else:
        echo(NO_DECODER.format(kind=config.model.kind))
    started = time.monotonic()
    report["transition"] = measure_transitions(model, validation, s, _generator(s.seed, 4))
    timed("transition", started)
    started = time.monotonic()
    goal = _goal_check(model, config, validation, s, echo)
    if goal is not None:
        report["goal"] = goal
        timed("goal", started)
    report["part_seconds"] = seconds
    return report


def _goal_check(
    model: E2C,
    config: ExperimentConfig,
    validation: TransitionDataset,
    s: DiagnoseSettings,
    echo: Callable[[str], None],
) -> dict[str, Any] | None:
    """Item 5 in the evaluation's env (None, said, when that env cannot be made here)."""
    try:
        env = make_env(config.data.env_id, **evaluation_env_kwargs(config))
    except UserError as exc:
        echo(f"goal check skipped: {exc}")
        return None
    try:
        task = require_control_env(env)
        device = next(model.parameters()).device

        def encode(observations: np.ndarray | torch.Tensor) -> torch.Tensor:
            return posterior(model, torch.as_tensor(observations, device=device)).mean

        pick = torch.randperm(len(validation), generator=_generator(s.seed, 5))[: s.transitions]
        with torch.no_grad():
            first = posterior(model, validation.obs[pick].to(device))
            moves = encode(validation.next_obs[pick]) - first.mean
        space = env.action_space
        return measure_goal(
            task,
            encode,
            ModelDynamics(model, config.plan.jacobian),
            np.asarray(space.low, dtype=np.float64),
            np.asarray(space.high, dtype=np.float64),
            float(moves.norm(dim=-1).mean()),
            float(first.std.mean()),
            s.goal_states,
            s.goal_steps,
            np.random.default_rng(s.seed),
        )
    finally:
        env.close()


def _write(
    target: DiagnoseDirectory,
    run: RunDirectory,
    config: ExperimentConfig,
    report: dict[str, Any],
    wandb_mode: str | None,
) -> dict[str, float]:
    """Figures, the log and W&B, then report.json; returns the summary numbers."""
    target.path.mkdir(parents=True, exist_ok=True)
    images = figures(report)
    for name, image in images.items():
        Image.fromarray(image).save(target.figure(name))
    summary = summary_metrics(report)
    mode = resolve_wandb_mode(wandb_mode, os.environ)
    with Logger(
        target.path,
        f"{run.name}__diagnose",
        to_dict(config),
        mode,
        group=config.name,
        job_type="diagnose",
    ) as logger:
        logger.log(summary, step=0)
        logger.log_summary(summary)
        logger.log_media({f"diagnose/{name}": image for name, image in images.items()}, step=0)
    text = json.dumps(_finite_or_none(report), indent=2, allow_nan=False) + "\n"
    tmp = target.report.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, target.report)  # last: with it, the diagnosis is complete
    return summary


def _merge_summary(run: RunDirectory, summary: dict[str, float]) -> None:
    """Add the ``diagnose/...`` numbers to the run's summary.json, holding the run's lock (a
    training writes that file too; DirectoryBusyError while one runs)."""
    with hold(run.path):
        path = run.summary
        merged = json.loads(path.read_text()) if path.exists() else {}
        merged.update(_finite_or_none(summary))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(merged, indent=2) + "\n")
        os.replace(tmp, path)


def _finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinity (a standard error of one value) set to None, so
    that it is valid JSON."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
