"""Compare evaluated runs across seeds (``latentrl compare RUN_DIR... [--out PATH]``).

Each run contributes, per agent, the episode means of its ``eval/results.json`` (written by
:mod:`latentrl.evaluate`; in place of a run, a folder of ``latentrl evaluate RUN --out DIR``
contributes that evaluation of its run) and its training numbers from ``summary.json`` (the
probe R²). Runs are grouped by experiment and settings: the training config
(``config.json``) and the plan and eval settings the evaluation ran with (``results.json``),
all but the training seed, the fields that do not change a number (:data:`IGNORED_SETTINGS`)
and the ``loss`` sections the run's model kind does not read. A group is named after its
experiment and the presets its runs started from, so a preset and another preset with
``--set`` that came to the same settings are one group (``pc3_cartpole (close, full)``). Runs
of one preset whose settings differ are separate groups, named ``A``, ``B``, ... after the
preset and listed under the table with the settings that tell them apart. Within a group every
number is reported as mean ± standard error across runs (seeds): ``std(ddof=1) / sqrt(k)``
over the ``k`` per-run means, so the spread is between seeds, not between episodes of one run.

The oracle and random agents do not depend on the trained model (the agent registry,
:mod:`latentrl.agents.registry`, says which agents do not): a group that evaluated the latent
agent alone shows them from the other runs compared that ran the same env, start states,
episode length and baseline settings (marked ``*`` and listed under the table).

Outputs: a text table (one row per experiment and agent), a bar plot PNG with standard-error
bars, and beside the PNG the same numbers as JSON and a Markdown table for reports (each
seed's steps in goal, the successes counted).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latentrl.agents.registry import AGENT_NAMES, model_free_agents
from latentrl.config import (
    IGNORED_SETTINGS,
    EvalConfig,
    ExperimentConfig,
    PlanConfig,
    flat_fields,
    from_dict,
    load_config,
    to_dict,
    upgrade_legacy_plan,
)
from latentrl.episodes import mean_and_se
from latentrl.errors import UserError
from latentrl.kinds import model_kind
from latentrl.recipe import RunNames, experiment_and_preset
from latentrl.results import EvalResults
from latentrl.run_directory import EVAL_DIR, RESULTS_FILE, EvalDirectory, RunDirectory

DEFAULT_NAME = "compare.png"
"""The plot's file name when ``--out`` is a directory or not given."""
AGENT_ORDER = AGENT_NAMES
"""Agents in registry order first (the latent agent with its two baselines), any others after."""
BASELINES = model_free_agents()
"""Agents whose results do not depend on the trained model, only on the evaluation protocol."""


@dataclass(frozen=True)
class Metric:
    """A column: ``key`` in results.json's aggregates (or summary.json), shown ``× scale``."""

    title: str
    key: str
    fmt: str
    scale: float = 1.0


EVAL_METRICS = (
    Metric("steps in goal %", "steps_in_goal", "{:.1f}", 100.0),
    Metric("success %", "success", "{:.1f}", 100.0),
    Metric("cost", "cost", "{:.1f}"),
    Metric("ms/step", "ms_per_step", "{:.2f}"),
)
OF_ORACLE = Metric("of oracle %", "steps_in_goal_of_oracle", "{:.0f}", 100.0)
"""An agent's steps in goal as a share of the oracle's on the same starts (the papers' "% of
the oracle"); derived per group by :func:`of_oracle`, in the table and the JSON."""
TABLE_METRICS = (EVAL_METRICS[0], OF_ORACLE, *EVAL_METRICS[1:])
TRAIN_METRICS = (Metric("probe R²", "probe/r2_mean", "{:.3f}"),)
"""Training numbers of the run (not of an agent): shown on the latent agent's row."""


