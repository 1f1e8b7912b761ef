"""From an experiment to runs: resolve its config, collect its dataset (once, shared by seeds),
then train and evaluate each seed.

A config is *resolved* from a dict (an experiment file's preset, a run's ``config.json``, or
the schema's defaults for a bare env id), the ``--set`` overrides, the dataset's metadata when
training on a given dataset, and the env's spaces: ``model.obs_shape`` and
``model.action_dim`` are read from the env made with ``data.env_kwargs``.
``latentrl run EXPERIMENT --preset P --seeds 0 1 2`` calls :func:`run_experiment`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentrl.agents.registry import agent_entry
from latentrl.collect import collect
from latentrl.config import (
    ENV_FACTS,
    IGNORED_SETTINGS,
    DataConfig,
    ExperimentConfig,
    TrainConfig,
    from_dict,
    load_config,
    override_dict,
    parse_assignment,
    schema_defaults,
)
from latentrl.data import METADATA_FILE, OPTIONAL_SPEC_KEYS, read_metadata
from latentrl.devices import resolve_device
from latentrl.errors import UserError
from latentrl.evaluate import (
    EvalResult,
    evaluate_run,
    evaluation_env_kwargs,
    require_evaluation_env_fits,
    runs_baselines,
)
from latentrl.experiment_files import NO_PRESET, experiment_path, merge_tables, read_experiment
from latentrl.field_rules import check_value
from latentrl.kinds import loss_read_by
from latentrl.recipe import CHAIN_LENGTH, RECIPE_EXPERIMENT, default_recipe, task_shape
from latentrl.results import EvalResults
from latentrl.run_directory import RunDirectory, experiment_prefix, experiment_runs, new_run_dir
from latentrl.train import TrainResult, train

DATA_ROOT = Path("data")
RUNS_ROOT = Path("runs")
DEFAULT_NAME = RECIPE_EXPERIMENT
"""The experiment name of a config made from the schema's defaults (``train --env``)."""
DATASET_FIELDS = ("env_id", "mode", "transitions", "seed")
"""data.* fields a dataset's metadata fixes and always holds."""
DATASET_DEFAULTS: dict[str, Any] = {"env_kwargs": {}, **OPTIONAL_SPEC_KEYS}
"""data.* fields a dataset's metadata fixes, with the value of a dataset whose metadata
leaves the key out."""


def dataset_dir(data: DataConfig, root: Path = DATA_ROOT) -> Path:
    """Where the dataset of ``data`` lives: one directory per distinct collection."""
    env_name = data.env_id.replace(":", "_").split("/")[-1]
    chains = f"__chain{data.chain_length}" if data.chain_length > 1 else ""
    near = f"__near{data.near_goal_share:g}" if data.near_goal_share > 0 else ""
    if data.near_goal_widths is not None:
        near += "_" + "_".join(f"{width:g}" for width in data.near_goal_widths)
    kwargs = ""
    if data.env_kwargs:
        text = json.dumps(data.env_kwargs, sort_keys=True)
        kwargs = f"__kwargs{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    name = f"{env_name}__{data.mode}__{data.transitions}__seed{data.seed}{chains}{near}{kwargs}"
    return root / name


def ensure_dataset(data: DataConfig, root: Path = DATA_ROOT) -> Path:
    """The dataset of ``data``: reused when complete, finished when partial, else collected."""
    path = dataset_dir(data, root)
    meta = read_metadata(path) if path.exists() else None
    if meta is not None and meta.get("complete"):
        return path
    try:
        return collect(
            data.env_id,
            data.transitions,
            path,
            mode=data.mode,
            seed=data.seed,
            workers=data.workers,
            chain_length=data.chain_length,
            near_goal_share=data.near_goal_share,
            near_goal_widths=data.near_goal_widths,
            env_kwargs=data.env_kwargs,
            resume=meta is not None,
        )
    except UserError:
        if meta is None and path.exists() and read_metadata(path) is not None:
            # The dataset appeared after this command looked: another one began collecting it.
            raise UserError(
                f"another latentrl command began collecting the dataset {path} at the same "
                "time as this one; let it finish, then run this command again (it reuses the "
                "dataset, and finishes it if the other command was stopped)"
            ) from None
        raise


@functools.lru_cache(maxsize=16)
def _env_facts(env_id: str, env_kwargs_json: str) -> tuple[tuple[int, ...], int]:
    from latentrl.envs import make_env

    env = make_env(env_id, **json.loads(env_kwargs_json))
    try:
        obs_shape = tuple(int(s) for s in env.observation_space.shape)
        action_dim = int(env.action_space.shape[0])
    finally:
        env.close()
    return obs_shape, action_dim


