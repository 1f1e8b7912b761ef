"""Roadmap subgoals: plan towards a subgoal ``lookahead`` steps ahead on the shortest path to
the goal through a roadmap of the run's training frames, instead of straight to the goal
(:class:`latentrl.agents.FrameRoadmap`).

For a latent folded so that far states encode near the goal (planar). Needs the run's dataset
at evaluation. Not for states with velocities: the roadmap's links between look-alike frames
change a velocity for free.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from latentrl.errors import UserError
from latentrl.field_rules import check_fields, checked
from latentrl.planning.options.kinds import Episode, Resources, Step, TrainingFrames
from latentrl.planning.options.registry import OptionSpec, register


@dataclass(frozen=True)
class RoadmapConfig:
    """``[plan.options.roadmap]``."""

    lookahead: float = checked(2.0, float, above=0)
    """Steps of the training data between the current frame and the subgoal."""

    def __post_init__(self) -> None:
        check_fields(self, "plan.options.roadmap")


class Roadmap:
    """Subgoals on the roadmap of the training frames (:class:`~.kinds.GoalProvider`)."""

    def __init__(self, config: RoadmapConfig, frames: TrainingFrames) -> None:
        self.config = config
        self.frames = frames

    def reset(self, episode: Episode) -> None:
        """Every frame's cost-to-go towards the episode's goal image."""
        self.frames.set_goal(episode.goal_image, episode.goal_latent)

    def goal(self, step: Step) -> Tensor:
        """The subgoal latents ``(B, n)`` ``lookahead`` steps ahead of the observations."""
        nodes = self.frames.locate(step.observation, step.z)
        return self.frames.subgoals(nodes, self.config.lookahead)


def _build(config: RoadmapConfig, resources: Resources) -> Roadmap:
    if resources.frames is None:
        raise UserError(
            "plan.options.roadmap needs a roadmap of the training frames: load the agent with "
            "LatentMPCAgent.from_run, or pass roadmap=roadmap_of_run(run_dir, model)"
        )
    return Roadmap(config, resources.frames)


register(
    OptionSpec(
        name="roadmap",
        kind="goal",
        order=0,
        config=RoadmapConfig,
        build=_build,
        excludes={
            "shooting": "shooting measures its progress towards the goal, the roadmap moves "
            "the goal"
        },
        needs_frames=True,
    )
)