@dataclass(frozen=True)
class RunResults:
    """The numbers of one evaluated run."""

    run_dir: Path
    experiment: str
    preset: str
    seed: int
    episodes: int
    """Episodes per agent of its evaluation."""
    agents: dict[str, dict[str, float]]
    """agent -> metric key -> the run's mean over its episodes."""
    training: dict[str, float]
    """summary.json's numbers (``probe/r2_mean``, ``val/...``)."""
    settings: dict[str, Any]
    """``section.field`` -> value of the settings that shape the run's numbers
    (:func:`run_settings`)."""
    protocol: str | None
    """What the baseline agents' results depend on (env, start states, episode length, the
    oracle's horizon and the evaluation seed), as JSON; None where results.json lacks it."""

    @property
    def names(self) -> RunNames:
        """Its experiment and preset; ``(env_id, "recipe")`` for a run of an env's default
        recipe (``latentrl run --env ID``), whose experiment and preset have no names of their
        own."""
        env_id = self.settings.get("data.env_id")
        return experiment_and_preset(self.experiment, self.preset, env_id)


@dataclass(frozen=True)
class Stat:
    """Mean and standard error across ``n`` runs (``se`` NaN when ``n < 2``)."""

    mean: float
    se: float
    n: int


NO_RUNS = Stat(math.nan, math.nan, 0)


@dataclass(frozen=True)
class Group:
    """Runs of one experiment, preset and settings, with their statistics across seeds."""

    name: str
    runs: tuple[RunResults, ...]
    agents: dict[str, dict[str, Stat]]
    """agent -> metric key -> Stat over the runs that evaluated that agent."""
    training: dict[str, Stat]
    differs: dict[str, Any]
    """The settings in which this group differs from another group of its preset (empty when
    its preset has one group)."""
    sources: dict[str, tuple[RunResults, ...]]
    """Agent -> the runs its numbers come from: the group's own, or for a baseline agent none
    of them evaluated, other runs with the same protocol (:attr:`borrowed`)."""
    unused: tuple[Path, ...]
    """Baselines-only evaluations of the group's settings whose agents its own runs evaluated."""

    @property
    def borrowed(self) -> dict[str, tuple[Path, ...]]:
        """Baseline agent -> the runs outside the group its numbers come from."""
        return {
            agent: tuple(r.run_dir for r in runs)
            for agent, runs in self.sources.items()
            if not any(agent in r.agents for r in self.runs)
        }


@dataclass(frozen=True)
class Comparison:
    groups: list[Group]
    table: str
    plot: Path
    json_path: Path
    markdown_path: Path


# --- reading run directories ------------------------------------------------------------------


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; UserError if it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} should hold a JSON object")
    return data


def run_settings(config: ExperimentConfig, results: EvalResults, where: Path) -> dict[str, Any]:
    """``section.field`` -> value of what shapes a run's numbers: its training config, with the
    ``plan`` and ``eval`` sections its evaluation ran with (``results``; the config's own in
    older results without them), less :data:`IGNORED_SETTINGS`."""
    header = results.header
    recorded = {"plan": (PlanConfig, header.plan), "eval": (EvalConfig, header.eval)}
    try:
        written = {k: data for k, (cls, data) in recorded.items() if data is not None}
        if isinstance(written.get("plan"), Mapping):
            written["plan"] = upgrade_legacy_plan(written["plan"])
        used = {k: from_dict(recorded[k][0], value) for k, value in written.items()}
    except (UserError, TypeError) as exc:
        raise UserError(f"{where}: unreadable plan or eval settings ({exc})") from None
    sections_dict = to_dict(dataclasses.replace(config, **used))
    read = set(model_kind(config.model.kind).loss_sections())
    return {
        key: value
        for section, fields in sections_dict.items()
        if isinstance(fields, dict)
        for key, value in flat_fields(fields, section).items()
        if key not in IGNORED_SETTINGS and not _unread_loss_field(key, read)
    }


def _unread_loss_field(key: str, read: set[str]) -> bool:
    """Whether ``key`` is a field of a ``loss`` section the run's model kind does not read
    (the filter kind's run ignores E2C's ``loss.multi_step``): it shapes none of its numbers."""
    return _is_loss(key) and key.split(".")[1] not in read


