"""The ``config.json`` of runs written before the loss terms had their own sections.

Until latentrl 0.2 the ``loss`` section held one flat weight per term, three term parameters
sat in ``train`` (``multi_step_horizon``, ``multi_step_encoder_gradient``,
``curvature_radius``), and an experiment since removed, the move gate, had
``model.move_gate``, ``loss.move_gate`` and ``train.move_gate_blocked_share``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from latentrl.errors import UserError

MOVED_TRAIN_FIELDS = {
    "multi_step_horizon": ("multi_step", "horizon"),
    "multi_step_encoder_gradient": ("multi_step", "encoder_gradient"),
    "curvature_radius": ("curvature", "radius"),
}
"""``train.<old>`` -> ``loss.<term>.<field>``."""

TERM_NAMES = (
    "reconstruction",
    "prediction",
    "kl_prior",
    "kl_transition",
    "multi_step",
    "multi_step_prediction",
    "curvature",
)
"""The terms whose flat weight ``loss.<term>`` became ``loss.<term>.weight``."""

GATE_REMOVED = (
    "this run used the move gate, an experiment removed in latentrl 0.2; evaluate it with "
    "commit c8db581"
)


GATE_KEYS = ("model.move_gate", "loss.move_gate", "train.move_gate_blocked_share")


def legacy_key_hint(key: str) -> str | None:
    """What became of a config key of the old layout (``section.field``, as ``--set`` takes it),
    in words that follow the key ("train.curvature_radius: moved to ..."); None for a key that
    did not change."""
    section, _, name = key.partition(".")
    if key in GATE_KEYS:
        return "belonged to the move gate, an experiment removed in latentrl 0.2"
    if section == "train" and name in MOVED_TRAIN_FIELDS:
        term, field = MOVED_TRAIN_FIELDS[name]
        return f"moved to loss.{term}.{field} in latentrl 0.2"
    if section == "loss" and name in TERM_NAMES:
        return f"a section since latentrl 0.2: set loss.{name}.weight"
    return None


def upgrade_legacy_loss(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a config dict (``config.json``) in the current ``loss`` layout.

    Flat weights ``loss.<term>: w`` become ``loss.<term>.weight: w``; the moved ``train``
    fields (:data:`MOVED_TRAIN_FIELDS`) go to their term's section (a value already in the
    section wins); the move gate's keys are dropped when the gate was off (``model.move_gate``
    false, ``loss.move_gate`` 0). A dict already in the current layout comes back equal.
    Raises UserError when the run used the move gate.
    """
    if not isinstance(data, Mapping):
        raise UserError(f"a config must be a JSON object, got {type(data).__name__}")
    upgraded = copy.deepcopy(dict(data))
    model, loss, train = (upgraded.get(k) for k in ("model", "loss", "train"))
    gate_weight = loss.get("move_gate", 0) if isinstance(loss, dict) else 0
    gate_model = model.get("move_gate", False) if isinstance(model, dict) else False
    if gate_model or gate_weight:
        raise UserError(GATE_REMOVED)
    if isinstance(model, dict):
        model.pop("move_gate", None)
    if isinstance(train, dict):
        train.pop("move_gate_blocked_share", None)
    if isinstance(loss, dict):
        loss.pop("move_gate", None)
        for name, value in list(loss.items()):
            if isinstance(value, int | float) and not isinstance(value, bool):
                loss[name] = {"weight": value}
    if isinstance(train, dict) and any(old in train for old in MOVED_TRAIN_FIELDS):
        if loss is None:
            loss = upgraded["loss"] = {}
        if isinstance(loss, dict):
            for old, (term, key) in MOVED_TRAIN_FIELDS.items():
                if old in train:
                    section = loss.setdefault(term, {})
                    if isinstance(section, dict):
                        section.setdefault(key, train.pop(old))
    return upgraded
