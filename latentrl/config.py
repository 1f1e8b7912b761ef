"""The config schema: typed, frozen dataclasses, their JSON round trips and ``--set`` overrides.

An :class:`ExperimentConfig` says everything a run does: which data to collect, which model
to build, how to weigh the loss, how to train, how to plan in the latent space and how to
evaluate. The schema's defaults are the recipe for an env nobody has tuned; what was tuned for
one task lives in an experiment file (experiments/NAME.toml, read by
:mod:`latentrl.experiment_files`). A command line changes single fields with
``--set section.field=value``. Sections and fields added later have defaults, so the
``config.json`` of an older run still loads.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from latentrl.agents.registry import AGENT_NAMES
from latentrl.data import check_chain_length, check_near_goal_share
from latentrl.devices import device_name_problem
from latentrl.errors import UserError
from latentrl.field_rules import SEED_MAX, check_fields, checked
from latentrl.kinds import check_loss_sections, model_kind
from latentrl.losses import LossConfig, legacy_key_hint, upgrade_legacy_loss
from latentrl.models import ModelConfig
from latentrl.planning.options.registry import option_specs
from latentrl.planning.plan_config import PlanConfig, legacy_plan_key_hint, upgrade_legacy_plan

WORKERS_MAX = 256
"""The most collection worker processes a config may ask for."""


def env_kwargs_dict(value: Any, section: str) -> dict[str, Any]:
    """``SECTION.env_kwargs`` as a dict; a UserError unless it is a JSON object."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise UserError(
            f'{section}.env_kwargs must be a JSON object such as {{"g": 9.81}}, got {value!r}'
        )
    return dict(value)


@dataclass(frozen=True)
class DataConfig:
    """The dataset a run trains on (collected on first use, then reused)."""

    env_id: str = checked("latentrl/Pendulum-v0", str)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``gymnasium.make(env_id, ...)`` wherever the env is made
    (collection, training, evaluation): a JSON object."""
    transitions: int = checked(20_000, int, low=1)
    mode: Literal["uniform", "rollout"] = checked("uniform", str, choices=("uniform", "rollout"))
    seed: int = checked(0, int, low=0, high=SEED_MAX)
    """Collection seed; kept apart from the training seed so seeds of one experiment share data."""
    chain_length: int = checked(1, int, low=1)
    """Uniform mode: transitions per chain from each drawn start state (random controls),
    the windows loss.multi_step.horizon needs; 1: independent transitions (E2C)."""
    near_goal_share: float = checked(0.0, float, low=0, high=1)
    """Uniform mode: share of the chains that start near the goal state (within 0.2 of the
    state box's half-width in every coordinate, or ``near_goal_widths``) rather than
    anywhere; 0: all uniform (E2C)."""
    near_goal_widths: tuple[float, ...] | None = checked(
        None, float, above=0, high=1, items=True, optional=True
    )
    """The near-goal box's half-width in each state coordinate, as a fraction of the state
    box's half-width (1: the coordinate's whole range), e.g. ``[0.6, 0.2, 0.6, 0.5]`` for a
    cart-pole's (x, theta, x', theta') near upright; None: 0.2 in every coordinate."""
    validation_fraction: float = checked(0.1, float, above=0, below=1)
    workers: int = checked(1, int, low=1, high=WORKERS_MAX)
    """Collection worker processes (MuJoCo envs render faster with 2)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "env_kwargs", env_kwargs_dict(self.env_kwargs, "data"))
        check_fields(self, "data")
        check_chain_length(self.chain_length, self.mode)
        if self.near_goal_widths is not None:
            object.__setattr__(self, "near_goal_widths", tuple(self.near_goal_widths))
        check_near_goal_share(self.near_goal_share, self.mode, self.near_goal_widths)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation. Minibatches have a fixed shape (the last partial batch is dropped)."""

    epochs: int = checked(100, int, low=1)
    batch_size: int = checked(128, int, low=1)
    learning_rate: float = checked(1e-3, float, above=0)
    final_learning_rate: float = checked(1e-4, float, low=0)
    """Cosine decay from ``learning_rate`` to this over the whole run."""
    weight_decay: float = checked(1e-5, float, low=0)
    grad_clip_norm: float = checked(1_000.0, float, above=0)
    """The Bernoulli loss sums over thousands of pixels: raw gradient norms reach ~1e3."""
    seed: int = checked(0, int, low=0, high=SEED_MAX)
    device: str = checked("auto", str, extra=device_name_problem)
    """"auto" (CUDA when present), "cpu", "cuda", "cuda:1", ..."""
    compile: bool = checked(False, bool)
    """torch.compile the training step (worth it on a GPU, slow to start on a CPU)."""
    tf32: bool = checked(False, bool)
    """TF32 matmuls on CUDA (``torch.set_float32_matmul_precision("high")``, for the whole
    process); no effect on a CPU."""
    bf16: bool = checked(False, bool)
    """The training step's forward pass under bfloat16 autocast (matrix products in bf16, the
    weights, their gradients and the optimizer in float32); validation stays float32."""
    image_every: int = checked(10, int, low=1)
    """Epochs between image grids and latent maps (always at the end as well)."""
    probe_steps: int = checked(1_500, int, low=1)
    """Adam steps of the latent-to-state probe fitted at the end of training."""

    def __post_init__(self) -> None:
        check_fields(self, "train")


