"""The roadmap of training frames: shortest paths, the image check that cuts a fold's shortcuts,
localisation by image, subgoals, and the agent that plans towards them."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.stats import spearmanr
from torch import Tensor, nn

from latentrl.agents import FrameRoadmap, LatentMPCAgent, roadmap_of_run
from latentrl.agents.roadmap import costs_to_go, dataset_frames
from latentrl.config import PlanConfig
from latentrl.data import TransitionDataset
from latentrl.envs import make_env
from latentrl.envs.planar import (
    AGENT_RADIUS,
    FIELD_SIZE,
    GOAL,
    MAX_CONTROL,
    OBSTACLE_VALUE,
    planar_is_free,
    planar_step,
    render_planar,
)
from latentrl.episodes import run_episodes
from latentrl.errors import UserError
from latentrl.models import E2C, ModelConfig
from latentrl.planning import FunctionDynamics
from latentrl.run_directory import RUN_FILE

MAX_STEP_PX = MAX_CONTROL * np.sqrt(2)  # the longest move of one planar step


def test_costs_to_go_are_dijkstras_shortest_paths() -> None:
    rng = np.random.default_rng(0)
    nodes, goal = 60, 7
    pairs = {(int(a), int(b)) for a, b in rng.integers(0, nodes, (240, 2)) if a != b}
    source, target = (torch.tensor(list(c)) for c in zip(*sorted(pairs), strict=True))
    length = torch.as_tensor(rng.uniform(0.1, 2.0, len(source)), dtype=torch.float64)
    cost_t, next_t = costs_to_go(nodes, source, target, length, goal)
    cost, next_node = cost_t.numpy(), next_t.tolist()

    # the cost to reach the goal is the distance from the goal in the reversed graph
    reversed_graph = csr_matrix((length.numpy(), (target.numpy(), source.numpy())), (nodes, nodes))
    expected = dijkstra(reversed_graph, indices=goal)
    np.testing.assert_allclose(cost, expected, rtol=1e-12)
    assert np.isinf(expected).any() and np.isfinite(expected).sum() > nodes // 2

    lengths = {pair: w for pair, w in zip(sorted(pairs), length.tolist(), strict=True)}
    for u in range(nodes):
        v = next_node[u]
        if u == goal or not np.isfinite(expected[u]):
            assert v == -1
        else:  # the first edge of a shortest path, strictly downhill
            assert cost[u] == pytest.approx(lengths[(u, v)] + cost[v], rel=1e-12)
            assert cost[v] < cost[u]


def _dataset(obs: np.ndarray, next_obs: np.ndarray, state: np.ndarray, next_state: np.ndarray,  # type: ignore[no-untyped-def]
             action: np.ndarray | None = None):  # fmt: skip
    rows = len(obs)
    return TransitionDataset(
        torch.as_tensor(obs),
        torch.zeros(rows, 2) if action is None else torch.as_tensor(action, dtype=torch.float32),
        torch.as_tensor(next_obs),
        torch.as_tensor(state, dtype=torch.float64),
        torch.as_tensor(next_state, dtype=torch.float64),
    )


def test_dataset_frames_keep_each_frame_of_a_chain_once() -> None:
    # two chains, 0 -> 1 -> 2 -> 3 and 10 -> 11 -> 12: the state names the frame
    state = np.array([0, 1, 2, 10, 11], dtype=np.float64)[:, None].repeat(2, 1)
    next_state = state + 1
    image = lambda s: np.full((len(s), 1, 2, 2), s[:, :1, None, None], dtype=np.uint8)  # noqa: E731
    frames, source, target = dataset_frames(
        _dataset(image(state), image(next_state), state, next_state)
    )
    assert frames[:, 0, 0, 0].tolist() == [0, 1, 2, 10, 11, 3, 12]
    assert source.tolist() == [0, 1, 2, 3, 4] and target.tolist() == [1, 2, 5, 4, 6]


def _planar_chains(count: int, steps: int, seed: int = 0) -> np.ndarray:
    """True states ``(count, steps + 1, 2)`` of random-action chains, the first from the goal,
    the others from uniform free starts."""
    rng = np.random.default_rng(seed)
    starts = rng.uniform(AGENT_RADIUS, FIELD_SIZE - AGENT_RADIUS, (4 * count, 2))
    starts[0] = GOAL
    states = [starts[planar_is_free(starts)][:count]]
    for _ in range(steps):
        states.append(planar_step(states[-1], rng.uniform(-2, 2, states[-1].shape)))
    return np.stack(states, 1)


def folded(states: np.ndarray) -> torch.Tensor:
    """A latent folded down the middle of the field, as a learned planar latent can be:
    ``(|x - 20|, y) / 10``, so the left half and the right half encode on top of each other."""
    return torch.as_tensor(
        np.stack([np.abs(states[:, 0] - 20), states[:, 1]], 1) / 10, dtype=torch.float32
    )


@pytest.fixture(scope="module")
def planar_chains() -> np.ndarray:
    return _planar_chains(300, 8)


@pytest.fixture(scope="module")
def planar_frames(planar_chains: np.ndarray) -> tuple[np.ndarray, Tensor, Tensor, Tensor]:
    """True states, frames and transitions of :func:`planar_chains`."""
    chains = planar_chains
    states = chains.reshape(-1, 2)
    index = np.arange(len(states)).reshape(chains.shape[:2])
    source = torch.as_tensor(index[:, :-1].ravel())
    target = torch.as_tensor(index[:, 1:].ravel())
    frames = torch.as_tensor(render_planar(states)[:, None])
    return states, frames, source, target


def _goal_image() -> torch.Tensor:
    return torch.as_tensor(render_planar(GOAL[None])[:, None][0])


@pytest.mark.parametrize("image_check", [True, False])
def test_the_image_check_cuts_the_shortcuts_of_a_folded_latent(  # type: ignore[no-untyped-def]
    planar_frames, image_check: bool
) -> None:
    states, frames, source, target = planar_frames
    tolerance = 0.75 if image_check else float("inf")
    roadmap = FrameRoadmap(folded(states), frames, source, target, link_tolerance=tolerance)
    roadmap.set_goal(_goal_image(), folded(GOAL[None])[0])
    links = slice(len(source), None)  # edges after the recorded transitions
    a, b = roadmap._source[links], roadmap._target[links]
    link_px = np.linalg.norm(states[a] - states[b], axis=1)
    cost = roadmap.cost[:-1].numpy()
    reached = np.isfinite(cost)
    true_distance = np.linalg.norm(states - GOAL, axis=1)
    # in steps: a time-optimal controller needs at least distance / longest move
    bound = true_distance / MAX_STEP_PX
    rank = spearmanr(cost[reached], true_distance[reached]).statistic
    if image_check:
        assert link_px.max() < 1.5  # only frames whose agents overlap are linked
        assert reached.mean() > 0.98
        assert np.all(cost[reached] >= bound[reached])  # no path beats physics
        assert rank > 0.95
    else:  # the fold links the two halves of the field: paths jump across it
        assert link_px.max() > 20
        assert np.mean(cost < bound - 1) > 0.05
        assert rank < 0.8


def test_locate_finds_the_frame_by_its_image_and_subgoals_walk_the_path(planar_frames) -> None:  # type: ignore[no-untyped-def]
    states, frames, source, target = planar_frames
    roadmap = FrameRoadmap(folded(states), frames, source, target)
    goal_latent = folded(GOAL[None])[0]
    with pytest.raises(UserError, match=r"call set_goal"):
        roadmap.subgoals(torch.tensor([0]), 2.0)
    roadmap.set_goal(_goal_image(), goal_latent)

    # the mirror images of these states encode exactly as they do; their images tell them apart
    seen = np.array([[5.0, 20.0], [35.0, 20.0], [14.0, 35.0]])
    nodes = roadmap.locate(torch.as_tensor(render_planar(seen)[:, None]), folded(seen))
    assert np.linalg.norm(states[nodes] - seen, axis=1).max() < 1.0

    for lookahead in (1.0, 3.0):
        ahead = roadmap.subgoal_nodes(nodes, lookahead)
        cost, next_node = roadmap.cost, roadmap.next_node
        assert torch.all(cost[ahead] <= cost[nodes] - lookahead)
        for start, end in zip(nodes.tolist(), ahead.tolist(), strict=True):
            before = start  # the node just before `end` on the path is not yet far enough
            while int(next_node[before]) != end:
                before = int(next_node[before])
            assert cost[before] > cost[start] - lookahead
        torch.testing.assert_close(roadmap.subgoals(nodes, lookahead), roadmap.latents[ahead])

    near_goal = roadmap.locate(_goal_image()[None], goal_latent[None])
    torch.testing.assert_close(roadmap.subgoals(near_goal, 1.0), goal_latent[None])
    far = roadmap.cost[nodes].max().item()
    torch.testing.assert_close(roadmap.subgoals(nodes, far), goal_latent.expand(3, 2))


def test_recorded_moves_fit_the_transitions_of_the_frames_that_look_like_the_observation() -> None:
    """With a latent linear in the state (z = s / 10) and free moves, the move of a push u is
    u / 10 everywhere, and the fit of the nearest recorded transitions recovers it; the
    transitions it reads are those of the frames closest to the observation, not the others."""
    rng = np.random.default_rng(3)
    starts = rng.uniform(AGENT_RADIUS, FIELD_SIZE - AGENT_RADIUS, (3000, 2))
    starts = starts[planar_is_free(starts) & (np.abs(starts - 20).max(1) > 12)][:800]  # rim
    u = rng.uniform(-1, 1, starts.shape)
    ends = planar_step(starts, u)
    free = np.linalg.norm(ends - starts - u, axis=1) < 1e-9  # no contact on the way
    starts, u, ends = starts[free], u[free], ends[free]
    count = len(starts)
    states = np.concatenate([starts, ends])
    frames = torch.as_tensor(render_planar(states)[:, None])
    latents = torch.as_tensor(states / 10, dtype=torch.float32)
    source, target = torch.arange(count), count + torch.arange(count)
    actions = torch.as_tensor(u, dtype=torch.float32)
    roadmap = FrameRoadmap(latents, frames, source, target, actions=actions)
    seen = np.array([[5.0, 5.0], [35.0, 33.0]])
    B, c = roadmap.recorded_moves(torch.as_tensor(render_planar(seen)[:, None]), 16)
    torch.testing.assert_close(B, torch.eye(2).expand(2, 2, 2) / 10, atol=2e-3, rtol=0)
    torch.testing.assert_close(c, torch.zeros(2, 2), atol=2e-3, rtol=0)

    bent = actions.clone()  # pushes recorded near (5, 5) reversed: the fit there follows them
    near = torch.as_tensor(np.linalg.norm(starts - [5.0, 5.0], axis=1) < 6)
    bent[near] = -bent[near]
    bent_map = FrameRoadmap(latents, frames, source, target, actions=bent)
    B, _ = bent_map.recorded_moves(torch.as_tensor(render_planar(seen)[:, None]), 16)
    torch.testing.assert_close(B[0], -torch.eye(2) / 10, atol=2e-3, rtol=0)
    torch.testing.assert_close(B[1], torch.eye(2) / 10, atol=2e-3, rtol=0)
    with pytest.raises(UserError, match="dataset's actions"):
        FrameRoadmap(latents, frames, source, target).recorded_moves(frames[:1], 16)


def test_a_goal_no_frame_resembles_is_refused(planar_frames) -> None:  # type: ignore[no-untyped-def]
    states, frames, source, target = planar_frames
    roadmap = FrameRoadmap(folded(states), frames, source, target)
    white = torch.full((1, 40, 40), 255, dtype=torch.uint8)
    with pytest.raises(UserError, match=r"no training frame looks like the goal image.*"
                       r"remove plan.options.roadmap"):  # fmt: skip
        roadmap.set_goal(white, folded(GOAL[None])[0])


def _planar_model() -> E2C:
    torch.manual_seed(0)
    config = ModelConfig((1, 40, 40), 2, latent_dim=2, hidden_sizes=(32,),
                         transition_hidden_sizes=(8,))  # fmt: skip
    return E2C(config)


class PlanarPositionModel(nn.Module):
    """A latent model of planar that knows nothing of obstacles and walls: ``z = (x, y) / 10``
    read off the agent's intensity centroid, ``f(z, u) = z + u / 10``. Speaks the E2C
    vocabulary the agent uses."""

    has_decoder = True

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros((), dtype=torch.float64))  # device and dtype
        self.config = types.SimpleNamespace(
            obs_shape=(1, 40, 40), latent_dim=2, action_dim=2, likelihood="gaussian"
        )
        self.dynamics = FunctionDynamics(self.step)
        self.centres = torch.arange(40, dtype=torch.float64) + 0.5

    def encode(self, x: Tensor) -> types.SimpleNamespace:
        w = (x[:, 0].double() - OBSTACLE_VALUE).clamp(min=0)  # the agent, not the obstacles
        total = w.sum((-1, -2))
        centre_x = (w * self.centres).sum((-1, -2)) / total
        centre_y = (w * self.centres[:, None]).sum((-1, -2)) / total
        return types.SimpleNamespace(mean=torch.stack([centre_x, centre_y], -1) / 10)

    def initial_belief(self, x: Tensor) -> types.SimpleNamespace:
        return self.encode(x)

    def update_belief(self, belief: object, u: Tensor, x: Tensor) -> types.SimpleNamespace:
        return self.encode(x)

    def decode(self, z: Tensor) -> Tensor:
        return torch.zeros(z.shape[0], 1, 40, 40, dtype=z.dtype)

    def step(self, z: Tensor, u: Tensor) -> Tensor:
        return z + u / 10

    def linearize(self, z: Tensor, u: Tensor, jacobian: str | None = None) -> tuple:
        return self.dynamics.linearize(z, u)


def test_with_a_roadmap_the_agent_goes_around_what_its_model_does_not_know(
    planar_chains: np.ndarray,
) -> None:
    """A model blind to the obstacles drives straight into them; the roadmap's subgoals, from
    frames where the data went around, lead the same model and planner to the goal."""
    chains = planar_chains
    obs, next_obs = chains[:, :-1].reshape(-1, 2), chains[:, 1:].reshape(-1, 2)
    image = lambda s: render_planar(s)[:, None]  # noqa: E731
    model = PlanarPositionModel()
    roadmap = FrameRoadmap.from_dataset(model, _dataset(image(obs), image(next_obs), obs, next_obs))
    assert roadmap.frames == 300 * 9  # 8 rows a chain, and each chain's last frame
    box = np.full(2, MAX_CONTROL)
    plan = PlanConfig(horizon=10, max_iterations=5, options={"roadmap": {"lookahead": 2.0}})
    with pytest.raises(UserError, match=r"needs a roadmap of the training frames"):
        LatentMPCAgent(model, -box, box, plan)
    env = make_env("latentrl/Planar-v0")
    task = env.unwrapped
    # below a row of obstacles, or between the rows with an obstacle on the way
    starts = np.array([[9.0, 4.0], [20.0, 4.0], [31.0, 4.0], [4.0, 20.0], [14.0, 20.0],
                       [26.0, 20.0]])  # fmt: skip
    reached = {}
    for lookahead in (0.0, 2.0):
        roadmap_section = {"roadmap": {"lookahead": lookahead}} if lookahead else {}
        options = {"blocked_pushes": {"ratio": 0.5}} | roadmap_section
        plan = PlanConfig(horizon=10, max_iterations=5, options=options)
        agent = LatentMPCAgent(model, -box, box, plan, roadmap=roadmap)
        rollout = run_episodes("latentrl/Planar-v0", task, agent, starts, 40)
        reached[lookahead] = task.goal_distance(rollout.states[:, -1]) <= task.goal_radius
        if lookahead:  # the planner's goals are the roadmap's subgoals
            x = torch.as_tensor(task.observe(rollout.states[:, -2]))
            expected = roadmap.subgoals(roadmap.locate(x, model.encode(x).mean), lookahead)
            torch.testing.assert_close(agent.planner.cost.goal, expected)
            x = task.observe(rollout.states[:, -1])
            agent.act(x)
            frames = agent.video_frames(x[:2])  # a last panel: the decoded subgoal
            panels = 2 + 4 + 1
            assert frames.shape == (2, 80, panels * 80 + (panels - 1) * 2)
    env.close()
    # measured: 6 of 6 with the roadmap, 1 of 6 without (lookahead 3: 5 of 6; from (20, 20),
    # through the 2 px gap between two obstacles, lookahead 2 stalls at its edge)
    assert reached[2.0].all() and reached[0.0].sum() <= 2, reached

    plain = LatentMPCAgent(model, -box, box, PlanConfig(horizon=4), roadmap=roadmap)
    assert plain.roadmap is None  # a roadmap without an option that reads it is not used


class ReversedPlanarModel(PlanarPositionModel):
    """:class:`PlanarPositionModel` with its move reversed, ``f(z, u) = z - u / 10``: a model
    that is wrong about where a push goes."""

    def step(self, z: Tensor, u: Tensor) -> Tensor:
        return z - u / 10


def test_recorded_moves_let_a_model_that_is_wrong_about_the_move_reach_the_goal(
    planar_chains: np.ndarray,
) -> None:
    chains = planar_chains
    obs, next_obs = chains[:, :-1].reshape(-1, 2), chains[:, 1:].reshape(-1, 2)
    image = lambda s: render_planar(s)[:, None]  # noqa: E731
    pushes = next_obs - obs  # each recorded push as the move it made
    model = ReversedPlanarModel()
    data = _dataset(image(obs), image(next_obs), obs, next_obs, pushes)
    roadmap = FrameRoadmap.from_dataset(model, data)
    box = np.full(2, MAX_CONTROL)
    env = make_env("latentrl/Planar-v0")
    task = env.unwrapped
    starts = np.array([[30.0, 36.0], [36.0, 29.0], [32.0, 32.0]])  # open field near the goal
    reached = {}
    for count in (0, 16):
        recorded = {"recorded_moves": {"count": count}} if count else {}
        options = {"roadmap": {"lookahead": 2.0}} | recorded
        plan = PlanConfig(horizon=10, max_iterations=5, options=options)
        agent = LatentMPCAgent(model, -box, box, plan, roadmap=roadmap)
        rollout = run_episodes("latentrl/Planar-v0", task, agent, starts, 20)
        reached[count] = task.goal_distance(rollout.states[:, -1]) <= task.goal_radius
    env.close()
    assert reached[16].all() and not reached[0].any(), reached


def test_a_run_without_its_dataset_cannot_build_a_roadmap(tmp_path: Path) -> None:
    model = _planar_model()
    with pytest.raises(UserError, match=r"roadmap needs the run's training data: .* "
                       r"does not record its dataset"):  # fmt: skip
        roadmap_of_run(tmp_path, model)
    (tmp_path / RUN_FILE).write_text(json.dumps({"dataset": str(tmp_path / "gone")}))
    with pytest.raises(UserError, match=r"training data: no dataset at .*gone.*"
                       r"remove plan.options.roadmap"):  # fmt: skip
        roadmap_of_run(tmp_path, model)
