"""Typed evaluation results: the content of ``eval/results.json``.

:class:`EvalResults` is what ``latentrl evaluate`` writes and ``latentrl compare`` reads::

    {"run_dir", "env_id", "episodes", "horizon", "goal_radius", "final_steps", "state_names",
     "start_states", "eval", "plan", "gif_panels", "code",  <- EvalHeader: protocol, settings
     "agents": {name: {"aggregate": {metric: {"mean", "se"}},
                       "episodes": [{"start_state", metric: value, ...}]}},   <- AgentResults
     "baselines_from": {agent: run_dir}}                    <- only when agents were taken

:meth:`EvalResults.from_json` reads every results.json latentrl has written (the header fields
after ``final_steps`` are optional: hand-written or older files may lack them) and
:meth:`EvalResults.to_json` gives back the same object, keys in the same order, values
untouched. The ``eval`` and ``plan`` sections stay JSON objects: they record what the
evaluation ran with, whatever the config classes look like now.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from latentrl.errors import UserError

Json = Any
"""A value as it reads from JSON."""

PROTOCOL_FIELDS = (
    "env_id",
    "env_kwargs",
    "episodes",
    "horizon",
    "goal_radius",
    "final_steps",
    "start_states",
)
"""What every agent of one results.json shares: the same episodes of the same env (its id and
keyword arguments: physics, torque limit, ...) from the same starts."""


@dataclass(frozen=True)
class MeanSE:
    """A metric over episodes (control steps for the time): mean and standard error, ``se``
    None for fewer than two values."""

    mean: float
    se: float | None

    @classmethod
    def from_json(cls, data: Mapping[str, Json]) -> MeanSE:
        mean, se = data["mean"], data.get("se")
        if not isinstance(mean, int | float) or not (se is None or isinstance(se, int | float)):
            raise TypeError(f"mean and se must be numbers, got {mean!r} and {se!r}")
        return cls(mean, se)

    def to_json(self) -> dict[str, Json]:
        return {"mean": self.mean, "se": self.se}


@dataclass(frozen=True)
class EpisodeResult:
    """One episode of one agent: its start state ``(d,)`` and its metrics, by name in the
    order written (``steps_in_goal``, ``steps_in_goal_half_radius``, ``success``, ``cost``)."""

    start_state: tuple[float, ...]
    metrics: dict[str, float]

    @classmethod
    def from_json(cls, data: Mapping[str, Json]) -> EpisodeResult:
        metrics = {k: v for k, v in data.items() if k != "start_state"}
        return cls(tuple(data["start_state"]), metrics)

    def to_json(self) -> dict[str, Json]:
        return {"start_state": list(self.start_state), **self.metrics}


@dataclass(frozen=True)
class AgentResults:
    """One agent's numbers: aggregates over the episodes and each episode's metrics."""

    aggregate: dict[str, MeanSE]
    episodes: tuple[EpisodeResult, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Json]) -> AgentResults:
        aggregate = {k: MeanSE.from_json(v) for k, v in data["aggregate"].items()}
        return cls(aggregate, tuple(EpisodeResult.from_json(e) for e in data["episodes"]))

    def to_json(self) -> dict[str, Json]:
        return {
            "aggregate": {k: v.to_json() for k, v in self.aggregate.items()},
            "episodes": [e.to_json() for e in self.episodes],
        }

    def means(self) -> dict[str, float]:
        """Metric -> its mean over the episodes."""
        return {k: float(v.mean) for k, v in self.aggregate.items()}


@dataclass(frozen=True)
class EvalHeader:
    """The protocol and settings of an evaluation: everything in results.json but the agents.

    ``start_states`` ``(episodes, d)``; ``eval`` and ``plan`` the config sections the
    evaluation ran with, as JSON objects. None: absent from the file."""

    env_id: str
    episodes: int
    horizon: int
    goal_radius: float
    final_steps: int
    run_dir: str | None = None
    state_names: tuple[str, ...] | None = None
    start_states: tuple[tuple[float, ...], ...] | None = None
    env_kwargs: dict[str, Json] | None = None
    eval: dict[str, Json] | None = None
    plan: dict[str, Json] | None = None
    gif_panels: tuple[str, ...] | None = None
    code: dict[str, Json] | None = None
    """The latentrl that evaluated (:func:`latentrl.code_version.code_version`)."""

    @classmethod
    def from_json(cls, data: Mapping[str, Json]) -> EvalHeader:
        required = {k: data[k] for k in ("env_id", "episodes", "horizon", "goal_radius")}
        names = ("run_dir", "env_kwargs", "eval", "plan", "code")
        optional = {k: data[k] for k in names if k in data}
        for key in ("state_names", "gif_panels"):
            if key in data:
                optional[key] = tuple(data[key])
        if "start_states" in data:
            optional["start_states"] = tuple(tuple(s) for s in data["start_states"])
        for key in ("env_kwargs", "eval", "plan", "code"):
            if key in optional and not isinstance(optional[key], dict):
                raise TypeError(f"{key} must be a JSON object")
        return cls(**required, final_steps=data["final_steps"], **optional)

    def to_json(self) -> dict[str, Json]:
        """The header's keys in the order latentrl writes them; absent ones left out."""
        order = ("run_dir", "env_id", "env_kwargs", "episodes", "horizon", "goal_radius")
        order += ("final_steps",)
        order += ("state_names", "start_states", "eval", "plan", "gif_panels", "code")
        out: dict[str, Json] = {}
        for key in order:
            value = getattr(self, key)
            if value is None:
                continue
            if key == "start_states":
                value = [list(s) for s in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        return out

    def protocol(self) -> dict[str, Json]:
        """:data:`PROTOCOL_FIELDS` as JSON: two evaluations with equal protocols ran the same
        episodes."""
        data = self.to_json()
        return {key: data.get(key) for key in PROTOCOL_FIELDS}


@dataclass(frozen=True)
class EvalResults:
    """The content of ``results.json``: header, agents in the order they are listed, and the
    other runs some agents were taken from (``--baselines-from``)."""

    header: EvalHeader
    agents: dict[str, AgentResults]
    baselines_from: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Json, where: Path | str = "results.json") -> EvalResults:
        """Results from a results.json's content; UserError naming ``where`` if it is not
        latentrl evaluation results."""
        try:
            header = EvalHeader.from_json(data)
            agents = {name: AgentResults.from_json(a) for name, a in data["agents"].items()}
            origins = dict(data.get("baselines_from", {}))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            reason = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
            raise UserError(
                f"{where} does not look like latentrl evaluation results ({reason}); re-run "
                "`latentrl evaluate --overwrite`"
            ) from None
        return cls(header, agents, origins)

    @classmethod
    def read(cls, path: Path) -> EvalResults:
        """Results from the file ``path``; UserError if it cannot be read or is not results."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read {path}: {exc}") from None
        return cls.from_json(data, path)

    def to_json(self) -> dict[str, Json]:
        out = self.header.to_json() | {
            "agents": {name: a.to_json() for name, a in self.agents.items()}
        }
        if self.baselines_from:
            out["baselines_from"] = dict(self.baselines_from)
        return out

    def write(self, path: Path) -> None:
        """Write results.json: indented, strict JSON (no NaN), ending in a newline."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n")
        tmp.replace(path)  # a kill leaves the old file or the new one, never half of one

    def with_agents(
        self, agents: Mapping[str, AgentResults], origins: Mapping[str, str]
    ) -> EvalResults:
        """These results with ``agents`` (in their order) as the agents, listed in the eval
        section's ``agents`` too, and ``origins`` added to ``baselines_from``."""
        header = self.header
        if header.eval is not None:
            header = replace(header, eval=header.eval | {"agents": list(agents)})
        return EvalResults(header, dict(agents), self.baselines_from | dict(origins))

    def means(self) -> dict[str, dict[str, float]]:
        """Agent -> metric -> its mean over the episodes."""
        return {name: a.means() for name, a in self.agents.items()}
