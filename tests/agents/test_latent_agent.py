"""The latent MPC agent: pixels only, a plan in latent space, clear refusals."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from point_mass import ENV_ID as POINT_MASS_ID
from torch import Tensor, nn

from latentrl.agents import Agent, LatentMPCAgent
from latentrl.agents.latent import plan_steps, planner_compiles
from latentrl.checkpoint import TrainerState, save_checkpoint
from latentrl.config import DataConfig, ExperimentConfig, PlanConfig, save_config
from latentrl.envs import goal_observation, make_env
from latentrl.episodes import episode_metrics, run_episodes
from latentrl.errors import UserError
from latentrl.models import E2C, ModelConfig
from latentrl.planning import FunctionDynamics, pendulum_dynamics
from latentrl.planning.options.blocked_pushes import MAX_BLOCKED, BlockedDirections
from latentrl.run_directory import CONFIG_FILE

PENDULUM = "latentrl/Pendulum-v0"
FAST_PLAN = PlanConfig(horizon=6, max_iterations=3, q_f=50.0)


def make_run(run_dir: Path, env_id: str, obs_shape: tuple[int, int, int]) -> Path:
    """A run directory with an untrained tiny model's checkpoint (no training needed)."""
    config = ExperimentConfig(
        name="test",
        preset="test",
        data=DataConfig(env_id=env_id),
        model=ModelConfig(
            obs_shape, 1, latent_dim=3, hidden_sizes=(32,), transition_hidden_sizes=(8,)
        ),
    )
    torch.manual_seed(0)
    model = E2C(config.model)
    run_dir.mkdir(parents=True)
    save_config(config, run_dir / CONFIG_FILE)
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(run_dir, model, optimizer, torch.Generator(), TrainerState(0, 0))
    return run_dir


class PixelStateModel(nn.Module):
    """A perfect latent model of Pendulum-v0 for testing the agent, not the learning:
    ``z = (cos θ, sin θ, 0.3 θ̇)`` read off the pole's intensity centroid in both frames,
    the true physics as the transition. Speaks the E2C vocabulary the agent uses."""

    VELOCITY_SCALE = 0.3  # a unit weight on 0.3 θ̇ is close to the env's own 0.1 θ̇²

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros((), dtype=torch.float64))  # device and dtype
        self.config = types.SimpleNamespace(
            obs_shape=(2, 48, 48), latent_dim=3, action_dim=1, likelihood="gaussian"
        )
        self.dynamics = FunctionDynamics(self.step)
        self.offsets = torch.arange(48, dtype=torch.float64) + 0.5 - 24  # from the pivot

    def _angle(self, frames: Tensor) -> Tensor:
        w = frames.double()
        x = (w * self.offsets).sum((-1, -2))
        y = (w * -self.offsets[:, None]).sum((-1, -2))  # rows go down, y up
        return torch.atan2(-x, y)  # the tip points to (-sin θ, cos θ)

    def encode(self, x: Tensor) -> types.SimpleNamespace:
        theta, before = self._angle(x[:, 1]), self._angle(x[:, 0])
        turn = torch.remainder(theta - before + torch.pi, 2 * torch.pi) - torch.pi
        speed = self.VELOCITY_SCALE * turn / 0.05
        return types.SimpleNamespace(mean=torch.stack([theta.cos(), theta.sin(), speed], -1))

    def initial_belief(self, x: Tensor) -> types.SimpleNamespace:
        return self.encode(x)

    def update_belief(self, belief: object, u: Tensor, x: Tensor) -> types.SimpleNamespace:
        return self.encode(x)

    def decode(self, z: Tensor) -> Tensor:
        return torch.zeros(z.shape[0], 2, 48, 48, dtype=z.dtype)

    def step(self, z: Tensor, u: Tensor) -> Tensor:
        theta = torch.atan2(z[..., 1], z[..., 0])
        s = pendulum_dynamics(torch.stack([theta, z[..., 2] / self.VELOCITY_SCALE], -1), u)
        speed = self.VELOCITY_SCALE * s[..., 1]
        return torch.stack([s[..., 0].cos(), s[..., 0].sin(), speed], -1)

    def linearize(self, z: Tensor, u: Tensor, jacobian: str | None = None) -> tuple:
        return self.dynamics.linearize(z, u)


