"""The ``latentrl`` sub-commands about experiments: ``run``, ``experiments``, and how ``train``
finds its config (``--experiment``, ``--config``, ``--env``, ``--data``).

``latentrl run pendulum --preset debug --seeds 0 1 2`` collects the experiment's dataset
(once), trains and evaluates one run per seed (:func:`latentrl.pipeline.run_experiment`), then
prints the table of :mod:`latentrl.compare` for those runs and writes its plot.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from latentrl.config import ExperimentConfig, TrainConfig
from latentrl.errors import UserError
from latentrl.field_rules import check_value, flag_type, rule_of
from latentrl.run_directory import check_writable, experiment_of, experiment_runs, safe_name

RUNS_ROOT = Path("runs")
DATA_ROOT = Path("data")
MAX_SUFFIX = 60
"""The longest ``--set`` part of a comparison's name (:func:`settings_suffix`)."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr, exit status 2, like every
    other mistake a user can make (argparse's own print the usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def config_flag(cls: type, name: str) -> Callable[[str], Any]:
    """The argparse ``type`` of a flag that sets field ``name`` of config section ``cls``:
    it allows what the field allows (:mod:`latentrl.field_rules`)."""
    allowed = rule_of(cls, name)
    if allowed is None:
        raise KeyError(f"{cls.__name__}.{name} declares no allowed values")
    return flag_type(allowed)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Help that names every option's default: ``(default: X)`` is appended to each option's
    help unless the help already says its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS:
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text  # a required positional has no default
        default = action.default
        if default is None:
            default = "none"
        elif isinstance(default, list):
            default = " ".join(map(str, default)) if default else "none"
        return f"{text} (default: {default})".strip()


def json_object(text: str) -> dict[str, Any]:
    """An argparse type: a JSON object such as ``{"g": 9.81}``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as '{\"g\": 9.81}'")
    return value


def add_wandb_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wandb",
        choices=("online", "offline", "disabled"),
        default=None,
        help="W&B mode (default: online when logged in, else offline)",
    )


def add_experiment_options(parser: argparse.ArgumentParser) -> None:
    """``--preset``, ``--set``, ``--runs-root``, ``--data-root`` and ``--wandb``."""
    parser.add_argument(
        "--preset",
        default=None,
        help="a preset of the experiment file, e.g. debug or full (default: the file's "
        "default_preset)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="change one config field, e.g. --set train.epochs=20 (repeatable; default: none)",
    )
    parser.add_argument("--runs-root", type=Path, default=None, help="default: runs/")
    parser.add_argument("--data-root", type=Path, default=None, help="default: data/")
    add_wandb_option(parser)


def add_run_parser(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="run an experiment end to end for several seeds, then compare them",
        description="Collect the experiment's dataset (once), train and evaluate one run per "
        "seed, then compare the seeds (mean ± standard error) against the oracle and random "
        "agents: a table, a bar plot and its numbers as JSON.",
        formatter_class=DefaultsHelpFormatter,
    )
    run.add_argument(
        "experiment",
        metavar="NAME_OR_FILE",
        nargs="?",
        help="a built-in experiment (`latentrl experiments` lists them) or a .toml file "
        "(default: none; give this or --env)",
    )
    run.add_argument(
        "--env",
        metavar="ID",
        help="instead of an experiment: an env id run with the default recipe, the settings "
        "derived from the env (docs/models.md)",
    )
    run.add_argument(
        "--env-kwargs",
        type=json_object,
        metavar="JSON",
        help="with --env: a JSON object of gymnasium.make keyword arguments (default: {})",
    )
    run.add_argument(
        "--seeds",
        type=config_flag(TrainConfig, "seed"),
        nargs="+",
        default=None,
        help="training seeds (default: 0)",
    )
    run.add_argument(
        "--set-json",
        type=json_object,
        metavar="JSON",
        help='config fields as one JSON object, e.g. \'{"plan.horizon": 30, "train.seed": 1}\' '
        "(what `wandb agent` passes a trial of `latentrl sweep`; train.seed is the run's seed; "
        "default: none)",
    )
    run.add_argument("--no-evaluate", action="store_true", help="train only (no comparison)")
    run.add_argument(
        "--out",
        type=Path,
        help="comparison plot, .png; its numbers go beside it as .json and .md. It holds "
        "these seeds' runs and the earlier evaluated runs under RUNS_ROOT of the same settings "
        "and other seeds (default: RUNS_ROOT/EXPERIMENT__PRESET__compare.png, "
        "ENV__recipe__... for --env; any --set or --env-kwargs adds them, or their hash, to "
        "the name)",
    )
    add_experiment_options(run)
    run.set_defaults(handler=run_command)


def add_experiments_parser(commands: Any) -> None:
    listing = commands.add_parser(
        "experiments",
        help="list the built-in experiment files with their env ids and presets",
        description="List the experiment files in experiments/ of this checkout: the names "
        "`latentrl run` and `latentrl train --experiment` take.",
        formatter_class=DefaultsHelpFormatter,
    )
    listing.set_defaults(handler=experiments_command)


def run_command(args: argparse.Namespace) -> int:
    from latentrl.compare import compare_runs, earlier_seeds, output_paths
    from latentrl.experiment_files import default_preset, experiment_path, read_toml
    from latentrl.pipeline import EnvRecipe, run_experiment

    runs_root, data_root = args.runs_root or RUNS_ROOT, args.data_root or DATA_ROOT
    experiment: Path | EnvRecipe
    if (args.experiment is None) == (args.env is None):
        raise UserError("say what to run: an experiment NAME_OR_FILE or --env ID, not both")
    if args.env_kwargs is not None and args.env is None:
        raise UserError("--env-kwargs goes with --env; elsewhere use --set data.env_kwargs=...")
    if args.env is not None:
        if args.preset is not None:
            raise UserError("--preset applies to experiment files, not to --env")
        experiment = EnvRecipe(args.env, args.env_kwargs or {})
        stem = f"{args.env.rsplit(':', 1)[-1].replace('/', '_')}__recipe"
    else:
        experiment = experiment_path(args.experiment)
        preset = args.preset or default_preset(read_toml(experiment))
        stem = f"{experiment.stem}__{preset}"
    seeds, overrides = json_settings(args.set_json or {}, args.seeds, args.set)
    named = [f"env_kwargs={json.dumps(args.env_kwargs, sort_keys=True)}"] if args.env_kwargs else []
    out = args.out or runs_root / f"{stem}{settings_suffix([*named, *overrides])}__compare.png"
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds names a seed twice: {seeds}")
    check_writable(runs_root, "--runs-root")
    check_writable(data_root, "--data-root")
    if not args.no_evaluate:
        check_writable(output_paths(out, runs_root)[0], "--out")
    try:
        results = run_experiment(
            experiment,
            args.preset,
            seeds,
            overrides,
            runs_root=runs_root,
            data_root=data_root,
            wandb_mode=args.wandb,
            evaluate=not args.no_evaluate,
        )
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the same command again reuses the dataset (finishing a partial "
            "one) and trains new runs; continue an interrupted run with `latentrl train "
            "--run-dir DIR --resume`",
            file=sys.stderr,
        )
        return 130
    for result in results:
        where = "" if result.evaluation is None else f" (evaluation: {result.evaluation.eval_dir})"
        print(f"run: {result.train.run_dir}{where}")
    if args.no_evaluate or not results:
        return 0
    new_runs = [result.train.run_dir for result in results]
    earlier = earlier_seeds(new_runs, experiment_runs(runs_root, experiment_of(new_runs[0])))
    if earlier:
        print(
            f"compared with {len(earlier)} earlier run(s) of the same settings and other "
            f"seeds: {', '.join(map(str, earlier))}"
        )
    compare_runs([*reversed(earlier), *new_runs], out)
    return 0


def settings_suffix(overrides: list[str]) -> str:
    """What ``--set`` adds to the name of ``run``'s comparison, so that runs of other
    settings do not overwrite the table of the experiment's own: ``__`` and the assignments
    (``__model.kind_pcc``), or a hash of them when that would be long."""
    if not overrides:
        return ""
    text = "__".join(
        re.sub(r"_+", "_", safe_name(item.replace("=", "_"))).strip("_") for item in overrides
    )
    if len(text) > MAX_SUFFIX:
        text = "set_" + hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:8]
    return f"__{text}"


def json_settings(
    settings: dict[str, Any], seeds: list[int] | None, overrides: list[str]
) -> tuple[list[int], list[str]]:
    """The seeds and ``--set`` assignments of ``run``, given ``--set-json``'s ``settings``
    (``train.seed`` among them is the one seed), ``--seeds`` and ``--set``."""
    settings = dict(settings)
    if "train.seed" in settings:
        if seeds is not None:
            raise UserError("--set-json gives train.seed: drop --seeds (or the seed)")
        seed = settings.pop("train.seed")
        check_value(TrainConfig, "seed", seed, "--set-json train.seed")
        seeds = [seed]
    assignments = [f"{key}={json.dumps(value)}" for key, value in settings.items()]
    return seeds or [0], [*overrides, *assignments]


def experiments_command(args: argparse.Namespace) -> int:
    from latentrl.experiment_files import (
        EXPERIMENTS_DIR,
        builtin_experiments,
        default_preset,
        preset_names,
        read_toml,
    )

    found = builtin_experiments()
    if not found:
        raise UserError(f"no experiment files (*.toml) in {EXPERIMENTS_DIR}")
    rows = []
    for name, path in found.items():
        document = read_toml(path)
        env_id = document.get("data", {}).get("env_id", "(schema default)")
        presets = preset_names(document)
        chosen = default_preset(document)
        shown = ", ".join(f"{p}*" if p == chosen else p for p in presets) or chosen
        rows.append((name, env_id, shown))
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    print(f"experiment files in {EXPERIMENTS_DIR} (presets; * the default):")
    for name, env_id, presets in rows:
        print(f"  {name:<{width[0]}}  {env_id:<{width[1]}}  {presets}")
    return 0


def add_train_sources(train: argparse.ArgumentParser) -> None:
    """Where ``train`` takes its config from: one of --experiment, --config, --env (with
    --env-kwargs), or --data alone."""
    source = train.add_mutually_exclusive_group()
    source.add_argument(
        "--experiment",
        metavar="NAME_OR_FILE",
        help="a built-in experiment (e.g. pendulum) or an experiment .toml file",
    )
    source.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="an experiment .toml file, or a run's config.json (its settings on this env)",
    )
    source.add_argument(
        "--env",
        metavar="ID",
        help="an env id (e.g. my_module:MyEnv-v0) trained with the schema's settings, the "
        "recipe for an untuned env",
    )
    train.add_argument(
        "--env-kwargs",
        type=json_object,
        help="with --env: a JSON object of gymnasium.make keyword arguments (default: {})",
    )


RESUMED_RUN_KEEPS = {
    "experiment": "--experiment",
    "config": "--config",
    "env": "--env",
    "env_kwargs": "--env-kwargs",
    "preset": "--preset",
    "seed": "--seed",
    "runs_root": "--runs-root",
    "data_root": "--data-root",
}
"""Flags of ``train`` that choose what a new run is; a resumed run keeps what it was."""


def refuse_with_resume(args: argparse.Namespace) -> None:
    """UserError naming a flag given with ``train --resume`` that cannot apply to it."""
    given = [flag for key, flag in RESUMED_RUN_KEEPS.items() if getattr(args, key) is not None]
    if given:
        raise UserError(
            f"{', '.join(given)} cannot apply with --resume: a resumed run keeps its config, "
            "seed and place (change train.* with --set); drop "
            f"{'it' if len(given) == 1 else 'them'}, or start a new run without --resume"
        )


def train_config(args: argparse.Namespace) -> ExperimentConfig:
    """The resolved config ``latentrl train`` was asked for (not --resume)."""
    from latentrl.experiment_files import experiment_path, read_experiment
    from latentrl.pipeline import config_file_dict, defaults_config, resolve

    if args.env_kwargs is not None and args.env is None:
        raise UserError("--env-kwargs goes with --env; elsewhere use --set data.env_kwargs=...")
    if args.preset is not None and args.experiment is None and args.config is None:
        raise UserError("--preset applies to experiment files: give --experiment or --config")
    if args.experiment is not None:
        path = experiment_path(args.experiment)
        config, source = read_experiment(path, args.preset), str(path)
    elif args.config is not None:
        config, source = config_file_dict(args.config, args.preset), str(args.config)
    elif args.env is not None:
        config, source = defaults_config(args.env, args.env_kwargs), f"--env {args.env}"
    elif args.data is not None:
        from latentrl.data import read_metadata

        meta = read_metadata(args.data) if args.data.is_dir() else None
        if meta is None:
            raise UserError(f"no dataset at {args.data}; make one with `latentrl collect`")
        chains = int(meta.get("chain_length", 1))  # the recipe's multi-step term fits in one
        env_kwargs = meta.get("env_kwargs", {})
        config, source = defaults_config(meta["env_id"], env_kwargs, chains), "--data"
    else:
        raise UserError(
            "say what to train: --experiment NAME_OR_FILE, --config FILE, --env ID or "
            "--data DIR (or --resume a --run-dir)"
        )
    return resolve(config, args.set, source=source, seed=args.seed, dataset=args.data)