def baseline_protocol(results: EvalResults, settings: Mapping[str, Any]) -> str | None:
    """What the oracle's and the random agent's numbers depend on, as one JSON string; None
    without the start states (results.json of older runs)."""
    header = results.header.to_json()
    if "start_states" not in header:
        return None
    keys = ("data.env_id", "eval.oracle_horizon", "eval.seed")
    env_kwargs = {
        k: v for k, v in settings.items() if k.startswith(("data.env_kwargs.", "eval.env_kwargs."))
    }
    parts = [header["horizon"], header["start_states"], *(settings[k] for k in keys), env_kwargs]
    return json.dumps(parts)


def _unevaluated_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` is a run directory whose own evaluation is not written (yet)."""
    run = RunDirectory(run_dir)
    return run.is_run() and not run.eval.has_results()


def read_run(run_dir: Path | str) -> RunResults:
    """The config, evaluation and training summary of one run directory, or of the run an
    evaluation folder (``latentrl evaluate RUN --out DIR``) names, with that evaluation."""
    run_dir = Path(run_dir)
    folder = EvalDirectory(run_dir)
    if not RunDirectory(run_dir).is_run() and folder.has_results():
        results = EvalResults.read(folder.results)
        run = _evaluated_run(results, folder.results)
        results_path = folder.results
    else:
        run = RunDirectory(run_dir).require_run()
        results_path = run.eval.results
        if not results_path.is_file():
            raise UserError(
                f"{run_dir} has no evaluation yet (no {EVAL_DIR}/{RESULTS_FILE}); "
                f"run `latentrl evaluate {run_dir}` first"
            )
        results = EvalResults.read(results_path)
    config = load_config(run.config)
    settings = run_settings(config, results, results_path)
    training = read_json(run.summary) if run.summary.is_file() else {}
    return RunResults(
        run_dir=run_dir,
        experiment=config.name,
        preset=config.preset,
        seed=config.train.seed,
        episodes=results.header.episodes,
        agents=results.means(),
        training={k: float(v) for k, v in training.items() if isinstance(v, int | float)},
        settings=settings,
        protocol=baseline_protocol(results, settings),
    )


def _evaluated_run(results: EvalResults, where: Path) -> RunDirectory:
    """The run an evaluation folder's ``results.json`` names."""
    named = results.header.run_dir
    if named is None or not RunDirectory(Path(named)).is_run():
        raise UserError(
            f"{where} names the run {named!r}, which is not a run directory here: compare the "
            "run itself, or evaluate it again with --out"
        )
    return RunDirectory(Path(named))


# --- statistics across seeds ------------------------------------------------------------------


def across(values: Sequence[float]) -> Stat:
    """Mean ± standard error of per-run values (NaN values left out)."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return NO_RUNS
    mean, se = mean_and_se(np.array(finite))
    return Stat(mean, se, len(finite))


def _ordered(names: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    return [a for a in AGENT_ORDER if a in names] + [a for a in names if a not in AGENT_ORDER]


def _agent_stats(runs: Sequence[RunResults], agent: str) -> dict[str, Stat]:
    """Per metric, the Stat over the runs that evaluated ``agent``."""
    per_run = [r.agents[agent] for r in runs if agent in r.agents]
    return {m.key: across([x.get(m.key, math.nan) for x in per_run]) for m in EVAL_METRICS}


def of_oracle(own: Stat, oracle: Stat) -> Stat:
    """``own`` steps in goal over the oracle's mean. The oracle's numbers do not depend on the
    training seed, so the share's standard error is ``own``'s over that mean."""
    if own.n == 0 or oracle.n == 0 or not oracle.mean > 0:
        return NO_RUNS
    return Stat(own.mean / oracle.mean, own.se / oracle.mean, own.n)


def _settings_key(run: RunResults) -> str:
    return json.dumps(run.settings, sort_keys=True)


def _differences(members: Sequence[Sequence[RunResults]]) -> list[dict[str, Any]]:
    """Per group of one preset, its values of the settings not shared by all the groups."""
    first = [runs[0].settings for runs in members]
    keys = dict.fromkeys(k for x in first for k in x)  # a planner option only some runs use
    varying = [k for k in keys if len({json.dumps(v) for v in _values(k, first)}) > 1]
    return [{k: x.get(k) for k in varying if k in x or not _is_loss(k)} for x in first]


def _is_loss(key: str) -> bool:
    return key.startswith("loss.")


def _values(key: str, settings: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The groups' values of ``key``: a loss field only where the group's kind reads it (its
    absence is no difference), any other field everywhere (None: a planner option unused)."""
    if _is_loss(key):
        return [x[key] for x in settings if key in x]
    return [x.get(key) for x in settings]


def group_runs(runs: Sequence[RunResults]) -> list[Group]:
    """Runs grouped by experiment and settings, in order of first appearance. A group is named
    after its experiment and the presets its runs were started with (``close, full`` when a
    preset and another one with ``--set`` came to the same settings); groups of the same name
    are told apart as ``A``, ``B``, ..."""
    by_settings: dict[tuple[str, str], list[RunResults]] = {}
    for run in runs:
        by_settings.setdefault((run.names.experiment, _settings_key(run)), []).append(run)
    by_name: dict[str, list[list[RunResults]]] = {}
    for same in by_settings.values():
        by_name.setdefault(_group_name(same), []).append(same)
    groups = []
    for base_name, sets in by_name.items():
        split = [_seeds_and_lenders(same) for same in sets]
        members = [seeds for seeds, _ in split]
        several = len(members) > 1
        for i, ((seeds, lenders), differs) in enumerate(
            zip(split, _differences(members), strict=True)
        ):
            name = f"{base_name} {chr(ord('A') + i)}" if several else base_name
            groups.append(_group(name, seeds, differs, runs, lenders))
    return groups


def _group_name(runs: Sequence[RunResults]) -> str:
    """``experiment (preset, ...)``: the presets of ``runs`` (one experiment, one set of
    settings) in order of first appearance."""
    presets = dict.fromkeys(run.names.preset for run in runs)
    return f"{runs[0].names.experiment} ({', '.join(presets)})"


def _baselines_only(run: RunResults) -> bool:
    """An evaluation of model-free agents alone (``latentrl evaluate RUN --out DIR --agents
    oracle random``): it says nothing of the trained model."""
    return all(agent in BASELINES for agent in run.agents)


def _seeds_and_lenders(
    runs: Sequence[RunResults],
) -> tuple[list[RunResults], list[RunResults]]:
    """The runs of one preset and settings split into the seeds of their group and its
    lenders: baselines-only evaluations with the protocol of the group's trained-model runs,
    which lend their agents to groups that lack them (:func:`_group`) instead of counting as
    one more seed."""
    trained = [r for r in runs if not _baselines_only(r)]
    protocol = trained[0].protocol if trained else None
    seeds, lenders = [], []
    for run in runs:
        lends = protocol is not None and _baselines_only(run) and run.protocol == protocol
        (lenders if lends else seeds).append(run)
    return seeds, lenders


def _group(
    name: str,
    members: Sequence[RunResults],
    differs: dict[str, Any],
    every: Sequence[RunResults],
    lenders: Sequence[RunResults],
) -> Group:
    """A group's statistics; a baseline agent none of its runs evaluated comes from the runs in
    ``every`` with the same protocol. ``lenders``: its baselines-only evaluations (not seeds)."""
    agents = _ordered(a for r in members for a in r.agents)
    stats = {a: _agent_stats(members, a) for a in agents}
    sources = {a: tuple(r for r in members if a in r.agents) for a in agents}
    protocol = members[0].protocol
    used: set[Path] = set()
    for agent in BASELINES:
        donors = [r for r in every if agent in r.agents and r.protocol == protocol]
        if agent not in stats and protocol is not None and donors:
            stats[agent] = _agent_stats(donors, agent)
            sources[agent] = tuple(donors)
            used.update(r.run_dir for r in donors)
    oracle = stats.get("oracle", {}).get("steps_in_goal", NO_RUNS)
    for agent, agent_stats in stats.items():
        own = agent_stats["steps_in_goal"]
        agent_stats[OF_ORACLE.key] = NO_RUNS if agent == "oracle" else of_oracle(own, oracle)
    training = {
        m.key: across([r.training.get(m.key, math.nan) for r in members]) for m in TRAIN_METRICS
    }
    unused = tuple(r.run_dir for r in lenders if r.run_dir not in used)
    return Group(
        name,
        tuple(members),
        {a: stats[a] for a in _ordered(stats)},
        training,
        differs,
        sources,
        unused,
    )


# --- outputs ----------------------------------------------------------------------------------


def format_stat(stat: Stat, metric: Metric) -> str:
    """``mean ± se`` in the metric's units; the mean alone for one run, ``-`` for none."""
    if stat.n == 0:
        return "-"
    text = metric.fmt.format(stat.mean * metric.scale)
    if not math.isnan(stat.se):
        text += " ± " + metric.fmt.format(stat.se * metric.scale)
    return text


def format_table(groups: Sequence[Group]) -> str:
    """One row per experiment and agent: mean ± standard error across seeds; under it, what
    tells apart the groups of one preset and where borrowed baselines come from."""
    header = ["experiment", "seeds", "agent", *(m.title for m in TABLE_METRICS + TRAIN_METRICS)]
    rows = [header]
    for g in groups:
        seeds = " ".join(str(r.seed) for r in g.runs)
        for i, (agent, stats) in enumerate(g.agents.items()):
            row = [g.name, seeds] if i == 0 else ["", ""]
            row += [agent + ("*" if agent in g.borrowed else "")]
            row += [format_stat(stats[m.key], m) for m in TABLE_METRICS]
            shown = _shows_training(g, agent)
            row += [format_stat(g.training[m.key], m) if shown else "" for m in TRAIN_METRICS]
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append("mean ± standard error across runs (seeds); each run: its mean over episodes")
    return "\n".join(lines + footnotes(groups))


def _shows_training(group: Group, agent: str) -> bool:
    """The row that holds the group's training numbers: the latent agent's, else the first."""
    return agent == "latent" or ("latent" not in group.agents and agent == next(iter(group.agents)))


def footnotes(groups: Sequence[Group]) -> list[str]:
    """What tells apart the groups of one preset, where borrowed baselines come from, and the
    baselines-only evaluations a group did not need."""
    lines = []
    for g in groups:
        if (line := settings_line(g)) is not None:
            lines.append(line)
        by_donors: dict[tuple[Path, ...], list[str]] = {}
        for agent, donors in g.borrowed.items():
            by_donors.setdefault(donors, []).append(f"{agent}*")
        for donors, agents in by_donors.items():
            lines.append(
                f"{', '.join(agents)} of {g.name}: from {', '.join(map(str, donors))} (same env, "
                "starts and protocol; these agents do not depend on the trained model)"
            )
        if g.unused:
            lines.append(
                f"{', '.join(map(str, g.unused))}: model-free agents only, not a seed of "
                f"{g.name}, whose own runs evaluated those agents"
            )
    return lines


def format_markdown(groups: Sequence[Group]) -> str:
    """The table as Markdown for a report: per group and agent, steps in goal as mean ±
    standard error with each run's value in brackets, its share of the oracle, the successes
    counted over every episode, the cost, and the probe R² over the runs (lowest-highest)."""
    lines = [
        "| experiment | seeds | agent | steps in goal % (each seed) | % of oracle | successes "
        "| cost | probe R² |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        seeds = " ".join(str(r.seed) for r in g.runs)
        for i, (agent, stats) in enumerate(g.agents.items()):
            runs = g.sources[agent]
            steps = format_stat(stats["steps_in_goal"], EVAL_METRICS[0])
            if len(runs) > 1:
                each = (f"{100 * r.agents[agent]['steps_in_goal']:.1f}" for r in runs)
                steps += f" ({', '.join(each)})"
            successes = sum(round(r.agents[agent].get("success", 0.0) * r.episodes) for r in runs)
            cells = [
                g.name if i == 0 else "",
                seeds if i == 0 else "",
                agent + ("*" if agent in g.borrowed else ""),
                steps,
                format_stat(stats[OF_ORACLE.key], OF_ORACLE),
                f"{successes} of {sum(r.episodes for r in runs)}",
                format_stat(stats["cost"], EVAL_METRICS[2]),
                _probe_range(g.runs) if _shows_training(g, agent) else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Mean ± standard error across seeds; each seed: its mean over its episodes."]
    lines += [f"- {line}" for line in footnotes(groups)]
    return "\n".join(lines) + "\n"


def _probe_range(runs: Sequence[RunResults]) -> str:
    """The probe R² of ``runs``: one value, or the lowest and highest."""
    values = sorted(r.training["probe/r2_mean"] for r in runs if "probe/r2_mean" in r.training)
    if not values:
        return ""
    low, high = f"{values[0]:.3f}", f"{values[-1]:.3f}"
    return low if low == high else f"{low}-{high}"


def settings_line(group: Group, name: str | None = None) -> str | None:
    """``"NAME: key=value, ..."``: the settings that set the group apart, or None. ``name``:
    what to call the group instead of its name."""
    if not group.differs:
        return None
    values = ", ".join(f"{k}={json.dumps(v)}" for k, v in group.differs.items())
    return f"{group.name if name is None else name}: {values}"


def tick_labels(names: Sequence[str]) -> tuple[str, list[str]]:
    """``(shared, ticks)``: the words every name starts with, and each name without them, so
    that groups of one experiment read ``A``, ``B``, ... under their bars and the experiment's
    name is written once. Nothing is shared when a name would be left empty."""
    words = [name.split(" ") for name in names]
    shared = 0
    while len(names) > 1 and all(
        len(w) > shared + 1 and w[shared] == words[0][shared] for w in words
    ):
        shared += 1
    return " ".join(words[0][:shared]), [" ".join(w[shared:]) for w in words]


def plot_comparison(groups: Sequence[Group], path: Path) -> None:
    """Bar plot PNG: a panel per metric, experiments on the x axis, a bar per agent with
    standard-error bars (ms/step on a log scale)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    agents = _ordered(a for g in groups for a in g.agents)
    figure = Figure(figsize=(3.2 * len(EVAL_METRICS), 3.4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(EVAL_METRICS), squeeze=False)[0]
    width = 0.8 / max(len(agents), 1)
    shared, ticks = tick_labels([g.name for g in groups])
    for ax, metric in zip(axes, EVAL_METRICS, strict=True):
        for j, agent in enumerate(agents):
            stats = [g.agents[agent][metric.key] if agent in g.agents else NO_RUNS for g in groups]
            x = [i + (j - (len(agents) - 1) / 2) * width for i in range(len(groups))]
            heights = [s.mean * metric.scale for s in stats]
            errors = [0.0 if math.isnan(s.se) else s.se * metric.scale for s in stats]
            ax.bar(x, heights, width, yerr=errors, capsize=2, label=agent)
        ax.set_title(metric.title)
        if shared:
            ax.set_xticks(range(len(groups)), ticks)
        else:
            ax.set_xticks(range(len(groups)), ticks, rotation=20, ha="right")
        if metric.key == "ms_per_step":
            ax.set_yscale("log")
    # under the panels, not in the tick labels: a long setting there ran into the next label
    settings = [
        line for g, tick in zip(groups, ticks, strict=True) if (line := settings_line(g, tick))
    ]
    under_panels = [line for line in (shared, *settings) if line]
    if under_panels:
        figure.supxlabel("\n".join(under_panels), fontsize="small")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside upper center", ncols=len(agents), frameon=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)


def _stat_json(stat: Stat) -> dict[str, float | int | None]:
    def clean(x: float) -> float | None:
        return None if math.isnan(x) else x

    return {"mean": clean(stat.mean), "se": clean(stat.se), "n": stat.n}


def comparison_json(groups: Sequence[Group]) -> dict[str, Any]:
    """The JSON-ready numbers of the table (unscaled: fractions, not percent)."""
    return {
        g.name: {
            "runs": [str(r.run_dir) for r in g.runs],
            "seeds": [r.seed for r in g.runs],
            "agents": {
                agent: {key: _stat_json(s) for key, s in stats.items()}
                for agent, stats in g.agents.items()
            },
            "training": {key: _stat_json(s) for key, s in g.training.items()},
            "differs": g.differs,
            "borrowed": {agent: [str(d) for d in donors] for agent, donors in g.borrowed.items()},
        }
        for g in groups
    }


def output_paths(out: Path | str | None, first_run: Path | str) -> tuple[Path, Path]:
    """The PNG and JSON paths for ``--out``: a ``.png`` file, or a directory to hold
    ``compare.png``; by default the directory that holds ``first_run`` (``runs/`` for
    ``runs/<run>``), so a comparison lands beside the runs it compares, not in the working
    directory."""
    out = Path(first_run).parent if out is None else Path(out)
    if out.is_dir():
        out = out / DEFAULT_NAME
    if out.suffix.lower() != ".png":
        raise UserError(f"--out must be a .png file or a directory, got {out}")
    return out, out.with_suffix(".json")


def earlier_seeds(new_runs: Sequence[Path], candidates: Iterable[Path]) -> list[Path]:
    """The evaluated runs among ``candidates`` (newest first) of the same experiment and
    settings as one of ``new_runs`` (whatever preset they started from) and of a seed none of
    them has, the newest of each seed: what ``latentrl run NAME --seeds 2`` adds to its table
    after ``--seeds 0 1``. Runs that cannot be read are passed over."""
    taken = {key for key in map(_readable_run_key, new_runs) if key is not None}
    wanted = {(experiment, settings) for experiment, settings, _ in taken}
    new = {Path(d).resolve() for d in new_runs}
    joined = []
    for run_dir in candidates:
        key = None if Path(run_dir).resolve() in new else _readable_run_key(run_dir)
        if key is not None and key[:2] in wanted and key not in taken:
            taken.add(key)
            joined.append(Path(run_dir))
    return joined


def _readable_run_key(run_dir: Path) -> tuple[str, str, int] | None:
    """The experiment, settings and seed of an evaluated run of a trained model; None for a run
    without an evaluation, one this version cannot read, or a baselines-only evaluation."""
    if not RunDirectory(run_dir).eval.has_results():
        return None
    try:
        run = read_run(run_dir)
    except (UserError, OSError, ValueError, KeyError, TypeError):
        return None  # written by an older version, or damaged
    return None if _baselines_only(run) else (run.names.experiment, _settings_key(run), run.seed)


def compare_runs(
    run_dirs: Sequence[Path | str],
    out: Path | str | None = None,
    echo: Callable[[str], None] = print,
) -> Comparison:
    """Read, group and compare evaluated runs; print the table, write the plot, the JSON and
    the Markdown table (beside the plot, with its name)."""
    if not run_dirs:
        raise UserError("name at least one run directory")
    plot, data = output_paths(out, run_dirs[0])
    unique: dict[Path, Path] = {}  # resolved -> as given (a run named twice counts once)
    for d in run_dirs:
        unique.setdefault(Path(d).resolve(), Path(d))
    pending = [d for d in unique.values() if _unevaluated_run(d)]
    evaluated = [d for d in unique.values() if d not in pending]
    if pending and evaluated:  # a glob over an experiment's runs while one still trains
        echo(
            f"left out {len(pending)} run(s) without an evaluation yet (training, or stopped "
            f"before its evaluation): {', '.join(map(str, pending))}; `latentrl evaluate RUN` "
            "adds one"
        )
    groups = group_runs([read_run(d) for d in evaluated or pending])
    table = format_table(groups)
    plot_comparison(groups, plot)
    data.write_text(json.dumps(comparison_json(groups), indent=2, allow_nan=False) + "\n")
    markdown = plot.with_suffix(".md")
    markdown.write_text(format_markdown(groups))
    echo(table)
    echo(f"wrote {plot}, {data} and {markdown}")
    return Comparison(groups, table, plot, data, markdown)