AGENTS = AGENT_NAMES
"""Agents ``latentrl evaluate`` knows: latent MPC (the trained model), oracle MPC (true state
and dynamics), uniformly random actions."""


@dataclass(frozen=True)
class EvalConfig:
    """The evaluation protocol of ``latentrl evaluate`` (:mod:`latentrl.evaluate`).

    Every agent starts from the same ``episodes`` start states, drawn by the env's
    ``sample_start_states`` with ``seed``, and runs ``horizon`` steps (default: the env's).
    """

    episodes: int = checked(20, int, low=1)
    seed: int = checked(0, int, low=0, high=SEED_MAX)
    """Seed of the start states (not of training): the same starts for every run."""
    agents: tuple[str, ...] = AGENTS
    """Which of ``latent``, ``oracle``, ``random`` to evaluate, in this order."""
    gifs: int | None = checked(None, int, low=0, optional=True)
    """Episodes of the latent agent saved as GIFs (observation, decoded latent, plan): the
    first ``gifs``, or every episode when None."""
    horizon: int | None = checked(None, int, low=1, optional=True)
    """Steps per episode; None: the env's task horizon."""
    oracle_horizon: int = checked(40, int, low=1)
    """Planning horizon of the oracle (true-state iLQR MPC)."""
    device: str = checked("auto", str, extra=device_name_problem)
    """Device of the latent agent: "auto" (CUDA when present), "cpu", "cuda", ..."""
    env_workers: int = checked(1, int, low=1, high=256)
    """Processes that step the episodes' envs (1: the evaluating process): for many episodes
    of an env that renders slowly (MuJoCo). The same episodes for any count."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the evaluation's env over ``data.env_kwargs``: another task on the
    env the model trained on (start states, goal region, horizon), e.g. PC3's balance with
    the swing-up's model. The observation and action spaces must stay the training env's."""

    def __post_init__(self) -> None:
        if isinstance(self.agents, str) or not isinstance(self.agents, Sequence):
            raise UserError(f"eval.agents must be a list of agent names, got {self.agents!r}")
        object.__setattr__(self, "agents", tuple(self.agents))
        object.__setattr__(self, "env_kwargs", env_kwargs_dict(self.env_kwargs, "eval"))
        check_fields(self, "eval")
        unknown = [a for a in self.agents if a not in AGENTS]
        if unknown or not self.agents or len(set(self.agents)) != len(self.agents):
            raise UserError(
                f"eval.agents must name each of {', '.join(AGENTS)} at most once, got "
                f"{list(self.agents)}"
            )


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = checked(kind=str)
    preset: str = checked(kind=str)
    data: DataConfig
    model: ModelConfig
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        check_fields(self, "")
        check_loss_sections(self.model.kind, self.loss)
        kind = model_kind(self.model.kind)
        horizon, data = kind.window(self.loss), self.data
        if horizon > 1 and data.mode == "uniform" and data.chain_length < horizon:
            key = (
                "loss.multi_step.horizon"
                if kind.loss_section is None
                else f"loss.{kind.loss_section}.window"
            )
            raise UserError(
                f"{key}={horizon} needs chains of at least {horizon} "
                f"transitions, but data.chain_length={data.chain_length}; set "
                f"data.chain_length={horizon} or more, or {key}=1"
            )


