"""Older ``config.json`` files in the current loss layout (legacy_configs/ holds two that the
code before the loss terms had sections wrote: ``latentrl train --preset debug``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from latentrl.config import ExperimentConfig, load_config, to_dict
from latentrl.errors import UserError
from latentrl.losses import (
    CurvatureConfig,
    LossConfig,
    MultiStepConfig,
    legacy_key_hint,
    upgrade_legacy_loss,
)
from latentrl.models import E2C
from latentrl.pipeline import experiment_config

LEGACY = Path(__file__).parent / "legacy_configs"
GATE_MESSAGE = (
    "this run used the move gate, an experiment removed in latentrl 0.2; evaluate it with "
    "commit c8db581"
)


def legacy(name: str) -> dict[str, Any]:
    return json.loads((LEGACY / f"{name}.json").read_text())


@pytest.mark.parametrize(("name", "encoder_gradient"), [("pendulum", 0.25), ("planar", 1.0)])
def test_a_config_the_old_code_wrote_loads_in_the_new_layout(
    name: str, encoder_gradient: float
) -> None:
    old = legacy(f"{name}_debug")
    assert old["train"]["multi_step_horizon"] == 8 and old["loss"]["move_gate"] == 0.0
    config = load_config(LEGACY / f"{name}_debug.json")
    assert config.loss == LossConfig(
        multi_step=MultiStepConfig(horizon=8, encoder_gradient=encoder_gradient)
    )
    saved = to_dict(config)
    assert "move_gate" not in saved["model"] and "move_gate" not in saved["loss"]
    moved = {"multi_step_horizon", "multi_step_encoder_gradient", "curvature_radius"}
    assert not (moved | {"move_gate_blocked_share"}) & set(saved["train"])
    # everything else is as it was written
    for section in ("data", "model", "train", "plan", "eval"):
        kept = {k: v for k, v in old[section].items() if k in saved[section]}
        assert kept == {k: saved[section][k] for k in kept}, section
    upgraded = upgrade_legacy_loss(old)["loss"]
    assert {k: saved["loss"][k] for k in upgraded} == upgraded
    # the sections of the other model kinds are their defaults
    assert {k: v for k, v in saved["loss"].items() if k not in upgraded} == {
        k: v for k, v in to_dict(LossConfig()).items() if k not in upgraded
    }


def test_the_upgrade_moves_every_weight_and_parameter() -> None:
    old = {
        "loss": {
            "reconstruction": 0.5,
            "prediction": 2,
            "kl_prior": 0.0,
            "kl_transition": 0.25,
            "multi_step": 3.0,
            "multi_step_prediction": 1.0,
            "curvature": 0.1,
            "move_gate": 0.0,
        },
        "train": {
            "epochs": 7,
            "multi_step_horizon": 4,
            "multi_step_encoder_gradient": 0.5,
            "curvature_radius": 0.3,
            "move_gate_blocked_share": 0.5,
        },
        "model": {"latent_dim": 3, "move_gate": False},
    }
    frozen = json.dumps(old)
    assert upgrade_legacy_loss(old) == {
        "loss": {
            "reconstruction": {"weight": 0.5},
            "prediction": {"weight": 2},
            "kl_prior": {"weight": 0.0},
            "kl_transition": {"weight": 0.25},
            "multi_step": {"weight": 3.0, "horizon": 4, "encoder_gradient": 0.5},
            "multi_step_prediction": {"weight": 1.0},
            "curvature": {"weight": 0.1, "radius": 0.3},
        },
        "train": {"epochs": 7},
        "model": {"latent_dim": 3},
    }
    assert json.dumps(old) == frozen  # the input is left as it was


def test_moved_train_fields_without_a_loss_section_make_one() -> None:
    upgraded = upgrade_legacy_loss({"train": {"curvature_radius": 0.5}})
    assert upgraded == {"train": {}, "loss": {"curvature": {"radius": 0.5}}}
    assert CurvatureConfig(**upgraded["loss"]["curvature"]).radius == 0.5


@pytest.mark.parametrize("name", ["pendulum", "planar"])
def test_a_config_in_the_current_layout_comes_back_equal(name: str) -> None:
    current = to_dict(experiment_config(name, "debug"))
    assert upgrade_legacy_loss(current) == current


@pytest.mark.parametrize(
    "gate",
    [
        {"model": {"move_gate": True}},
        {"loss": {"move_gate": 3.0}},
        {"model": {"move_gate": True}, "loss": {"move_gate": 1.0}},
    ],
)
def test_a_run_that_used_the_move_gate_is_refused(
    gate: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    with pytest.raises(UserError, match=f"^{GATE_MESSAGE}$"):
        upgrade_legacy_loss(gate)
    old = legacy("planar_debug")
    for section, values in gate.items():
        old[section] |= values
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    with pytest.raises(UserError, match=f"^{path}: {GATE_MESSAGE}$"):
        load_config(path)


def test_a_config_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(UserError, match="a config must be a JSON object, got list"):
        upgrade_legacy_loss([1, 2])  # type: ignore[arg-type]


def test_the_experiment_config_still_checks_the_chains_against_the_horizon(
    tmp_path: Path,
) -> None:
    old = legacy("pendulum_debug")
    old["data"]["chain_length"] = 4
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    with pytest.raises(UserError, match=r"loss\.multi_step\.horizon=8 needs chains of at least 8"):
        load_config(path)
    assert isinstance(load_config(LEGACY / "pendulum_debug.json"), ExperimentConfig)


def test_a_model_of_an_old_config_has_the_state_dict_keys_of_its_checkpoint() -> None:
    """The keys of planar_debug's checkpoint, as the code before the gate's removal saved it."""
    old_checkpoint_keys = {
        *(f"{part}.{i}.{p}" for part in ("decoder.body.0", "encoder.head", "transition_net.net")
          for i in (0, 2, 4) for p in ("weight", "bias")),
        "decoder.raw_log_std",
    }  # fmt: skip
    model = E2C(load_config(LEGACY / "planar_debug.json").model)
    assert set(model.state_dict()) == old_checkpoint_keys


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("train.multi_step_horizon", "moved to loss.multi_step.horizon in latentrl 0.2"),
        ("train.multi_step_encoder_gradient", "moved to loss.multi_step.encoder_gradient in"),
        ("train.curvature_radius", "moved to loss.curvature.radius in latentrl 0.2"),
        ("loss.kl_transition", "a section since latentrl 0.2: set loss.kl_transition.weight"),
        ("loss.move_gate", "belonged to the move gate, an experiment removed in latentrl 0.2"),
        ("model.move_gate", "belonged to the move gate"),
        ("train.move_gate_blocked_share", "belonged to the move gate"),
    ],
)
def test_old_keys_get_a_hint_and_current_keys_none(key: str, hint: str) -> None:
    assert (legacy_key_hint(key) or "").startswith(hint)
    for current in ("loss.curvature.weight", "loss.multi_step.horizon", "train.epochs", "data"):
        assert legacy_key_hint(current) is None
