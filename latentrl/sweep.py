"""``latentrl sweep EXPERIMENT``: a W&B sweep configuration over named config fields.

The file it writes is what ``wandb sweep FILE`` takes; ``wandb agent ID`` then runs its trials
on any number of machines. Each trial is one ``latentrl run EXPERIMENT`` (collect once,
train, evaluate) with the trial's values given as ``--set-json '{"section.field": value}'``
(the agent's ``${args_json}``), so a trial is exactly what that command does by hand. The
sweep's metric is one of the evaluation's summary metrics (``eval/<agent>/<metric>``, the
means :func:`latentrl.evaluate.summary_metrics` writes to the W&B run summary).

Parameters are named ``section.field`` and given as a list of values (``plan.horizon=20,30``)
or a distribution (``train.learning_rate=log_uniform_values:1e-4:1e-2``), on the command line
or in a small TOML file::

    method = "bayes"                       # grid | random | bayes
    metric = "eval/latent/steps_in_goal"   # optional; goal: maximize
    goal = "maximize"
    [parameters]
    "plan.horizon" = [20, 30, 40]
    "train.learning_rate" = { distribution = "log_uniform_values", min = 1e-4, max = 1e-2 }

Training seeds are the parameter ``train.seed``: one seed per trial, so W&B groups the seeds
of one setting (the run group is the experiment and every setting but the seed).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentrl.errors import UserError

METHODS = ("grid", "random", "bayes")
GOALS = ("maximize", "minimize")
DEFAULT_METRIC = "eval/latent/steps_in_goal"
DISTRIBUTIONS = {
    "uniform": float,
    "log_uniform_values": float,
    "int_uniform": int,
    "q_uniform": float,
    "q_log_uniform_values": float,
}
"""W&B's distributions given by ``min`` and ``max`` in the parameter's own units."""
METRIC_AGENTS = ("latent", "oracle", "random")
METRIC_NAMES = (
    "steps_in_goal",
    "steps_in_goal_half_radius",
    "success",
    "cost",
    "ms_per_step",
)


@dataclass(frozen=True)
class Parameter:
    """One swept field: a list of ``values``, or a ``distribution`` between ``low`` and
    ``high``."""

    name: str
    values: tuple[Any, ...] = ()
    distribution: str | None = None
    low: float = 0.0
    high: float = 0.0

    def to_wandb(self) -> dict[str, Any]:
        """The parameter as a W&B sweep config entry."""
        if self.distribution is None:
            return {"values": list(self.values)}
        return {"distribution": self.distribution, "min": self.low, "max": self.high}

    def probes(self) -> tuple[Any, ...]:
        """Values every trial's setting lies among or between: the values, or the bounds."""
        return self.values if self.distribution is None else (self.low, self.high)