@pytest.fixture(scope="module")
def pendulum():  # type: ignore[no-untyped-def]
    env = make_env(PENDULUM)
    yield env
    env.close()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "pendulum", PENDULUM, (2, 48, 48))


def test_acts_from_pixels_only_and_shows_its_plan(pendulum, run_dir: Path) -> None:  # type: ignore[no-untyped-def]
    task = pendulum.unwrapped
    agent = LatentMPCAgent.from_run(run_dir, pendulum, plan=FAST_PLAN)
    assert isinstance(agent, Agent)
    goal = goal_observation(task)
    agent.reset(goal, 3)
    expected_goal = agent.model.encode(torch.as_tensor(goal[None])).mean[0]
    torch.testing.assert_close(agent.goal_latent, expected_goal)
    torch.testing.assert_close(agent.planner.cost.goal, expected_goal)
    torch.testing.assert_close(agent.planner.cost.Q_f, 50.0 * torch.eye(3))
    torch.testing.assert_close(agent.planner.cost.R, 0.01 * torch.eye(1))

    states = task.sample_start_states(3, np.random.default_rng(0))
    obs = task.observe(states)
    u = agent.act(obs, states)
    assert u.shape == (3, 1) and u.dtype == np.float32 and np.all(np.abs(u) <= 2.0)
    agent.reset(goal, 3)  # the true states are never read: NaNs give the same actions
    np.testing.assert_array_equal(agent.act(obs, np.full_like(states, np.nan)), u)

    latent = agent.decoded_latent()
    plan = agent.decoded_plan([0, 2])
    assert latent.shape == (3, 2, 48, 48) and latent.dtype == np.uint8
    assert plan.shape == (2, FAST_PLAN.horizon + 1, 2, 48, 48) and plan.dtype == np.uint8
    np.testing.assert_array_equal(plan[:, 0], latent[[0, 2]])  # the plan starts at z_t
    np.testing.assert_array_equal(agent.decoded_plan([0, 2], [1, 3]), plan[:, [1, 3]])
    frames = agent.video_frames(obs[:2])
    assert plan_steps(FAST_PLAN.horizon) == [1, 3, 4, 6]
    panels = 2 + 4  # observation, decoded latent, the plan 1, 3, 4 and 6 steps ahead
    assert frames.shape == (2, 96, panels * 96 + (panels - 1) * 2)
    np.testing.assert_array_equal(frames[0, :96:2, :96:2], obs[0, -1])
    one_ahead = frames[1, :96:2, 2 * 98 : 2 * 98 + 96 : 2]  # the third panel, of row 1
    np.testing.assert_array_equal(one_ahead, agent.decoded_plan([1], [1])[0, 0, -1])


def test_e2c_jacobians_are_selectable(pendulum, run_dir: Path) -> None:  # type: ignore[no-untyped-def]
    plan = PlanConfig(horizon=3, max_iterations=1, jacobian="e2c")
    agent = LatentMPCAgent.from_run(run_dir, pendulum, plan=plan)
    z, u = torch.randn(4, 3), torch.randn(4, 1)
    A, _, _ = agent.planner.dynamics.linearize(z, u)
    lin = agent.model.transition(z, u)
    torch.testing.assert_close(A, lin.A)
    exact = LatentMPCAgent.from_run(run_dir, pendulum, plan=FAST_PLAN)
    A_exact, _, _ = exact.planner.dynamics.linearize(z, u)
    assert not torch.allclose(A_exact, A)  # the exact Jacobian keeps d(A(z) z)/dz