# --- JSON and command-line overrides ----------------------------------------------------------

ENV_FACTS = ("model.obs_shape", "model.action_dim")
"""Fields read from the env's spaces when a config is resolved, never written by hand."""


class UnknownFieldError(UserError):
    """A config names a field the schema does not have."""


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints(cls)``, evaluated once per class (the annotations are strings)."""
    return typing.get_type_hints(cls)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass, or of a dict holding some."""
    plain = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
    return json.loads(json.dumps(plain, default=_section_dict))


def _section_dict(value: Any) -> Any:
    """JSON of a config section nested in a plain dict (``json.dumps``'s ``default``)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not a config section")


def schema_defaults() -> dict[str, Any]:
    """Every section's defaults as a dict, without ``name``, ``preset`` and the env facts
    (:data:`ENV_FACTS`): the recipe for an env nobody has tuned."""
    sections: dict[str, Any] = {}
    for section in dataclasses.fields(ExperimentConfig):
        cls = type_hints(ExperimentConfig)[section.name]
        if not dataclasses.is_dataclass(cls):
            continue
        values = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                values[f.name] = f.default_factory()
        sections[section.name] = to_dict(values)
    return sections


def flat_fields(fields: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """``prefix.key`` -> value of a config section as a dict, nested sections (``loss.curvature``,
    ``plan.options.NAME``) flattened to ``prefix.key.field``."""
    flat: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, Mapping):
            flat |= flat_fields(value, f"{prefix}.{key}")
        else:
            flat[f"{prefix}.{key}"] = value
    return flat


@functools.cache
def _flat_defaults() -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, fields in schema_defaults().items():
        flat |= flat_fields(fields, section)
    for name, spec in option_specs().items():
        flat |= flat_fields(to_dict(spec.config()), f"plan.options.{name}")
    return flat


IGNORED_SETTINGS = frozenset(
    {
        "train.seed",  # what varies within a group
        "train.device",
        "train.compile",
        "train.image_every",
        "data.workers",
        "plan.compile",
        "eval.agents",
        "eval.gifs",
        "eval.device",
        "eval.env_workers",
    }
)
"""Settings left out when runs are grouped (``latentrl compare``, W&B groups): the seed, and
fields that change no reported number beyond rounding (where it runs, how fast, what is drawn)."""


def flat_defaults() -> dict[str, Any]:
    """Every field's default, named as :func:`flat_fields` names it (``plan.q``); the fields
    of each planner option under ``plan.options.NAME.FIELD`` with that option's defaults."""
    return dict(_flat_defaults())


