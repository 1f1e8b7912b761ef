"""The default recipe: settings derived from the env, for an env nobody has tuned.

``latentrl train --env ID`` (and ``--data DIR``) start from the schema's defaults
(:mod:`latentrl.config`) and set what depends on the task from the env's own description
(:class:`~latentrl.envs.contract.ControlEnv`):

- the latent size: one coordinate per state dimension plus one per angle (an angle needs two,
  its cosine and sine, to be continuous), so 3 for a pendulum (θ, θ̇) and 2 for planar (x, y);
- the data: chains of :data:`CHAIN_LENGTH` transitions from uniformly drawn states, so the
  velocities a frame pair shows vary along a chain, and :data:`TRANSITIONS_PER_STATE_DIM`
  transitions per state dimension;
- the training and the planner: the settings found on the pendulum swing-up
  (:data:`TRAINING`, :data:`PLANNER`), none of which names anything of a task: a multi-step
  prediction term over chains, 50 epochs, a small control weight, every planned step weighed
  alike, a bang-bang shooting search while far from the goal that scores its candidates
  with a terminal weight of ten running steps, and blocked pushes (a push that did not move
  the latent is dropped while the episode is stuck), which name no task either. Planar's
  roadmap and recorded moves, which read the training frames, are not part of it.

Nothing else is tuned per task: the same recipe is what every task is also reported with.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from latentrl.errors import UserError

RECIPE_EXPERIMENT = "default"
"""The experiment name of a run of an env's default recipe (``latentrl run --env ID``: no
experiment file names it)."""
RECIPE_PRESET = "recipe"
"""What a run of an env's default recipe is called in place of a preset, beside its env id."""
CHAIN_LENGTH = 16
"""Transitions per chain of the default dataset."""
TRANSITIONS_PER_STATE_DIM = 10_000
"""Transitions of the default dataset per dimension of the true state."""
MULTI_STEP_HORIZON = 8
"""Steps of the recipe's multi-step prediction term (at most a chain of the data)."""
TRAINING: dict[str, dict[str, Any]] = {
    "loss": {"multi_step": {"encoder_gradient": 0.25}},
    "train": {"epochs": 50},
}
"""The objective and schedule of every task besides the multi-step horizon
(docs/results/pendulum.md says why each)."""
PLANNER: dict[str, Any] = {
    "r": 0.001,
    "q_f": 1.0,
    "options": {
        "shooting": {"count": 1024, "beyond": 0.5, "terminal_weight": 10.0},
        "blocked_pushes": {"ratio": 0.5, "one_sided": True, "least_move": 0.2},
    },
}
"""The planner of every task: ``[plan]`` fields over the schema's defaults. iLQR weighs the
plan's last state as any other (``q_f`` = q), so the plan asks for the goal at every step and
brakes there instead of swinging through it. Far from the goal the shooting search scores its
candidates with a terminal weight of ten running steps: the plan that pumps energy into a
hanging pendulum wins there, where every step weighed alike would keep it rocking. A push
the model expected to move the latent (at least a fifth of the episode's largest predicted
move) that moved it less than half as far is dropped from the planner's dynamics while the
episode stays stuck, as against a wall; one-sided, so a single torque keeps its other sign."""


class RunNames(NamedTuple):
    """The names a run is known by in ``latentrl compare`` and W&B."""

    experiment: str
    preset: str


def experiment_and_preset(experiment: str, preset: str, env_id: str | None) -> RunNames:
    """The names a run is grouped by (``latentrl compare``, W&B): its experiment and preset, or
    for a run of an env's default recipe (``latentrl run --env ID``, which no experiment file
    names) the env id and :data:`RECIPE_PRESET`."""
    if experiment == RECIPE_EXPERIMENT and env_id is not None:
        return RunNames(env_id, RECIPE_PRESET)
    return RunNames(experiment, preset)


@dataclass(frozen=True)
class TaskShape:
    """What the recipe reads of an env: its true state's size and which coordinates are
    angles."""

    state_dim: int
    angle_dims: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.state_dim < 1:
            raise ValueError(f"state_dim must be >= 1, got {self.state_dim}")
        if any(not 0 <= d < self.state_dim for d in self.angle_dims):
            raise ValueError(f"angle_dims {self.angle_dims} outside 0..{self.state_dim - 1}")


def latent_size(shape: TaskShape) -> int:
    """The latent size for a task: its state dimension plus one per angle."""
    return shape.state_dim + len(shape.angle_dims)


def default_recipe(shape: TaskShape, chain_length: int = CHAIN_LENGTH) -> dict[str, dict[str, Any]]:
    """The settings of the recipe for ``shape``, as config tables to merge over the schema's
    defaults (``{section: {field: value}}``; nested tables such as ``loss.multi_step`` change
    only the fields they name). ``chain_length``: that of the data, when it was collected
    already (``latentrl train --data``); the multi-step term spans at most one chain."""
    if chain_length < 1:
        raise ValueError(f"chain_length must be >= 1, got {chain_length}")
    recipe = copy.deepcopy(TRAINING)
    recipe["loss"]["multi_step"]["horizon"] = min(MULTI_STEP_HORIZON, chain_length)
    return {
        "data": {
            "transitions": TRANSITIONS_PER_STATE_DIM * shape.state_dim,
            "chain_length": chain_length,
        },
        "model": {"latent_dim": latent_size(shape)},
        **recipe,
        "plan": copy.deepcopy(PLANNER),
    }


@functools.lru_cache(maxsize=16)
def _task_shape(env_id: str, env_kwargs_json: str) -> TaskShape:
    from latentrl.envs import make_env, require_control_env

    env = make_env(env_id, **json.loads(env_kwargs_json))
    try:
        task = require_control_env(env)
        return TaskShape(int(task.state_space.shape[0]), tuple(task.angle_dims))
    finally:
        env.close()


def task_shape(env_id: str, env_kwargs: Mapping[str, Any]) -> TaskShape:
    """What the default recipe reads of the env ``env_id`` made with ``env_kwargs``."""
    try:
        return _task_shape(env_id, json.dumps(dict(env_kwargs), sort_keys=True))
    except TypeError as exc:
        raise UserError(f"{env_id} is not a latentrl control env: {exc}") from None
