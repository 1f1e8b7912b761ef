"""The ``latentrl sweep`` sub-command: check the trials a sweep implies, write its W&B file."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from latentrl.config import TrainConfig
from latentrl.errors import UserError
from latentrl.experiment_cli import DefaultsHelpFormatter, config_flag, json_settings
from latentrl.sweep import (
    DEFAULT_METRIC,
    GOALS,
    METHODS,
    Parameter,
    grid_trials,
    parse_parameter,
    read_sweep_file,
    sweep_config,
    trial_count,
    values_parameter,
    write_sweep,
)

CHECKED_TRIALS = 256
"""A grid of up to this many trials has each trial's config resolved before the file is
written; a larger one has each value of each parameter checked on its own."""


def add_sweep_parser(commands: Any) -> None:
    sweep = commands.add_parser(
        "sweep",
        formatter_class=DefaultsHelpFormatter,
        help="write a W&B sweep over config fields whose trials are `latentrl run`s",
        description="Write a W&B sweep configuration (YAML) over named config fields: start it "
        "with `wandb sweep FILE`, then `wandb agent ID` on any number of machines. Each trial "
        "runs `latentrl run EXPERIMENT --set-json VALUES` (collect, train, evaluate); the "
        "metric is an evaluation summary metric. Every trial's config is checked first.",
    )
    sweep.add_argument("experiment", metavar="NAME_OR_FILE", help="a built-in experiment or .toml")
    sweep.add_argument("--preset", default=None, help="default: the file's default_preset")
    sweep.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="SECTION.FIELD=SPEC",
        help="a swept field: values V1,V2,... (or a JSON list) or DISTRIBUTION:MIN:MAX with "
        "DISTRIBUTION uniform, log_uniform_values, int_uniform, q_uniform, "
        "q_log_uniform_values (repeatable; default: none)",
    )
    sweep.add_argument(
        "--params", type=Path, metavar="FILE", help="a sweep TOML file (method, metric, goal, "
        "[parameters]); --param and the flags below add to it or override it",
    )  # fmt: skip
    sweep.add_argument("--method", choices=METHODS, default=None, help="default: grid")
    sweep.add_argument(
        "--seeds",
        type=config_flag(TrainConfig, "seed"),
        nargs="+",
        default=None,
        help="training seeds, swept as train.seed (one seed per trial; default: the experiment's)",
    )
    sweep.add_argument(
        "--metric", default=None, help=f"eval/AGENT/NAME to optimise (default: {DEFAULT_METRIC})"
    )
    sweep.add_argument("--goal", choices=GOALS, default=None, help="default: maximize")
    sweep.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="a field every trial sets (repeatable; default: none)",
    )
    sweep.add_argument(
        "--out", type=Path, default=None, help="default: sweeps/EXPERIMENT-PRESET-METHOD.yaml"
    )
    sweep.set_defaults(handler=sweep_command)


def sweep_command(args: argparse.Namespace) -> int:
    from latentrl.experiment_files import default_preset, experiment_path, read_toml
    from latentrl.run_directory import check_writable

    path = experiment_path(args.experiment)  # UserError for an unknown experiment
    experiment = args.experiment if path.stem == args.experiment else str(path.resolve())
    preset = args.preset or default_preset(read_toml(path))
    settings = read_sweep_file(args.params) if args.params is not None else {}
    parameters: dict[str, Parameter] = dict(settings.get("parameters", {}))
    for text in args.param:
        parameter = parse_parameter(text)
        parameters[parameter.name] = parameter
    if args.seeds is not None:
        if "train.seed" in parameters:
            raise UserError("--seeds and a train.seed parameter: give the seeds once")
        parameters["train.seed"] = values_parameter("train.seed", args.seeds)
    config = sweep_config(
        experiment,
        preset,
        args.method or settings.get("method", "grid"),
        parameters,
        metric=args.metric or settings.get("metric", DEFAULT_METRIC),
        goal=args.goal or settings.get("goal", "maximize"),
        fixed=args.set,
    )
    out = args.out or Path("sweeps") / f"{config['name']}.yaml"
    check_writable(out.parent, "--out")
    checked = check_trials(experiment, preset, args.set, config, parameters)
    write_sweep(config, out)
    count = trial_count(config)
    size = f"{count} trials" if count is not None else "trials until stopped"
    print(
        f"wrote {out}: {config['method']} sweep, {size} ({checked} configs checked), metric "
        f"{config['metric']['name']} ({config['metric']['goal']}). Start it with "
        f"`wandb sweep {out}`, then `wandb agent ENTITY/PROJECT/SWEEP_ID` on each machine."
    )
    return 0


def check_trials(
    experiment: str,
    preset: str,
    fixed: list[str],
    config: Mapping[str, Any],
    parameters: Mapping[str, Parameter],
) -> int:
    """Resolve the config of every trial (a grid up to :data:`CHECKED_TRIALS`) or of each
    value and bound of each parameter; UserError naming the first trial that fails. Returns
    how many configs were resolved."""
    from latentrl.pipeline import experiment_config

    checked = 0
    for values in _trials_to_check(config, parameters):
        seeds, overrides = json_settings(values, None, fixed)
        try:
            experiment_config(experiment, preset, seeds[0], overrides)
        except UserError as exc:
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            raise UserError(f"the trial {shown} would fail: {exc}") from None
        checked += 1
    return checked


def _trials_to_check(
    config: Mapping[str, Any], parameters: Mapping[str, Parameter]
) -> Iterator[dict[str, Any]]:
    count = trial_count(config)
    if count is not None and count <= CHECKED_TRIALS:
        yield from grid_trials(config)
        return
    for parameter in parameters.values():
        for value in parameter.probes():
            yield {parameter.name: value}
