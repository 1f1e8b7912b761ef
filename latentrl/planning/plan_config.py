"""The plan section of an experiment: the MPC core and its options by name.

:class:`PlanConfig` holds what every latent MPC plan has (horizon, cost weights, replanning,
iLQR iterations, Jacobians) and ``options``, the planner options it uses by name, each with
its own validated config (:mod:`latentrl.planning.options`). In TOML::

    [plan]
    horizon = 40
    [plan.options.shooting]
    count = 1024
    beyond = 0.5

:func:`upgrade_legacy_plan` reads the flat ``plan`` of a ``config.json`` or ``results.json``
written before the options had sections.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from latentrl.errors import UserError
from latentrl.field_rules import check_fields, checked
from latentrl.planning.options.registry import parse_options
from latentrl.planning.options.shooting import ShootingConfig, search_length


@dataclass(frozen=True)
class PlanConfig:
    """Latent iLQR MPC of the trained model (:class:`latentrl.agents.LatentMPCAgent`).

    Cost ``Σ q |z_t - z_goal|² + r |u_t|²  +  q_f |z_T - z_goal|²``, plus ``q_speed |z_{t+1} -
    z_t|²`` for each planned step where ``q_speed > 0``. On Pendulum-v0 a terminal
    weight well above q was essential (with q_f = q the planner never left the bottom), and
    exact Jacobians beat E2C's own A, B.
    """

    horizon: int = checked(40, int, low=1)
    """Planning horizon T in control steps. A swing-up whose latent distance to the goal stays
    flat for its first steps needs a horizon that sees past them."""
    q: float = checked(1.0, float, low=0)
    """Running state weight: Q = q I."""
    r: float = checked(0.01, float, above=0)
    """Control weight: R = r I."""
    q_f: float = checked(100.0, float, low=0)
    """Terminal state weight: Q_f = q_f I."""
    q_speed: float = checked(0.0, float, low=0)
    """Weight of each planned step's move in the latent, ``q_speed |z_{t+1} - z_t|²``
    (:mod:`latentrl.planning.speed`): a latent shows a velocity mostly as the move of a step,
    which the goal cost hardly weighs, so this asks the plan to arrive slowly and stay. 0: no
    such cost."""
    state_scale: Literal["unit", "encodings", "cost"] = checked(
        "unit", str, choices=("unit", "encodings", "cost")
    )
    """The unit of the state cost. ``unit``: latent coordinates as they are. ``encodings``:
    the spread of the run's training encodings, Q = q I / s² and Q_f = q_f I / s² with s² the
    mean per-coordinate variance of the belief means of the training observations, so q, q_f
    and r weigh the same for latents of any scale (the kinds' latents differ in scale by an
    order of magnitude). ``cost``: Q = q M and Q_f = q_f M, with M the PSD matrix whose
    quadratic form around the goal's encoding best fits the task's own state cost of the
    training transitions nearest the goal (:mod:`latentrl.agents.latent_cost`), so the latent
    cost prices states as the task does. The last two need the run's training data at
    evaluation."""
    belief: Literal["filtered", "observation"] = checked(
        "filtered", str, choices=("filtered", "observation")
    )
    """The planner's start state at each step. ``filtered``: the model's belief, updated over
    the episode with every action and observation (for one-observation kinds, e2c, pcc and
    pc3, the latest observation's encoding). ``observation``: the belief from the latest
    observation alone, as at an episode's first step; for the filter kind, an ablation of its
    filtering."""
    replan_every: int = checked(1, int, low=1)
    """Control steps between iLQR solves (in between: the plan with its feedback gains)."""
    max_iterations: int = checked(20, int, low=1)
    """iLQR iterations per solve (warm-started solves need a few)."""
    jacobian: Literal["exact", "e2c"] = checked("exact", str, choices=("exact", "e2c"))
    """Linearise with the exact Jacobian of the mean transition, or E2C's own A_t, B_t."""
    compile: Literal["auto", "on", "off"] = checked("auto", str, choices=("auto", "on", "off"))
    """Run iLQR's batched pieces, the transition network's steps of its line search included,
    through ``torch.compile`` (:attr:`~latentrl.planning.ILQRConfig.compile`). ``auto``: on a
    GPU, where a plan's hundreds of small kernels each wait on their launch, and not on a CPU,
    where compiling took 16 s to several minutes per shape and the agent's step gained 1.2x.
    The plans are the same up to float rounding."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Planner options by name, each a section of its own fields (``plan.options.NAME``):
    ``warm_start``, ``shooting``, ``restarts`` (initialisers), ``blocked_pushes``,
    ``recorded_moves`` (dynamics modifiers), ``roadmap`` (goals); see
    :mod:`latentrl.planning.options`. A dict of fields is parsed into the option's config;
    a null section is dropped."""

    def __post_init__(self) -> None:
        check_fields(self, "plan")
        if self.replan_every > self.horizon:
            raise UserError(
                f"plan.replan_every must be <= plan.horizon ({self.horizon}), got "
                f"{self.replan_every}"
            )
        if self.options is not None and not isinstance(self.options, Mapping):
            raise UserError(f"plan.options must be sections by option name, got {self.options!r}")
        object.__setattr__(self, "options", parse_options(self.options))
        shooting = self.options.get("shooting")
        if isinstance(shooting, ShootingConfig):
            search_length(shooting.lookahead, self.horizon)  # refuses a search shorter than T


_LEGACY_KEYS = (
    "restarts",
    "shooting",
    "shooting_steps",
    "shooting_beyond",
    "blocked_ratio",
    "roadmap_lookahead",
    "recorded_moves",
)
"""Flat option fields of ``plan`` before the options had sections."""


_LEGACY_PLACES = {
    "restarts": "restarts.count",
    "shooting": "shooting.count",
    "shooting_steps": "shooting.steps",
    "shooting_beyond": "shooting.beyond",
    "blocked_ratio": "blocked_pushes.ratio",
    "roadmap_lookahead": "roadmap.lookahead",
    "recorded_moves": "recorded_moves.count",
}
"""Old flat plan field -> its place under ``plan.options`` (0, its old "off", is no section)."""


def legacy_plan_key_hint(key: str) -> str | None:
    """Where a flat option field of the old ``plan`` went (``plan.shooting`` -> "moved to
    plan.options.shooting.count ..."), in words that follow the key; None for other keys."""
    section, _, name = key.partition(".")
    if section != "plan" or name not in _LEGACY_PLACES:
        return None
    option = _LEGACY_PLACES[name].split(".")[0]
    return (
        f"moved to plan.options.{_LEGACY_PLACES[name]} in latentrl 0.2 "
        f"(plan.options.{option}=null turns the option off)"
    )


def upgrade_legacy_plan(plan: Mapping[str, Any]) -> dict[str, Any]:
    """``plan`` with the flat option fields of older runs (``restarts``, ``shooting``,
    ``shooting_steps``, ``shooting_beyond``, ``blocked_ratio``, ``roadmap_lookahead``,
    ``recorded_moves``) moved into ``options`` sections; an option whose old field was 0 (off)
    gets none. A plan without them comes back unchanged (a copy)."""
    old = {key: plan[key] for key in _LEGACY_KEYS if key in plan}
    upgraded = {key: value for key, value in plan.items() if key not in _LEGACY_KEYS}
    if not old:
        return upgraded
    sections: dict[str, dict[str, Any]] = {}
    if old.get("restarts"):
        sections["restarts"] = {"count": old["restarts"]}
    if old.get("shooting"):
        sections["shooting"] = {
            "count": old["shooting"],
            "steps": old.get("shooting_steps"),
            "beyond": old.get("shooting_beyond", 0.0),
        }
    if old.get("blocked_ratio"):
        sections["blocked_pushes"] = {"ratio": old["blocked_ratio"]}
    if old.get("roadmap_lookahead"):
        sections["roadmap"] = {"lookahead": old["roadmap_lookahead"]}
    if old.get("recorded_moves"):
        sections["recorded_moves"] = {"count": old["recorded_moves"]}
    options = dict(plan.get("options") or {})
    both = sorted(set(sections) & set(options))
    if both:
        raise UserError(
            f"plan sets {both} both as old flat fields and in plan.options: keep only plan.options"
        )
    upgraded["options"] = options | sections
    return upgraded