def env_facts(env_id: str, env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``{"obs_shape": (k, H, W), "action_dim": m}`` of the env ``env_id`` made with
    ``env_kwargs`` (made once per distinct pair)."""
    if not isinstance(env_kwargs, Mapping):
        raise UserError(f"data.env_kwargs must be a JSON object, got {env_kwargs!r}")
    obs_shape, action_dim = _env_facts(env_id, json.dumps(dict(env_kwargs), sort_keys=True))
    return {"obs_shape": list(obs_shape), "action_dim": action_dim}


def build_config(config: Mapping[str, Any]) -> ExperimentConfig:
    """The typed config of a config dict without env facts, the facts read from its env."""
    data = copy.deepcopy(dict(config))
    if not isinstance(data.get("data"), Mapping) or not isinstance(data.get("model"), Mapping):
        raise UserError("a config needs the sections data and model")
    env = data["data"]
    from_dict(DataConfig, env, "data")  # its fields checked before its env is made
    facts = env_facts(env.get("env_id", DataConfig.env_id), env.get("env_kwargs", {}))
    data["model"] = {**data["model"], **facts}
    built = from_dict(ExperimentConfig, data)
    require_evaluation_env_fits(built)
    return built


def defaults_config(
    env_id: str, env_kwargs: Mapping[str, Any] | None = None, chain_length: int = CHAIN_LENGTH
) -> dict[str, Any]:
    """The config dict of the default recipe for ``env_id`` (:mod:`latentrl.recipe`): the
    schema's defaults with the settings derived from the env (``latentrl train --env ID``);
    ``chain_length``: that of a dataset collected already (``latentrl train --data DIR``)."""
    config: dict[str, Any] = {"name": DEFAULT_NAME, "preset": NO_PRESET, **schema_defaults()}
    config["data"].update(env_id=env_id, env_kwargs=dict(env_kwargs or {}))
    merge_tables(config, default_recipe(task_shape(env_id, env_kwargs or {}), chain_length))
    return config


def config_file_dict(path: Path, preset: str | None = None) -> dict[str, Any]:
    """The config dict of a file: an experiment file (``.toml``) or a run's ``config.json``
    (its env facts dropped, to be read from the env again)."""
    if path.suffix != ".json":
        return read_experiment(experiment_path(path), preset)
    if preset is not None:
        raise UserError(f"--preset applies to experiment files (.toml), not to {path}")
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no config at {path}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("model"), dict):
        raise UserError(f"{path} is not a latentrl config (no model section)")
    config = {"name": path.parent.name or DEFAULT_NAME, "preset": NO_PRESET, **schema_defaults()}
    for key, value in loaded.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    for fact in ENV_FACTS:
        config["model"].pop(fact.split(".")[1], None)
    return config


def resolve(
    config: Mapping[str, Any],
    overrides: Sequence[str] = (),
    *,
    source: str = "the config",
    seed: int | None = None,
    dataset: Path | None = None,
) -> ExperimentConfig:
    """The typed config of a config dict (without env facts) from ``source``: checked on its
    own (errors name ``source``), then changed by the ``--set`` overrides, the dataset's
    metadata (env, kwargs, mode, size, chains, near-goal share and seed; an explicit
    conflicting ``--set`` is an error) and ``train.seed``, then given the env's facts."""
    try:
        build_config(config)
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None
    explicit: dict[str, Any] = {}
    for assignment in overrides:
        path, value = parse_assignment(assignment)
        key = ".".join(path)
        if key in ENV_FACTS:
            raise UserError(f"--set {key}: it comes from the env's spaces and cannot be set")
        explicit[key] = value
    data = copy.deepcopy(dict(config))
    kind = explicit.get("model.kind")
    if kind is not None and kind != data["model"].get("kind"):
        # the file's loss settings were made for its own kind: keep only what `kind` reads
        data["loss"] = loss_read_by(str(kind), data["loss"])
    data = override_dict(data, overrides)
    if dataset is not None:
        data["data"].update(dataset_fields(dataset, config["data"], explicit, source))
    if seed is not None:
        if "train.seed" in explicit:  # one seed, given once: not silently replaced
            check_value(TrainConfig, "seed", explicit["train.seed"], "--set train.seed")
            if explicit["train.seed"] != seed:
                raise UserError(
                    f"--set train.seed={json.dumps(explicit['train.seed'])} conflicts with the "
                    f"training seed {seed} of --seed/--seeds; give the seed once"
                )
        data["train"]["seed"] = seed
    return build_config(data)


def dataset_fields(
    dataset: Path, data: Mapping[str, Any], explicit: Mapping[str, Any], source: str
) -> dict[str, Any]:
    """The data.* fields the dataset's metadata fixes (:data:`DATASET_FIELDS`,
    :data:`DATASET_DEFAULTS`); UserError when an explicit ``--set`` or the env of ``source``
    conflicts with them."""
    meta = read_metadata(Path(dataset)) if Path(dataset).is_dir() else None
    if meta is None:
        raise UserError(f"no dataset at {dataset} (no {METADATA_FILE}); make one with collect")
    fields = {key: meta[key] for key in DATASET_FIELDS}
    fields |= {key: meta.get(key, default) for key, default in DATASET_DEFAULTS.items()}
    for key, value in fields.items():
        given = explicit.get(f"data.{key}")
        if f"data.{key}" in explicit and given != value:
            raise UserError(
                f"--set data.{key}={json.dumps(given)} conflicts with the dataset {dataset}, "
                f"which has {key}={json.dumps(value)}; drop the --set or use another dataset"
            )
    for key in ("env_id", "env_kwargs"):
        if data.get(key) != fields[key] and f"data.{key}" not in explicit:
            raise UserError(
                f"the dataset {dataset} is of {key}={json.dumps(fields[key])}, but {source} "
                f"trains on {key}={json.dumps(data.get(key))}; use a dataset of that env, or "
                "another experiment"
            )
    return fields


@dataclass(frozen=True)
class EnvRecipe:
    """An env run with its default recipe (``latentrl run --env ID``), where an experiment
    file would otherwise be named."""

    env_id: str
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)


