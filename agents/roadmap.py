"""A roadmap of the training frames: subgoals for latent MPC where the latent distance misleads.

The latent distance to the goal is a poor cost-to-go when the learned latent is folded: on
planar, states on the far side of the field can encode close to the goal, and latent MPC stops
there (docs/results/planar.md). The latent is still right *locally*, and the training data hold
real transitions. So:

* **nodes**: the distinct frames of the training dataset (a chain's ``next_obs`` is the next
  row's ``obs``), with their encoder means ``z``;
* **edges**: each recorded transition, ``obs -> next_obs``, one step long; and **links** in both
  directions between a frame and each of its ``neighbours`` nearest frames in latent space,
  kept only where the two *images* are close too (at most ``link_tolerance`` times the median
  image distance of one transition): a fold brings far-apart states close in z but never in
  pixels, so the image check cuts exactly the shortcuts a fold would make. A link is as long as
  its image distance over that median, so lengths count steps of the data;
* **cost-to-go** (:meth:`FrameRoadmap.set_goal`): the goal image is a node, linked to every
  frame whose image is that close, and every node's shortest path length to it (Bellman-Ford
  in torch, on any device);
* **subgoal** (:meth:`FrameRoadmap.subgoals`): locate an observation's node (latent candidates,
  then the closest image), walk its shortest path until the cost-to-go has dropped by
  ``lookahead`` steps, and hand that node's latent to the planner as its goal (the true goal
  once it is within ``lookahead``).

Without the image check the fold's shortcuts make the roadmap worse than none. A link is a
free move between look-alike frames: right where any direction is one push away (planar),
wrong where the state holds a velocity: on Pendulum-v0 chains of links change θ̇ for free and
the hanging start looks a few steps from upright, so a swing-up task should not use it. The
figures are in docs/results/planar.md and docs/results/pendulum.md.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from latentrl.agents.latent_scale import training_data_of_run
from latentrl.data import TransitionDataset
from latentrl.errors import UserError
from latentrl.latent_diagnostics import encoder_means
from latentrl.models import E2C

NEIGHBOURS = 10
"""Latent nearest neighbours each frame tries to link to."""
LINK_TOLERANCE = 0.75
"""Largest image distance of a link, in median image distances of one transition."""
LOCATE_CANDIDATES = 32
"""Latent nearest frames among which an observation's closest image is its node."""
MIN_LENGTH = 1e-2
"""Shortest link, in steps: identical frames are linked, and positive lengths keep every
shortest path strictly descending (no zero-length cycles to walk around)."""
MOVE_RIDGE = 1e-3
"""Ridge of :func:`fit_moves`: keeps the fit defined where the recorded pushes are alike."""
_BLOCK = 2048  # rows per distance block: bounds scratch memory
_LOCATE_BLOCK = 256  # observations per block of locate: candidates x images in memory


def dataset_frames(dataset: TransitionDataset) -> tuple[Tensor, Tensor, Tensor]:
    """The distinct frames of a dataset and its transitions between them.

    Returns ``frames`` uint8 ``(F, k, H, W)``: every row's ``obs``, then the ``next_obs`` of the
    rows whose chain ends there (elsewhere it is the next row's ``obs``); and ``source``,
    ``target`` ``(N,)``: row ``i`` goes from frame ``source[i]`` to frame ``target[i]``.
    """
    rows = len(dataset)
    continues = torch.zeros(rows, dtype=torch.bool)
    continues[:-1] = dataset.continues().cpu()
    ends = torch.nonzero(~continues).squeeze(-1)
    frames = torch.cat([dataset.obs, dataset.next_obs[ends.to(dataset.obs.device)]])
    source = torch.arange(rows)
    target = source + 1
    target[ends] = rows + torch.arange(len(ends))
    return frames, source, target