def from_dict(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a dict made by :func:`to_dict`, checking every key.

    ``where`` is the dotted path of ``data`` in the whole config (``"plan"``), so that every
    error names the field as ``plan.horizon``."""
    hints = type_hints(cls)
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}
    prefix = f"{where}." if where else ""
    if not isinstance(data, Mapping):
        raise UserError(f"{where or 'the config'} must be a table/object, got {data!r}")
    unknown = sorted(set(data) - names)
    if unknown:
        raise UnknownFieldError(
            f"unknown field(s) {', '.join(prefix + k for k in unknown)}; allowed in "
            f"{where or 'the top level'}: {', '.join(sorted(names))}"
        )
    missing = [
        f.name
        for f in fields
        if f.name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise UserError(f"missing field(s) {', '.join(prefix + k for k in missing)}")
    values = {key: _convert(hints[key], value, prefix + key) for key, value in data.items()}
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise UserError(f"{where} must be a JSON object (a table), got {value!r}")
        return dict(value)
    if origin is tuple:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise UserError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_convert(item, v, where) for v in value)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise UserError(f"{where} must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return None
        if len(options) == 1:
            return _convert(options[0], value, where)
        return value
    if hint is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise UserError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint in (int, str, bool) and type(value) is not hint:
        raise UserError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def parse_assignment(assignment: str) -> tuple[list[str], Any]:
    """``"section.field=value"`` -> (``["section", "field"]``, value parsed as JSON, else the
    string)."""
    key, sep, text = assignment.partition("=")
    path = key.strip().split(".")
    if not sep or not all(path):
        raise UserError(f"--set expects section.field=value, got {assignment!r}")
    try:
        return path, json.loads(text)
    except json.JSONDecodeError:
        return path, text


def override_dict(data: dict[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """``data`` (a config as a dict, changed in place and returned) with the ``--set``
    assignments applied; each must name a field ``data`` has.

    In a section that maps names to sections (``plan.options``) a missing section is created
    (``plan.options.shooting.count=8`` adds shooting with its defaults but ``count``) and
    ``null`` removes one; the schema checks the names when the config is built.
    """
    for assignment in assignments:
        path, value = parse_assignment(assignment)
        key = ".".join(path)
        if (hint := legacy_key_hint(key) or legacy_plan_key_hint(key)) is not None:
            raise UserError(f"--set {key}: {hint}")
        target: dict[str, Any] = data
        schema: Any = ExperimentConfig
        for part in path[:-1]:
            if _open_section(schema) and target.get(part) is None:
                target[part] = {}
            if not isinstance(target.get(part), dict):
                raise UserError(f"--set {key}: no config section {part!r}")
            target, schema = target[part], _subsection(schema, part)
        if path[-1] not in target and not _open_section(schema):
            raise UserError(f"--set {key}: no field {path[-1]!r}; known: {sorted(target)}")
        target[path[-1]] = value
    return data


def apply_overrides(config: ExperimentConfig, assignments: Sequence[str]) -> ExperimentConfig:
    """Apply ``section.field=value`` assignments (value parsed as JSON, else a string)."""
    return from_dict(ExperimentConfig, override_dict(to_dict(config), assignments))


def _open_section(schema: Any) -> bool:
    """Whether a section takes names it does not hold yet: a mapping of sections
    (``plan.options``, schema ``dict``) or a section in one (schema None)."""
    return schema is None or schema is dict


def _subsection(schema: Any, name: str) -> Any:
    """The schema of field ``name`` of a section whose schema is ``schema``: a config
    dataclass, ``dict`` for a mapping of sections, None inside one (or for a plain field)."""
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        return None
    hint = type_hints(schema).get(name)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    return dict if typing.get_origin(hint) in (dict, Mapping) else None


def upgrade_legacy(data: Any) -> Any:
    """A config.json dict written by an older latentrl in today's layout: loss terms as
    sections (:func:`~latentrl.losses.upgrade_legacy_loss`), planner options as sections
    (:func:`~latentrl.planning.plan_config.upgrade_legacy_plan`)."""
    if not isinstance(data, dict):
        return data
    data = upgrade_legacy_loss(data)
    if isinstance(data.get("plan"), Mapping):
        data = data | {"plan": upgrade_legacy_plan(data["plan"])}
    return data


def save_config(config: ExperimentConfig, path: Any) -> None:
    from pathlib import Path

    Path(path).write_text(json.dumps(to_dict(config), indent=2) + "\n")


def load_config(path: Any) -> ExperimentConfig:
    """The config of a ``config.json`` (as a run writes it); UserError naming the file."""
    from pathlib import Path

    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"no config at {path}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None
    try:
        return from_dict(ExperimentConfig, upgrade_legacy(data))
    except UnknownFieldError as exc:
        raise UserError(
            f"{path}: {exc}. Another version of latentrl wrote them: load the file with that "
            "checkout, or delete the unknown field(s) from it to load it here without what "
            "they set"
        ) from None
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
