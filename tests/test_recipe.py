"""The default recipe: what it derives from each env."""

from __future__ import annotations

import pytest
from point_mass import ENV_ID as POINT_MASS_ID

from latentrl.config import schema_defaults, to_dict
from latentrl.errors import UserError
from latentrl.experiment_files import experiment_path, read_experiment
from latentrl.pipeline import defaults_config, resolve, task_shape
from latentrl.recipe import CHAIN_LENGTH, TaskShape, default_recipe, latent_size


@pytest.mark.parametrize(
    ("env_id", "state_dim", "angles", "latent"),
    [
        ("latentrl/Pendulum-v0", 2, (0,), 3),
        ("latentrl/Planar-v0", 2, (), 2),
        ("latentrl/PendulumSwingup-v0", 2, (0,), 3),
        ("latentrl/CartpoleSwingup-v0", 4, (1,), 5),
        ("latentrl/ArmSwingup-v0", 4, (0, 1), 6),
        (POINT_MASS_ID, 2, (), 2),
    ],
)
def test_the_latent_size_is_the_state_dimension_plus_one_per_angle(
    env_id: str, state_dim: int, angles: tuple[int, ...], latent: int
) -> None:
    shape = task_shape(env_id, {})
    assert shape == TaskShape(state_dim, angles)
    assert latent_size(shape) == latent
    config = resolve(defaults_config(env_id))
    assert config.model.latent_dim == latent
    assert config.data.transitions == 10_000 * state_dim
    assert config.data.chain_length == CHAIN_LENGTH
    assert config.train.epochs == 50
    assert (config.loss.multi_step.horizon, config.loss.multi_step.encoder_gradient) == (8, 0.25)
    assert (config.plan.q, config.plan.r, config.plan.q_f) == (1.0, 0.001, 1.0)
    assert set(config.plan.options) == {"shooting", "blocked_pushes"}  # none reads frames
    shooting = config.plan.options["shooting"]
    assert (shooting.count, shooting.beyond, shooting.terminal_weight) == (1024, 0.5, 10.0)
    blocked = config.plan.options["blocked_pushes"]
    assert (blocked.ratio, blocked.one_sided, blocked.least_move) == (0.5, True, 0.2)


def test_the_recipe_changes_only_what_it_derives() -> None:
    config = defaults_config("latentrl/Planar-v0")
    defaults = schema_defaults()
    derived = default_recipe(TaskShape(2, ()))
    for section, values in defaults.items():
        changed = {k for k, v in values.items() if config[section][k] != v}
        assert changed <= set(derived.get(section, {})) | {"env_id"}, section
    assert config["loss"]["multi_step"] == {
        **defaults["loss"]["multi_step"],
        **derived["loss"]["multi_step"],
    }  # a nested table changes only the fields it names


@pytest.mark.parametrize(
    ("experiment", "env_id"),
    [("pendulum", "latentrl/Pendulum-v0"), ("mujoco_pendulum", "latentrl/PendulumSwingup-v0")],
)
def test_the_pendulum_presets_are_the_recipe(experiment: str, env_id: str) -> None:
    """The pendulums' ``full`` presets, where the recipe's settings were measured, resolve to
    the recipe of their env: their figures are the recipe's."""
    ours = to_dict(resolve(read_experiment(experiment_path(experiment), "full")))
    recipe = to_dict(resolve(defaults_config(env_id)))
    for config in (ours, recipe):
        del config["name"], config["preset"], config["data"]["workers"]  # workers: same bytes
    assert ours == recipe


def test_a_shape_outside_the_state_is_refused() -> None:
    with pytest.raises(ValueError, match="angle_dims"):
        TaskShape(2, (2,))
    with pytest.raises(ValueError, match="state_dim"):
        TaskShape(0, ())


def test_an_env_that_is_not_a_control_env_is_one_clear_error() -> None:
    with pytest.raises(UserError, match="does not implement the latentrl environment contract"):
        defaults_config("CartPole-v1")


def test_the_multi_step_term_spans_at_most_a_chain_of_the_data() -> None:
    """``latentrl train --data`` on a dataset collected before: the recipe's multi-step term
    shortened to the dataset's chains (independent transitions: the one-step bound)."""
    shape = TaskShape(2, (0,))
    assert default_recipe(shape)["loss"]["multi_step"]["horizon"] == 8
    for chains, horizon in [(1, 1), (5, 5), (8, 8), (32, 8)]:
        derived = default_recipe(shape, chains)
        assert derived["loss"]["multi_step"]["horizon"] == horizon
        assert derived["data"]["chain_length"] == chains
    config = resolve(defaults_config("latentrl/Pendulum-v0", {}, 1))
    assert (config.data.chain_length, config.loss.multi_step.horizon) == (1, 1)
    with pytest.raises(ValueError, match="chain_length"):
        default_recipe(shape, 0)