def test_bad_input_is_refused(pendulum, run_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    agent = LatentMPCAgent.from_run(run_dir, pendulum, plan=FAST_PLAN)
    goal = goal_observation(pendulum.unwrapped)
    with pytest.raises(
        UserError,
        match=r"goal image must be uint8 of shape \(2, 48, 48\), got "
        r"uint8 \(1, 48, 48\)",
    ):
        agent.reset(goal[-1:], 2)
    with pytest.raises(UserError, match=r"goal image must be uint8 .* got float64"):
        agent.reset(goal / 255.0, 2)
    with pytest.raises(UserError, match=r"call reset\(goal_obs, batch_size\) before act"):
        agent.act(goal[None], None)
    agent.reset(goal, 2)
    with pytest.raises(UserError, match=r"observations must be uint8 of shape \(2, 2, 48, 48\)"):
        agent.act(goal[None], None)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="not a latentrl run directory"):
        LatentMPCAgent.from_run(empty, pendulum)
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    (untrained / CONFIG_FILE).write_text((run_dir / CONFIG_FILE).read_text())
    with pytest.raises(UserError, match="has no checkpoint yet"):
        LatentMPCAgent.from_run(untrained, pendulum)

    other = make_run(tmp_path / "point_mass", POINT_MASS_ID, (2, 32, 32))
    with pytest.raises(
        UserError,
        match=r"trained on 'point_mass:PointMass-v0', not "
        r"'latentrl/Pendulum-v0'",
    ):
        LatentMPCAgent.from_run(other, pendulum)
    point_mass = make_env(POINT_MASS_ID)
    LatentMPCAgent.from_run(other, point_mass)  # the plug-in id matches without its module
    point_mass.unwrapped.spec = None  # an env made by hand: the shapes still tell
    with pytest.raises(
        UserError,
        match=r"reads observations of shape \(2, 48, 48\), but the "
        r"env gives \(2, 32, 32\)",
    ):
        LatentMPCAgent.from_run(run_dir, point_mass.unwrapped)
    point_mass.close()


def test_with_a_perfect_latent_model_a_20_step_plan_swings_up(pendulum) -> None:  # type: ignore[no-untyped-def]
    """The agent's plumbing (goal encoding, latent cost, planning, action box) is right: with
    a latent that is exactly the state, a 20-step plan does the swing-up. (The default horizon
    of 40, which learned latents need, reached only 0.12-0.25 of the steps here: it swings up
    too hard and spins; docs/benchmarks.md.)"""
    task = pendulum.unwrapped
    plan = PlanConfig(horizon=20)
    agent = LatentMPCAgent(PixelStateModel(), np.array([-2.0]), np.array([2.0]), plan)
    starts = task.sample_start_states(4, np.random.default_rng(0))
    rollout = run_episodes(PENDULUM, task, agent, starts, 200)
    torch.testing.assert_close(
        agent.goal_latent, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), atol=1e-3, rtol=0
    )
    distances = task.goal_distance(rollout.states[:, 1:].reshape(-1, 2)).reshape(4, 200)
    m = episode_metrics(distances, rollout.costs, task.goal_radius)
    assert np.all(m["steps_in_goal"] >= 0.7) and np.all(m["success"] == 1.0), m  # measured 0.755


