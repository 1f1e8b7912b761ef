"""Model kinds: which model a run trains, with which objective, and which settings it reads.

A kind is one entry of :data:`MODEL_KINDS`, named by ``model.kind``:

- ``e2c``: Embed to Control (Watter et al., 2015), one-frame-pair inference; reads E2C's loss
  terms (``loss.reconstruction`` ... ``loss.curvature``).
- ``filter``: E2C's parts with a learned process noise; the belief at time t is filtered over
  every observation and action so far, trained with a sequence ELBO over windows of
  ``loss.filter.window`` transitions.
- ``pcc``: Prediction, Consistency, Curvature (Levine et al., 2020): E2C's parts, a learned
  transition noise and a backward encoder Q(z_t | z_{t+1}, x_t, u_t); reads ``loss.pcc``.
- ``pc3``: Predictive Coding for Locally-Linear Control (Shu et al., 2020): a deterministic
  encoder and a stochastic latent dynamics, no decoder; InfoNCE with the dynamics' density as
  critic, consistency and curvature; reads ``loss.pc3``.

Everything downstream speaks the model's protocol and does not ask the kind: the planner
(``step``, ``linearize``), the agents (``initial_belief``, ``update_belief``), evaluation and
compare. Adding a kind is a model class (a subclass of :class:`~latentrl.models.E2C` where
the parts or the belief differ), an objective with its config section in ``loss``, and one
entry here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from latentrl.errors import UserError
from latentrl.losses import (
    Continuation,
    LossConfig,
    filter_objective,
    objective,
    pc3_objective,
    pcc_objective,
)
from latentrl.losses.objective import TERMS
from latentrl.models import E2C, JacobianKind, ModelConfig
from latentrl.models.filtering import FilteringE2C
from latentrl.models.pc3 import PC3
from latentrl.models.pcc import PCC

EVERY_KIND_READS = ("goal_cost",)
"""``loss`` sections the training loop adds to every kind's objective."""

Objective = Callable[..., tuple[Tensor, dict[str, Tensor]]]
"""``objective(model, x_t, u_t, x_next, loss_section, continuation) -> (loss, metrics)``."""


@dataclass(frozen=True)
class ModelKind:
    """One model kind: its model class, objective and the ``loss`` sections it reads."""

    name: str
    summary: str
    model_class: type[E2C]
    objective: Objective
    """Called with the loss section :attr:`loss_section` names (the whole ``loss`` if None)."""
    loss_section: str | None
    """The section of ``loss`` this kind reads; None: E2C's term sections."""
    window: Callable[[LossConfig], int]
    """Transitions per training row (1: single transitions)."""
    whole_windows: bool
    """Train only on rows that start a whole window, ``train.batch_size // window`` rows per
    step; False: every row, rows without a window masked in the window terms."""

    def loss_sections(self) -> tuple[str, ...]:
        """The names of the ``loss`` sections this kind reads (with the sections every kind
        reads, :data:`EVERY_KIND_READS`)."""
        if self.loss_section is None:
            return tuple(spec.name for spec in TERMS) + EVERY_KIND_READS
        return (self.loss_section, *EVERY_KIND_READS)

    def compute(
        self,
        model: E2C,
        x_t: Tensor,
        u_t: Tensor,
        x_next: Tensor,
        loss: LossConfig,
        continuation: Continuation | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The kind's objective on a batch: ``(loss, metrics)``."""
        section = loss if self.loss_section is None else getattr(loss, self.loss_section)
        return self.objective(model, x_t, u_t, x_next, section, continuation)


MODEL_KINDS: dict[str, ModelKind] = {
    kind.name: kind
    for kind in (
        ModelKind(
            "e2c",
            "Embed to Control: q(z|x) from one observation, E2C's bound",
            E2C,
            objective,
            None,
            lambda loss: loss.multi_step.horizon,
            whole_windows=False,
        ),
        ModelKind(
            "filter",
            "a belief filtered over the history (Kalman update), sequence ELBO",
            FilteringE2C,
            filter_objective,
            "filter",
            lambda loss: loss.filter.window,
            whole_windows=True,
        ),
        ModelKind(
            "pcc",
            "PCC: E2C's parts plus a backward encoder; prediction, consistency, curvature",
            PCC,
            pcc_objective,
            "pcc",
            lambda loss: 1,
            whole_windows=False,
        ),
        ModelKind(
            "pc3",
            "PC3: deterministic encoder, no decoder; predictive coding, consistency, curvature",
            PC3,
            pc3_objective,
            "pc3",
            lambda loss: loss.pc3.window,
            whole_windows=False,
        ),
    )
}


def model_kind(name: str) -> ModelKind:
    """The kind called ``name``; UserError naming the kinds there are."""
    try:
        return MODEL_KINDS[name]
    except KeyError:
        raise UserError(
            f"model.kind={name!r} is not a model kind; use one of {', '.join(MODEL_KINDS)}"
        ) from None


def build_model(config: ModelConfig, jacobian: JacobianKind = "exact") -> E2C:
    """A freshly initialised model of ``config.kind``."""
    return model_kind(config.kind).model_class(config, jacobian)


def check_loss_sections(kind_name: str, loss: LossConfig) -> None:
    """UserError when ``loss`` sets a section that ``model.kind`` does not read: a setting
    that would silently do nothing."""
    kind = model_kind(kind_name)
    read = set(kind.loss_sections())
    defaults = LossConfig()
    for section in dataclasses.fields(LossConfig):
        if section.name in read:
            continue
        if getattr(loss, section.name) != getattr(defaults, section.name):
            readers = [k.name for k in MODEL_KINDS.values() if section.name in k.loss_sections()]
            raise UserError(
                f"loss.{section.name} is read by model.kind={' or '.join(readers)}, but this "
                f"run's model.kind is {kind_name!r}; remove loss.{section.name} or change "
                "model.kind"
            )


def loss_read_by(kind_name: str, loss: Mapping[str, Any]) -> dict[str, Any]:
    """The ``loss`` section as a dict, with the sections ``kind_name`` does not read set back
    to their defaults (a file tuned for one kind, run as another)."""
    read = set(model_kind(kind_name).loss_sections())
    defaults = dataclasses.asdict(LossConfig())
    return {name: (dict(value) if name in read else defaults[name]) for name, value in loss.items()}