def parse_value(text: str) -> Any:
    """A value as ``--set`` reads it: JSON, else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip()


def parse_parameter(text: str) -> Parameter:
    """``section.field=v1,v2,...`` or ``section.field=DISTRIBUTION:MIN:MAX``."""
    name, sep, spec = text.partition("=")
    name = name.strip()
    if not sep or "." not in name or not spec.strip():
        raise UserError(
            f"--param expects section.field=V1,V2,... or section.field=DISTRIBUTION:MIN:MAX, "
            f"got {text!r}"
        )
    head, *bounds = spec.split(":")
    if head in DISTRIBUTIONS:
        if len(bounds) != 2:
            raise UserError(f"--param {name}: give {head}:MIN:MAX, got {spec!r}")
        return distribution_parameter(name, head, parse_value(bounds[0]), parse_value(bounds[1]))
    if spec.lstrip().startswith("["):  # one JSON list of values, e.g. of lists
        values = parse_value(spec)
        if not isinstance(values, list):
            raise UserError(f"--param {name}: {spec!r} is not a JSON list of values")
        return values_parameter(name, values)
    return values_parameter(name, [parse_value(part) for part in spec.split(",")])


def values_parameter(name: str, values: Sequence[Any]) -> Parameter:
    if not values:
        raise UserError(f"parameter {name}: give at least one value")
    if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
        raise UserError(f"parameter {name}: a value is given twice in {list(values)}")
    return Parameter(name, values=tuple(values))


def distribution_parameter(name: str, distribution: str, low: Any, high: Any) -> Parameter:
    if distribution not in DISTRIBUTIONS:
        raise UserError(
            f"parameter {name}: distribution {distribution!r} is not one of "
            f"{', '.join(DISTRIBUTIONS)}"
        )
    kind = DISTRIBUTIONS[distribution]
    numbers = (low, high)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        raise UserError(f"parameter {name}: {distribution} needs numbers, got {low!r}, {high!r}")
    if kind is int and not all(float(v).is_integer() for v in numbers):
        raise UserError(f"parameter {name}: int_uniform needs integers, got {low!r}, {high!r}")
    if not low < high:
        raise UserError(f"parameter {name}: min {low} must be below max {high}")
    if "log" in distribution and low <= 0:
        raise UserError(f"parameter {name}: {distribution} needs min > 0, got {low}")
    return Parameter(name, distribution=distribution, low=kind(low), high=kind(high))


def read_sweep_file(path: Path) -> dict[str, Any]:
    """The settings of a sweep TOML file (module docstring): method, metric, goal and
    parameters (a dict of :class:`Parameter`)."""
    from latentrl.experiment_files import read_toml

    document = read_toml(path)
    unknown = set(document) - {"method", "metric", "goal", "parameters"}
    if unknown:
        raise UserError(
            f"{path}: unknown key(s) {', '.join(sorted(unknown))}; a sweep file has method, "
            "metric, goal and [parameters]"
        )
    parameters = {}
    for name, spec in document.get("parameters", {}).items():
        if isinstance(spec, list):
            parameters[name] = values_parameter(name, spec)
        elif isinstance(spec, dict) and set(spec) == {"distribution", "min", "max"}:
            parameters[name] = distribution_parameter(
                name, spec["distribution"], spec["min"], spec["max"]
            )
        else:
            raise UserError(
                f"{path}: parameter {name} must be a list of values or "
                "{ distribution = ..., min = ..., max = ... }"
            )
    return {k: v for k, v in document.items() if k != "parameters"} | {"parameters": parameters}


def check_metric(metric: str) -> None:
    """UserError unless ``metric`` is an evaluation summary metric ``eval/AGENT/NAME``."""
    parts = metric.split("/")
    if len(parts) != 3 or parts[0] != "eval" or parts[1] not in METRIC_AGENTS:
        raise UserError(
            f"--metric {metric!r}: the sweep's metric is an evaluation summary metric "
            f"eval/AGENT/NAME, AGENT one of {', '.join(METRIC_AGENTS)}, e.g. {DEFAULT_METRIC}"
        )
    if parts[2].removesuffix("_se") not in METRIC_NAMES:
        raise UserError(
            f"--metric {metric!r}: NAME must be one of {', '.join(METRIC_NAMES)} (or its _se)"
        )


def trial_command(experiment: str, preset: str | None, fixed: Sequence[str]) -> list[str]:
    """The sweep's ``command``: ``latentrl run`` with the trial's values as ``${args_json}``."""
    command = ["${env}", "latentrl", "run", experiment]
    if preset is not None:
        command += ["--preset", preset]
    for assignment in fixed:
        command += ["--set", assignment]
    return [*command, "--set-json", "${args_json}"]


def sweep_config(
    experiment: str,
    preset: str | None,
    method: str,
    parameters: Mapping[str, Parameter],
    metric: str = DEFAULT_METRIC,
    goal: str = "maximize",
    fixed: Sequence[str] = (),
) -> dict[str, Any]:
    """The W&B sweep configuration (a dict ``wandb sweep`` accepts as YAML)."""
    if method not in METHODS:
        raise UserError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
    if goal not in GOALS:
        raise UserError(f"--goal {goal!r}: choose maximize or minimize")
    check_metric(metric)
    if not parameters:
        raise UserError("give at least one parameter: --param section.field=V1,V2 or --params")
    if method == "grid":
        continuous = [p.name for p in parameters.values() if p.distribution is not None]
        if continuous:
            raise UserError(
                f"--method grid needs lists of values; {', '.join(continuous)} "
                "has a distribution: give values, or use --method random or bayes"
            )
    name = f"{Path(experiment).stem}" + (f"-{preset}" if preset else "")
    return {
        "name": f"{name}-{method}",
        "project": "latentrl",
        "method": method,
        "metric": {"name": metric, "goal": goal},
        "parameters": {key: p.to_wandb() for key, p in parameters.items()},
        "command": trial_command(experiment, preset, fixed),
    }


def grid_trials(config: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The values of each trial of a grid sweep (every combination), in order."""
    names = list(config["parameters"])
    lists = [config["parameters"][n]["values"] for n in names]
    for combination in itertools.product(*lists):
        yield dict(zip(names, combination, strict=True))


def trial_count(config: Mapping[str, Any]) -> int | None:
    """Trials of a grid sweep; None for random and bayes (they run until stopped)."""
    if config["method"] != "grid":
        return None
    return math.prod(len(p["values"]) for p in config["parameters"].values())


def expand_command(command: Sequence[str], values: Mapping[str, Any]) -> list[str]:
    """``command`` as ``wandb agent`` runs it for a trial with ``values``, without its
    ``${env}`` prefix: each ``${args_json}`` becomes the trial's values as one JSON word."""
    words = []
    for word in command:
        if word == "${env}":
            continue
        words.append(json.dumps(dict(values)) if word == "${args_json}" else word)
    return words


def write_sweep(config: Mapping[str, Any], path: Path) -> None:
    """Write ``config`` as YAML with a header saying how to start the sweep."""
    import yaml

    header = (
        "# W&B sweep written by `latentrl sweep`. Start it with `wandb sweep "
        f"{path.name}`,\n# then run `wandb agent ENTITY/PROJECT/SWEEP_ID` on each machine "
        "(in the latentrl checkout, its .venv active).\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