def test_an_action_that_did_not_move_the_latent_is_blocked_in_the_next_solve(
    pendulum,
    run_dir: Path,  # type: ignore[no-untyped-def]
) -> None:
    """plan.options.blocked_pushes: the same image again (no move, where the model predicts
    one) blocks the last action's direction for the next solve, one-sided; a reset forgets
    it; without the option nothing is blocked."""
    task = pendulum.unwrapped
    starts = task.sample_start_states(2, np.random.default_rng(1))
    obs = task.observe(starts)
    for ratio in (0.0, 0.5):
        options = {"blocked_pushes": {"ratio": ratio}} if ratio else {}
        plan = PlanConfig(horizon=6, max_iterations=3, options=options)
        agent = LatentMPCAgent.from_run(run_dir, pendulum, plan=plan)
        agent.reset(goal_observation(task), 2)
        first = agent.act(obs)
        agent.act(obs)
        dynamics = agent.planner.dynamics
        if ratio == 0:
            assert dynamics is agent.model_dynamics
            continue
        assert isinstance(dynamics, BlockedDirections)
        assert dynamics.directions.shape == (2, MAX_BLOCKED, 1)
        np.testing.assert_allclose(dynamics.directions[:, 0].numpy(), np.sign(first))
        assert not dynamics.directions[:, 1:].any()
        z = agent.latent
        with torch.no_grad():  # a push into the blocked side acts like none, the other side acts
            push, still = (
                dynamics.step(z, torch.as_tensor(first)),
                agent.model.step(z, 0 * z[:, :1]),
            )
            pull = dynamics.step(z, -torch.as_tensor(first))
            free = agent.model.step(z, -torch.as_tensor(first))
        np.testing.assert_allclose(push.numpy(), still.numpy())
        np.testing.assert_allclose(pull.numpy(), free.numpy())
        agent.reset(goal_observation(task), 2)
        assert agent.planner.dynamics is agent.model_dynamics


def test_a_speed_weight_plans_on_augmented_states_and_shows_the_latent_plan(
    pendulum, run_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    plan = dataclasses.replace(FAST_PLAN, q_speed=4.0)
    agent = LatentMPCAgent.from_run(run_dir, pendulum, plan=plan)
    weight = agent.planner.speed_weight
    assert weight is not None
    torch.testing.assert_close(weight, 4.0 * torch.eye(3))
    assert LatentMPCAgent.from_run(run_dir, pendulum, plan=FAST_PLAN).planner.speed_weight is None
    task = pendulum.unwrapped
    agent.reset(goal_observation(task), 2)
    obs = task.observe(task.sample_start_states(2, np.random.default_rng(1)))
    u = agent.act(obs)
    assert u.shape == (2, 1) and np.all(np.abs(u) <= 2.0)
    last = agent.planner.last_plan
    assert last is not None and last.z.shape == (2, plan.horizon + 1, 6)
    torch.testing.assert_close(last.z[:, 0], torch.cat([agent.latent, agent.latent], -1))
    assert agent.decoded_plan().shape == (2, plan.horizon + 1, 2, 48, 48)


def test_plan_compile_auto_compiles_on_a_gpu_only() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [planner_compiles(s, cpu) for s in ("auto", "on", "off")] == [False, True, False]
    assert [planner_compiles(s, cuda) for s in ("auto", "on", "off")] == [True, True, False]
    with pytest.raises(UserError, match=r"plan\.compile"):
        PlanConfig(compile="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("device", "setting"),
    [
        pytest.param("cpu", "on", marks=pytest.mark.slow),  # compiling: ~1 min on 2 cores
        pytest.param("cuda", "auto", marks=pytest.mark.gpu),
    ],
)
def test_a_compiled_planner_acts_as_the_eager_one(  # type: ignore[no-untyped-def]
    pendulum, run_dir: Path, device: str, setting: str
) -> None:
    """The compiled planner (``on``, or ``auto`` on a GPU) acts as the eager one on the CPU."""
    task = pendulum.unwrapped
    goal = goal_observation(task)
    states = task.sample_start_states(3, np.random.default_rng(1))
    obs = task.observe(states)
    actions = {}
    for where, chosen in (("cpu", "off"), (device, setting)):
        plan = dataclasses.replace(FAST_PLAN, compile=chosen)
        agent = LatentMPCAgent.from_run(run_dir, pendulum, device=where, plan=plan)
        assert agent.planner.config.compile == (chosen != "off")
        agent.reset(goal, 3)
        actions[chosen] = [agent.act(obs, states), agent.act(obs, states)]
    np.testing.assert_allclose(actions[setting], actions["off"], atol=1e-4)