def flat_images(frames: Tensor) -> Tensor:
    """Frames uint8 ``(F, ...)`` as float32 rows ``(F, D)`` in [0, 1]."""
    return frames.reshape(frames.shape[0], -1).float() / 255


def image_distances(images: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distances ``(P,)`` between the [0, 1] images of frames ``a`` and ``b`` (P,),
    of the uint8 rows ``images (F, D)``, a block of pairs at a time."""
    out = torch.empty(a.shape[0], device=images.device)
    for start in range(0, a.shape[0], _BLOCK):
        i, j = a[start : start + _BLOCK], b[start : start + _BLOCK]
        out[start : start + _BLOCK] = (flat_images(images[i]) - flat_images(images[j])).norm(dim=-1)
    return out


def nearest_in_latent(queries: Tensor, latents: Tensor, k: int) -> Tensor:
    """Indices ``(Q, k)`` of the ``k`` nearest rows of ``latents (F, n)`` to each of
    ``queries (Q, n)``, nearest first."""
    k = min(k, latents.shape[0])
    blocks = [
        torch.cdist(queries[s : s + _BLOCK], latents).topk(k, largest=False).indices
        for s in range(0, queries.shape[0], _BLOCK)
    ]
    return torch.cat(blocks)


def fit_moves(u: Tensor, moves: Tensor, ridge: float = MOVE_RIDGE) -> tuple[Tensor, Tensor]:
    """Least squares ``moves ≈ B u + c`` per problem from ``u (b, K, m)`` and ``moves (b, K,
    n)``, with a ridge on the normal equations: ``B (b, n, m)``, ``c (b, n)``."""
    x = torch.cat([u, torch.ones_like(u[..., :1])], dim=-1)  # (b, K, m + 1)
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    gram = x.transpose(1, 2) @ x + ridge * eye
    w = torch.linalg.solve(gram, x.transpose(1, 2) @ moves)  # (b, m + 1, n)
    return w[:, :-1].transpose(1, 2), w[:, -1]


def costs_to_go(
    nodes: int, source: Tensor, target: Tensor, length: Tensor, goal: int
) -> tuple[Tensor, Tensor]:
    """Shortest path lengths from every node to ``goal`` along directed edges
    ``source -> target`` (E,) of positive ``length`` (E,), by Bellman-Ford.

    Returns ``cost (nodes,)`` (inf where the goal cannot be reached) and ``next_node (nodes,)``,
    the first node of a shortest path (-1 at the goal and where it cannot be reached).
    """
    cost = torch.full((nodes,), torch.inf, dtype=length.dtype, device=length.device)
    cost[goal] = 0.0
    for _ in range(nodes):
        through = length + cost[target]
        relaxed = cost.scatter_reduce(0, source, through, "amin", include_self=True)
        if torch.equal(relaxed, cost):
            break
        cost = relaxed
    through = length + cost[target]
    tight = torch.isfinite(through) & (through == cost[source])
    next_node = torch.full((nodes,), -1, dtype=torch.long, device=length.device)
    next_node = next_node.scatter_reduce(0, source[tight], target[tight], "amax")
    next_node[goal] = -1
    return cost, next_node


class FrameRoadmap:
    """The roadmap of a set of frames with their latents; see the module docstring.

    ``latents (F, n)``: the encoder means of ``frames`` uint8 ``(F, k, H, W)``; ``source``,
    ``target`` ``(N,)``: the recorded transitions between frames. Everything stays on the
    device of ``latents``. Call :meth:`set_goal` before :meth:`subgoals`.
    """

    def __init__(
        self,
        latents: Tensor,
        frames: Tensor,
        source: Tensor,
        target: Tensor,
        neighbours: int = NEIGHBOURS,
        link_tolerance: float = LINK_TOLERANCE,
        actions: Tensor | None = None,
    ) -> None:
        device = latents.device
        if frames.shape[0] != latents.shape[0] or frames.shape[0] < 2:
            raise UserError(
                f"a roadmap needs at least 2 frames with one latent each, got "
                f"{frames.shape[0]} frames and {latents.shape[0]} latents"
            )
        self.latents = latents
        self.images = frames.reshape(frames.shape[0], -1).to(device)
        self.link_tolerance = float(link_tolerance)
        source, target = source.to(device), target.to(device)
        self.step_distance = float(image_distances(self.images, source, target).median())
        if not self.step_distance > 0:
            raise UserError("the dataset's transitions do not change the image: no roadmap")
        near = nearest_in_latent(latents, latents, neighbours + 1)[:, 1:]
        a = torch.arange(latents.shape[0], device=device).repeat_interleave(near.shape[1])
        b = near.reshape(-1)
        length = image_distances(self.images, a, b) / self.step_distance
        kept = length <= self.link_tolerance
        a, b, length = a[kept], b[kept], length[kept].clamp(min=MIN_LENGTH)
        self.links_kept = float(kept.float().mean())
        """Share of the latent neighbours whose images were close enough to link."""
        self.actions = None if actions is None else actions.to(latents)
        """Controls ``(N, m)`` of the recorded transitions, for :meth:`recorded_moves`."""
        self._move_source = source
        self._moves = latents[target] - latents[source]  # (N, n): each transition's latent move
        self._move_images: Tensor | None = None  # (N, D) float images, made on first use
        self._move_norms: Tensor | None = None  # (N,) their squared norms
        ones = torch.ones(source.shape[0], device=device)
        self._source = torch.cat([source, a, b])
        self._target = torch.cat([target, b, a])
        self._length = torch.cat([ones, length, length])
        self.cost: Tensor | None = None
        """Cost-to-go ``(F + 1,)`` in steps (the goal is node F), set by :meth:`set_goal`."""
        self.next_node: Tensor | None = None
        self.goal_latent: Tensor | None = None

    @classmethod
    def from_dataset(cls, model: E2C, dataset: TransitionDataset) -> FrameRoadmap:
        """The roadmap of a dataset's frames, encoded by ``model`` (on its device)."""
        frames, source, target = dataset_frames(dataset)
        latents = encoder_means(model, frames)
        return cls(latents, frames, source, target, actions=dataset.action)

    @property
    def frames(self) -> int:
        """Number of frames (nodes besides the goal)."""
        return self.images.shape[0]

    def set_goal(self, goal_image: Tensor, goal_latent: Tensor) -> None:
        """Link the goal image uint8 ``(k, H, W)`` with latent ``(n,)`` to every frame whose
        image is close to it (searched over all frames, so a latent that is wrong at the goal
        cannot hide them) and compute every frame's cost-to-go. Raises UserError when no frame
        is close to it."""
        goal = flat_images(goal_image.to(self.images.device).reshape(1, -1))
        length = (
            torch.cat(
                [
                    (flat_images(self.images[start : start + _BLOCK]) - goal).norm(dim=-1)
                    for start in range(0, self.frames, _BLOCK)
                ]
            )
            / self.step_distance
        )
        near = torch.arange(self.frames, device=length.device)
        kept = length <= self.link_tolerance
        if not bool(kept.any()):
            raise UserError(
                "no training frame looks like the goal image, so the roadmap cannot reach it: "
                "collect data that visit the goal, or remove plan.options.roadmap"
            )
        goal_node = self.frames
        near, length = near[kept], length[kept].clamp(min=MIN_LENGTH)
        into_goal = torch.full_like(near, goal_node)
        self.cost, self.next_node = costs_to_go(
            goal_node + 1,
            torch.cat([self._source, near]),
            torch.cat([self._target, into_goal]),
            torch.cat([self._length, length]),
            goal_node,
        )
        self.goal_latent = goal_latent.to(self.latents)

    def locate(self, obs: Tensor, latents: Tensor) -> Tensor:
        """Nodes ``(B,)`` of observations uint8 ``(B, k, H, W)`` with encoder means ``latents
        (B, n)``: of their nearest frames in latent space, the one with the closest image."""
        latents = latents.to(self.latents)
        obs = obs.to(self.images.device)
        nodes = []
        for start in range(0, obs.shape[0], _LOCATE_BLOCK):
            z, x = latents[start : start + _LOCATE_BLOCK], obs[start : start + _LOCATE_BLOCK]
            near = nearest_in_latent(z, self.latents, LOCATE_CANDIDATES)  # (b, c)
            seen = flat_images(x).unsqueeze(1)  # (b, 1, D)
            frames = flat_images(self.images[near.reshape(-1)]).reshape(*near.shape, -1)
            closest = (frames - seen).norm(dim=-1).argmin(1, keepdim=True)
            nodes.append(near.gather(1, closest).squeeze(1))
        return torch.cat(nodes)

    def recorded_moves(self, obs: Tensor, count: int) -> tuple[Tensor, Tensor]:
        """:func:`fit_moves` of the ``count`` recorded transitions whose first frame is
        closest by image to each of the observations uint8 ``(B, k, H, W)``: ``B (B, n, m)``
        and ``c (B, n)`` with ``z(next frame) - z(frame) ≈ B u + c`` there."""
        if self.actions is None:
            raise UserError("recorded_moves needs the roadmap built with the dataset's actions")
        if self._move_images is None or self._move_norms is None:
            self._move_images = flat_images(self.images[self._move_source])
            self._move_norms = (self._move_images**2).sum(-1)
        images = self._move_images
        seen = flat_images(obs.to(images.device).reshape(obs.shape[0], -1))
        squared = self._move_norms - 2 * seen @ images.T  # + |seen|², the same per row
        rows = squared.topk(min(count, images.shape[0]), largest=False).indices  # (B, K)
        return fit_moves(self.actions[rows], self._moves[rows])

    def subgoal_nodes(self, nodes: Tensor, lookahead: float) -> Tensor:
        """For problems at ``nodes (B,)``: the first node on the shortest path whose cost-to-go
        is at most ``lookahead`` steps below theirs, the goal (node ``frames``) where the path
        reaches it first, and the node itself where the goal cannot be reached."""
        cost, next_node, _ = self._goal()
        target = cost[nodes] - lookahead
        at = nodes.clone()
        for _ in range(self.frames):  # costs fall strictly along a path: it ends
            walking = (cost[at] > target) & (next_node[at] >= 0)
            if not bool(walking.any()):
                break
            at = torch.where(walking, next_node[at], at)
        return at

    def subgoals(self, nodes: Tensor, lookahead: float) -> Tensor:
        """Planner goals ``(B, n)`` for problems at ``nodes (B,)``: the latent of
        :meth:`subgoal_nodes`, or the goal's latent where the goal is within ``lookahead``
        steps or cannot be reached."""
        cost, _, goal_latent = self._goal()
        ahead = self.subgoal_nodes(nodes, lookahead)
        start = cost[nodes]
        direct = ~torch.isfinite(start) | (start <= lookahead) | (ahead == self.frames)
        goals = self.latents[ahead.clamp(max=self.frames - 1)]
        return torch.where(direct.unsqueeze(-1), goal_latent.expand_as(goals), goals)

    def _goal(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(cost, next_node, goal_latent)`` of :meth:`set_goal`."""
        if self.cost is None or self.next_node is None or self.goal_latent is None:
            raise UserError("call set_goal(goal_image, goal_latent) before subgoals()")
        return self.cost, self.next_node, self.goal_latent


def roadmap_of_run(run_dir: Path | str, model: E2C) -> FrameRoadmap:
    """The roadmap of the dataset a run was trained on (``run.json``), encoded by its model.
    Raises UserError when the dataset is gone or is not the model's."""
    return FrameRoadmap.from_dataset(
        model, training_data_of_run(run_dir, model, "plan.options.roadmap")
    )
