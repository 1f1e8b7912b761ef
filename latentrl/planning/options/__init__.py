"""Planner options: initialisers, dynamics modifiers and goal providers, chosen by name.

:mod:`~.kinds` defines the three kinds, :mod:`~.registry` the registry that finds every
option module of this package (one file per option: its config and its class).
"""

from latentrl.planning.options.kinds import (
    DynamicsModifier,
    Episode,
    GoalProvider,
    Initialiser,
    Resources,
    Solve,
    Step,
    TrainingFrames,
)
from latentrl.planning.options.registry import (
    OptionSpec,
    build_options,
    needs_frames,
    option_spec,
    option_specs,
    parse_options,
    register,
)

__all__ = [
    "DynamicsModifier",
    "Episode",
    "GoalProvider",
    "Initialiser",
    "OptionSpec",
    "Resources",
    "Solve",
    "Step",
    "TrainingFrames",
    "build_options",
    "needs_frames",
    "option_spec",
    "option_specs",
    "parse_options",
    "register",
]
