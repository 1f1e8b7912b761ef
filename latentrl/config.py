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
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from latentrl.data import check_chain_length, check_near_goal_share
from latentrl.errors import UserError
from latentrl.losses import CURVATURE_RADIUS, LossWeights
from latentrl.models import ModelConfig


@dataclass(frozen=True)
class DataConfig:
    """The dataset a run trains on (collected on first use, then reused)."""

    env_id: str = "latentrl/Pendulum-v0"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``gymnasium.make(env_id, ...)`` wherever the env is made
    (collection, training, evaluation): a JSON object."""
    transitions: int = 20_000
    mode: Literal["uniform", "rollout"] = "uniform"
    seed: int = 0
    """Collection seed; kept apart from the training seed so seeds of one experiment share data."""
    chain_length: int = 1
    """Uniform mode: transitions per chain from each drawn start state (random controls),
    the windows train.multi_step_horizon needs; 1: independent transitions (E2C)."""
    near_goal_share: float = 0.0
    """Uniform mode: share of the chains that start near the goal state (within 0.2 of the
    state box's half-width in every coordinate) rather than anywhere; 0: all uniform (E2C)."""
    validation_fraction: float = 0.1
    workers: int = 1
    """Collection worker processes (MuJoCo envs render faster with 2)."""

    def __post_init__(self) -> None:
        if not isinstance(self.env_kwargs, Mapping) or not all(
            isinstance(k, str) for k in self.env_kwargs
        ):
            raise UserError(
                f'data.env_kwargs must be a JSON object such as {{"g": 9.81}}, '
                f"got {self.env_kwargs!r}"
            )
        object.__setattr__(self, "env_kwargs", dict(self.env_kwargs))
        check_chain_length(self.chain_length, self.mode)
        check_near_goal_share(self.near_goal_share, self.mode)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation. Minibatches have a fixed shape (the last partial batch is dropped)."""

    epochs: int = 100
    batch_size: int = 128
    learning_rate: float = 1e-3
    final_learning_rate: float = 1e-4
    """Cosine decay from ``learning_rate`` to this over the whole run."""
    weight_decay: float = 1e-5
    grad_clip_norm: float = 1_000.0
    """The Bernoulli loss sums over thousands of pixels: raw gradient norms reach ~1e3."""
    seed: int = 0
    device: str = "auto"
    """"auto" (CUDA when present), "cpu", "cuda", "cuda:1", ..."""
    compile: bool = False
    """torch.compile the training step (worth it on a GPU, slow to start on a CPU)."""
    image_every: int = 10
    """Epochs between image grids and latent maps (always at the end as well)."""
    probe_steps: int = 1_500
    """Adam steps of the latent-to-state probe fitted at the end of training."""
    multi_step_horizon: int = 1
    """K: transitions the multi-step loss term rolls through (1: off, only E2C's terms). Needs
    chained data, data.chain_length >= K."""
    multi_step_encoder_gradient: float = 1.0
    """Share of the multi-step term's gradient that reaches the encoder (through z_t); 0: the
    term trains the transition only and leaves the latent geometry to E2C's terms."""
    curvature_radius: float = CURVATURE_RADIUS
    """Radius, in latent units, of the neighbourhood the curvature term (``loss.curvature``,
    off by default) asks the transition to be affine in."""
    move_gate_blocked_share: float = 0.5
    """For the move gate's term (``loss.move_gate``): a training push counts as blocked when
    its frames changed less than this share of the median change per unit push."""

    def __post_init__(self) -> None:
        if not self.curvature_radius > 0:
            raise UserError(f"train.curvature_radius must be > 0, got {self.curvature_radius}")
        if not 0.0 < self.move_gate_blocked_share < 1.0:
            raise UserError(
                "train.move_gate_blocked_share must lie in (0, 1), got "
                f"{self.move_gate_blocked_share}"
            )
        if self.multi_step_horizon < 1:
            raise UserError(f"train.multi_step_horizon must be >= 1, got {self.multi_step_horizon}")
        if not 0.0 <= self.multi_step_encoder_gradient <= 1.0:
            raise UserError(
                "train.multi_step_encoder_gradient must be in [0, 1], got "
                f"{self.multi_step_encoder_gradient}"
            )


AGENTS = ("latent", "oracle", "random")
"""Agents ``latentrl evaluate`` knows: latent MPC (the trained model), oracle MPC (true state
and dynamics), uniformly random actions."""


@dataclass(frozen=True)
class PlanConfig:
    """Latent iLQR MPC of the trained model (:class:`latentrl.agents.LatentMPCAgent`).

    Cost ``Σ q |z_t - z_goal|² + r |u_t|²  +  q_f |z_T - z_goal|²``. On Pendulum-v0 a terminal
    weight of 30-100 q was essential (with q_f = q the planner never left the bottom), and
    exact Jacobians beat E2C's own A, B clearly (docs: FINDINGS of the calibration).
    """

    horizon: int = 40
    """Planning horizon T in control steps. On Pendulum-v0 the latent distance to the goal
    stays flat for the first ~30 steps of a swing-up, so a horizon of 20 never sees progress
    (0 of 10 swung up); 40 did (8 of 10)."""
    q: float = 1.0
    """Running state weight: Q = q I."""
    r: float = 0.01
    """Control weight: R = r I."""
    q_f: float = 100.0
    """Terminal state weight: Q_f = q_f I."""
    replan_every: int = 1
    """Control steps between iLQR solves (in between: the plan with its feedback gains)."""
    restarts: int = 0
    """Extra random control sequences solved alongside the warm start at each replan."""
    shooting: int = 0
    """Bang-bang control sequences rolled out at each replan; iLQR starts from the cheapest of
    them and the warm start (0: off). Finds swing-ups whose latent cost first rises."""
    shooting_steps: int | None = None
    """Shoot only at the replans of an episode's first this many control steps (None: at
    every replan)."""
    shooting_beyond: float = 0.0
    """Shoot for an episode only while its latent distance to the goal exceeds this fraction
    of its distance at the first step (0: whatever the distance). Keeps the search for a
    swing-up away from the balancing near the goal."""
    max_iterations: int = 20
    """iLQR iterations per solve (warm-started solves need a few)."""
    jacobian: Literal["exact", "e2c"] = "exact"
    """Linearise with the exact Jacobian of the mean transition, or E2C's own A_t, B_t."""
    blocked_ratio: float = 0.0
    """When an episode's latent moved less than this fraction of what the model predicted for
    the last action (0: off), its next solves treat that action's direction d as blocked
    while the episode stays stuck: the planner's dynamics see controls without their push
    into d, ``f(z, u - max(0, dᵀu) d)``, up to 4 such directions, cleared once it moves. For
    contact that a transition linear in u cannot represent (planar: a push into a wall moves
    nothing, pulling away moves freely)."""
    roadmap_lookahead: float = 0.0
    """Plan towards a subgoal this many steps of the training data ahead on the shortest path
    to the goal through a roadmap of the run's training frames (0: straight to the goal;
    :mod:`latentrl.agents.roadmap`). For a latent folded so that far states encode near the
    goal (planar). Needs the run's dataset at evaluation. Not for states with velocities: on
    Pendulum-v0 its links change θ̇ for free and it scored 0/10 (9/10 without)."""
    recorded_moves: int = 0
    """Fit the move of the current state to the recorded training transitions: the least
    squares ``Δz ≈ B u + c`` of this many transitions whose first frame is closest by image to
    the observation (0: off). Where the model's move disagrees with it (a column of ``B(z)``
    at a cosine below 0.8 from the fit's), the planner's dynamics get the difference added,
    ``f(z, u) + (B_fit - B(z_t)) u + c_fit - c(z_t)``, so its first step moves as the data did
    there. Reads the training transitions of the roadmap (needs ``roadmap_lookahead > 0``).
    For a model whose move is wrong in places (planar, next to the obstacles: docs/benchmarks.md,
    "Planar: why the failing episodes fail")."""

    def __post_init__(self) -> None:
        if self.horizon < 1 or not 1 <= self.replan_every <= self.horizon:
            raise UserError(
                f"plan: need horizon >= 1 and 1 <= replan_every <= horizon, got "
                f"horizon={self.horizon}, replan_every={self.replan_every}"
            )
        if not (self.q >= 0 and self.q_f >= 0 and self.r > 0):  # NaN fails too
            raise UserError(
                f"plan: need q >= 0, q_f >= 0, r > 0, got {self.q}, {self.q_f}, {self.r}"
            )
        if self.restarts < 0 or self.shooting < 0 or self.max_iterations < 1:
            raise UserError("plan: need restarts >= 0, shooting >= 0 and max_iterations >= 1")
        if not self.shooting_beyond >= 0:
            raise UserError(f"plan.shooting_beyond must be >= 0, got {self.shooting_beyond}")
        if not 0 <= self.blocked_ratio <= 1:
            raise UserError(f"plan.blocked_ratio must be in [0, 1], got {self.blocked_ratio}")
        if not 0 <= self.roadmap_lookahead < math.inf:
            raise UserError(
                f"plan.roadmap_lookahead must be finite and >= 0, got {self.roadmap_lookahead}"
            )
        if isinstance(self.recorded_moves, bool) or self.recorded_moves < 0:
            raise UserError(f"plan.recorded_moves must be an int >= 0, got {self.recorded_moves!r}")
        if self.recorded_moves > 0 and self.roadmap_lookahead == 0:
            raise UserError(
                "plan.recorded_moves fits the transitions of the roadmap's training data: set "
                "plan.roadmap_lookahead > 0 as well, or plan.recorded_moves=0"
            )
        if self.roadmap_lookahead > 0 and self.shooting > 0:
            raise UserError(
                "plan.roadmap_lookahead and plan.shooting do not combine (shooting measures "
                "its progress towards the goal, the roadmap moves the goal): set one to 0"
            )
        if self.shooting_steps is not None and (
            isinstance(self.shooting_steps, bool) or self.shooting_steps < 1
        ):
            raise UserError(
                f"plan.shooting_steps must be >= 1 or null, got {self.shooting_steps!r}"
            )
        if self.jacobian not in ("exact", "e2c"):
            raise UserError(f"plan.jacobian must be 'exact' or 'e2c', got {self.jacobian!r}")


@dataclass(frozen=True)
class EvalConfig:
    """The evaluation protocol of ``latentrl evaluate`` (:mod:`latentrl.evaluate`).

    Every agent starts from the same ``episodes`` start states, drawn by the env's
    ``sample_start_states`` with ``seed``, and runs ``horizon`` steps (default: the env's).
    """

    episodes: int = 20
    seed: int = 0
    """Seed of the start states (not of training): the same starts for every run."""
    agents: tuple[str, ...] = AGENTS
    """Which of ``latent``, ``oracle``, ``random`` to evaluate, in this order."""
    gifs: int | None = None
    """Episodes of the latent agent saved as GIFs (observation, decoded latent, plan): the
    first ``gifs``, or every episode when None."""
    horizon: int | None = None
    """Steps per episode; None: the env's task horizon."""
    oracle_horizon: int = 40
    """Planning horizon of the oracle (true-state iLQR MPC)."""
    device: str = "auto"
    """Device of the latent agent: "auto" (CUDA when present), "cpu", "cuda", ..."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "agents", tuple(self.agents))
        if self.episodes < 1 or self.oracle_horizon < 1:
            raise UserError(
                f"eval: need episodes >= 1 and oracle_horizon >= 1, got "
                f"{self.episodes} and {self.oracle_horizon}"
            )
        if self.gifs is not None and (isinstance(self.gifs, bool) or self.gifs < 0):
            raise UserError(
                f"eval.gifs must be an int >= 0 or null (every episode), got {self.gifs!r}"
            )
        if self.horizon is not None and (isinstance(self.horizon, bool) or self.horizon < 1):
            raise UserError(f"eval.horizon must be a positive int or null, got {self.horizon!r}")
        unknown = [a for a in self.agents if a not in AGENTS]
        if unknown or not self.agents or len(set(self.agents)) != len(self.agents):
            raise UserError(
                f"eval.agents must name each of {', '.join(AGENTS)} at most once, got "
                f"{list(self.agents)}"
            )


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    preset: str
    data: DataConfig
    model: ModelConfig
    loss: LossWeights = field(default_factory=LossWeights)
    train: TrainConfig = field(default_factory=TrainConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if self.loss.move_gate != 0 and not self.model.move_gate:
            raise UserError(
                f"loss.move_gate={self.loss.move_gate:g} trains a move gate, but the model has "
                "none; set model.move_gate=true, or loss.move_gate=0"
            )
        horizon, data = self.train.multi_step_horizon, self.data
        if horizon > 1 and data.mode == "uniform" and data.chain_length < horizon:
            raise UserError(
                f"train.multi_step_horizon={horizon} needs chains of at least {horizon} "
                f"transitions, but data.chain_length={data.chain_length}; set "
                f"data.chain_length={horizon} or more, or train.multi_step_horizon=1"
            )


# --- JSON and command-line overrides ----------------------------------------------------------

ENV_FACTS = ("model.obs_shape", "model.action_dim")
"""Fields read from the env's spaces when a config is resolved, never written by hand."""


class UnknownFieldError(UserError):
    """A config names a field the schema does not have."""


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def schema_defaults() -> dict[str, Any]:
    """Every section's defaults as a dict, without ``name``, ``preset`` and the env facts
    (:data:`ENV_FACTS`): the recipe for an env nobody has tuned."""
    sections: dict[str, Any] = {}
    for section in dataclasses.fields(ExperimentConfig):
        cls = typing.get_type_hints(ExperimentConfig)[section.name]
        if not dataclasses.is_dataclass(cls):
            continue
        values = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                values[f.name] = f.default_factory()
        sections[section.name] = json.loads(json.dumps(values))
    return sections


def from_dict(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a dict made by :func:`to_dict`, checking every key.

    ``where`` is the dotted path of ``data`` in the whole config (``"plan"``), so that every
    error names the field as ``plan.horizon``."""
    hints = typing.get_type_hints(cls)
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
    assignments applied; each must name a field ``data`` has."""
    for assignment in assignments:
        path, value = parse_assignment(assignment)
        key = ".".join(path)
        target = data
        for part in path[:-1]:
            if not isinstance(target.get(part), dict):
                raise UserError(f"--set {key}: no config section {part!r}")
            target = target[part]
        if path[-1] not in target:
            raise UserError(f"--set {key}: no field {path[-1]!r}; known: {sorted(target)}")
        target[path[-1]] = value
    return data


def apply_overrides(config: ExperimentConfig, assignments: Sequence[str]) -> ExperimentConfig:
    """Apply ``section.field=value`` assignments (value parsed as JSON, else a string)."""
    return from_dict(ExperimentConfig, override_dict(to_dict(config), assignments))


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
        return from_dict(ExperimentConfig, data)
    except UnknownFieldError as exc:
        raise UserError(
            f"{path}: {exc}. Another version of latentrl wrote them: load the file with that "
            "checkout, or delete the unknown field(s) from it to load it here without what "
            "they set"
        ) from None
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
