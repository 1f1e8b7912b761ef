"""The three kinds of planner option and what each is shown.

* an :class:`Initialiser` gives the control sequences a solve of the MPC planner starts from
  (warm start, shooting, restarts); the planner calls its initialisers at each replan, in
  order, each seeing the guesses of those before it;
* a :class:`DynamicsModifier` wraps the planner's dynamics for one control step (blocked
  pushes, recorded moves);
* a :class:`GoalProvider` gives the goal of one control step (roadmap subgoals).

An agent builds its options from :class:`~latentrl.planning.plan_config.PlanConfig` with
:func:`~latentrl.planning.options.registry.build_options` and composes them once per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor

from latentrl.planning.dynamics import Dynamics
from latentrl.planning.ilqr import ILQRResult, QuadraticCost

Kind = Literal["initialiser", "dynamics", "goal"]


@dataclass(frozen=True)
class Solve:
    """What an initialiser sees at a replan of :class:`~latentrl.planning.MPCPlanner`.

    ``z (B, n)``: the current states; ``low``, ``high`` ``(B, m)``: the control box;
    ``previous``: the plan being replaced (None at the first solve after a reset), of which
    ``executed`` steps ran; ``step``: control steps since the reset (0 at the first);
    ``u_init (B, T, m)``: the first warm start given to the reset (None: zeros);
    ``generator``: the planner's own, shared by every random draw so that a seed fixes them.
    """

    z: Tensor
    low: Tensor
    high: Tensor
    horizon: int
    dynamics: Dynamics
    cost: QuadraticCost
    previous: ILQRResult | None
    executed: int
    step: int
    u_init: Tensor | None
    generator: torch.Generator

    @property
    def m(self) -> int:
        """Control dimension."""
        return self.low.shape[-1]


class Initialiser(Protocol):
    """Control sequences a solve starts from."""

    def reset(self) -> None:
        """Forget the previous episode."""
        ...

    def guesses(self, solve: Solve, guesses: Tensor) -> Tensor:
        """The guesses ``(G', B, T, m)`` to solve from, given those of the initialisers before
        this one, ``guesses (G, B, T, m)`` (``G = 0`` for the first)."""
        ...


@dataclass(frozen=True)
class Episode:
    """What dynamics modifiers and goal providers see at an agent's reset: the goal image
    uint8 ``(k, H, W)``, its latent ``(n,)`` and the number of parallel episodes."""

    goal_image: Tensor
    goal_latent: Tensor
    batch_size: int


@dataclass(frozen=True)
class Step:
    """What dynamics modifiers and goal providers see at one control step of an agent.

    ``observation`` uint8 ``(B, k, H, W)`` and its latent ``z (B, n)``; ``previous_z (B, n)``
    and ``last_action (B, m)``: the latent and the action of the step before (None at the
    first step of an episode); ``model``: the model's own dynamics, unmodified.
    """

    observation: Tensor
    z: Tensor
    previous_z: Tensor | None
    last_action: Tensor | None
    model: Dynamics


class DynamicsModifier(Protocol):
    """Wraps the planner's dynamics for one control step."""

    def reset(self, episode: Episode) -> None:
        """Start new episodes."""
        ...

    def modify(self, dynamics: Dynamics, step: Step) -> Dynamics:
        """The dynamics to plan this step with, wrapping ``dynamics`` (or ``dynamics``)."""
        ...


class GoalProvider(Protocol):
    """The goal of one control step."""

    def reset(self, episode: Episode) -> None:
        """Start new episodes towards ``episode.goal_image``."""
        ...

    def goal(self, step: Step) -> Tensor:
        """Planner goals ``(B, n)`` for this step."""
        ...


class TrainingFrames(Protocol):
    """The training frames an option reads (:class:`latentrl.agents.FrameRoadmap`)."""

    def set_goal(self, goal_image: Tensor, goal_latent: Tensor) -> None:
        """Cost-to-go of every frame towards the goal image uint8 ``(k, H, W)``."""
        ...

    def locate(self, obs: Tensor, latents: Tensor) -> Tensor:
        """Frame index ``(B,)`` of observations uint8 ``(B, k, H, W)`` with latents ``(B, n)``."""
        ...

    def subgoals(self, nodes: Tensor, lookahead: float) -> Tensor:
        """Planner goals ``(B, n)`` ``lookahead`` steps ahead of frames ``nodes (B,)``."""
        ...

    def recorded_moves(self, obs: Tensor, count: int) -> tuple[Tensor, Tensor]:
        """``(B (B, n, m), c (B, n))`` fitted to the recorded moves near each observation."""
        ...


@dataclass(frozen=True)
class Resources:
    """What an agent hands the options it builds: ``frames``, the run's training frames
    (None when no configured option needs them)."""

    frames: TrainingFrames | None = None
