"""Roadmap subgoals as a goal provider: the goal of each step from the training frames."""

from __future__ import annotations

import pytest
import torch

from latentrl.config import PlanConfig
from latentrl.errors import UserError
from latentrl.planning import FunctionDynamics
from latentrl.planning.options.kinds import Episode, Resources, Step
from latentrl.planning.options.registry import option_spec
from latentrl.planning.options.roadmap import Roadmap, RoadmapConfig


class RecordingFrames:
    """Training frames that place observation b at frame 10 + b and give subgoal rows
    ``node + lookahead``; records what they were asked."""

    def __init__(self) -> None:
        self.goals: list[tuple[torch.Tensor, torch.Tensor]] = []

    def set_goal(self, goal_image: torch.Tensor, goal_latent: torch.Tensor) -> None:
        self.goals.append((goal_image, goal_latent))

    def locate(self, obs: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        return 10 + torch.arange(obs.shape[0])

    def subgoals(self, nodes: torch.Tensor, lookahead: float) -> torch.Tensor:
        return (nodes.double() + lookahead)[:, None].expand(-1, 2)


def test_the_roadmap_sets_the_goal_at_reset_and_gives_subgoals_each_step() -> None:
    frames = RecordingFrames()
    spec = option_spec("roadmap")
    roadmap = spec.build(RoadmapConfig(lookahead=3.0), Resources(frames=frames))  # type: ignore[arg-type]
    assert isinstance(roadmap, Roadmap) and spec.kind == "goal" and spec.needs_frames
    image, latent = torch.ones(1, 4, 4, dtype=torch.uint8), torch.tensor([0.5, -0.5])
    roadmap.reset(Episode(image, latent, batch_size=3))
    assert len(frames.goals) == 1 and frames.goals[0][0] is image and frames.goals[0][1] is latent
    model = FunctionDynamics(lambda z, u: z + u)
    step = Step(torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, 2), None, None, model)
    torch.testing.assert_close(
        roadmap.goal(step), torch.tensor([[13.0] * 2, [14.0] * 2, [15.0] * 2], dtype=torch.float64)
    )
    with pytest.raises(UserError, match="needs a roadmap of the training frames"):
        spec.build(RoadmapConfig(), Resources())


def test_the_lookahead_is_checked_and_shooting_is_refused_beside_it() -> None:
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(UserError, match=r"roadmap\.lookahead must be a finite number > 0"):
            RoadmapConfig(lookahead=bad)
    with pytest.raises(
        UserError, match=r"plan\.options\.roadmap and plan\.options\.shooting do not combine"
    ):
        PlanConfig(options={"roadmap": {}, "shooting": {}})