def experiment_config(
    experiment: str | Path | EnvRecipe,
    preset_name: str | None = None,
    seed: int = 0,
    overrides: Sequence[str] = (),
    dataset: Path | None = None,
) -> ExperimentConfig:
    """The resolved config of an experiment (built-in name or path to a ``.toml`` file, or an
    env with its default recipe), one of its presets (None: the file's default), the training
    seed and ``--set`` overrides."""
    if isinstance(experiment, EnvRecipe):
        if preset_name is not None:
            raise UserError("--preset applies to experiment files, not to --env")
        config = defaults_config(experiment.env_id, experiment.env_kwargs)
        source = f"--env {experiment.env_id}"
        return resolve(config, overrides, source=source, seed=seed, dataset=dataset)
    path = experiment_path(experiment)
    config = read_experiment(path, preset_name)
    return resolve(config, overrides, source=str(path), seed=seed, dataset=dataset)


@dataclass(frozen=True)
class ExperimentResult:
    """One seed of an experiment: its training and (unless skipped) its evaluation."""

    train: TrainResult
    evaluation: EvalResult | None


def run_experiment(
    experiment: str | Path | EnvRecipe,
    preset_name: str | None = None,
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
    do not depend on the model: they run once, in the first seed's evaluation or in an
    earlier run of the experiment under ``runs_root`` (:func:`earlier_baselines_run`), and
    the other seeds take them from it (``baselines_from`` in their ``results.json``)."""
    configs = [experiment_config(experiment, preset_name, seed, overrides) for seed in seeds]
    if configs:  # the seeds' configs differ only in train.seed: the devices are checked once
        resolve_device(configs[0].train.device)
        if evaluate and "latent" in configs[0].eval.agents:
            resolve_device(configs[0].eval.device, "eval.device")
    results: list[ExperimentResult] = []
    for config in configs:
        data = ensure_dataset(config.data, data_root)
        run_dir = new_run_dir(runs_root, config)
        trained = train(config, run_dir, data, wandb_mode=wandb_mode)
        evaluation = None
        if evaluate:
            source = None
            if runs_baselines(config.eval.agents):
                source = (
                    results[0].train.run_dir
                    if results
                    else earlier_baselines_run(runs_root, config)
                )
            evaluation = evaluate_run(trained.run_dir, wandb_mode=wandb_mode, baselines_from=source)
        results.append(ExperimentResult(trained, evaluation))
    return results


def _baselines_protocol(config: ExperimentConfig) -> tuple[Any, ...]:
    """What the numbers of the agents that do not use the model depend on: the env, the
    evaluation's env keyword arguments and the other ``eval`` fields but those that change no
    number (:data:`~latentrl.config.IGNORED_SETTINGS`)."""
    eval_fields = {
        name: value
        for name, value in dataclasses.asdict(config.eval).items()
        if name != "env_kwargs" and f"eval.{name}" not in IGNORED_SETTINGS
    }
    return config.data.env_id, evaluation_env_kwargs(config), eval_fields


def earlier_baselines_run(runs_root: Path, config: ExperimentConfig) -> Path | None:
    """The newest run under ``runs_root`` of ``config``'s env and experiment whose evaluation
    holds every agent of ``config.eval.agents`` that does not use the model, run with the same
    env and ``eval`` settings: ``latentrl run NAME --seeds 1`` after ``--seeds 0`` takes the
    oracle and random agents from seed 0's run. The evaluation checks the episodes again
    (:func:`latentrl.earlier_agents.reusable_agents`) and runs what differs; None when no
    run qualifies."""
    wanted = [name for name in config.eval.agents if not agent_entry(name).uses_model]
    prefix = experiment_prefix(config.data.env_id, config.name)
    protocol = _baselines_protocol(config)
    for path in experiment_runs(runs_root, prefix):
        run = RunDirectory(path)
        if not run.eval.has_results():
            continue
        try:
            earlier = load_config(run.config)
            agents = EvalResults.read(run.eval.results).agents
        except (OSError, ValueError, KeyError, TypeError, UserError):
            continue  # not a run this version reads: another is tried
        if _baselines_protocol(earlier) == protocol and all(name in agents for name in wanted):
            return path
    return None
