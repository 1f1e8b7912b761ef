"""Latent MPC: E2C's controller. Encode the image, plan with iLQR in the learned latent space.

The goal image is encoded once per :meth:`LatentMPCAgent.reset` (the mean ``z_goal`` of the
model's initial belief, the encoder mean for E2C); at each step the mean ``z_t`` of the
model's belief is the planner's state (:meth:`~latentrl.models.E2C.update_belief`: the
encoder's q(z | x_t) for E2C, the filtered belief over the episode so far for the filtering
kind), the model's mean
transition ``f(z, u) = A(z) z + B(z) u + o(z)`` its dynamics (``model.step`` and
``model.linearize``), and the cost ``Σ q |z_t - z_goal|² + r |u_t|² + q_f |z_T - z_goal|²``
(:class:`~latentrl.config.PlanConfig`; ``plan.state_scale`` may replace the identity
inside ``|·|²`` by a metric: :mod:`~latentrl.agents.latent_scale`,
:mod:`~latentrl.agents.latent_cost`), with ``q_speed |z_{t+1} - z_t|²`` per planned step
where ``plan.q_speed > 0``. The agent sees pixels only: the true states handed to
:meth:`~LatentMPCAgent.act` are never read. Its planner options (``plan.options``,
:mod:`latentrl.planning.options`) are composed at each step: the dynamics modifiers wrap the
model's dynamics (blocked pushes, recorded moves), a goal provider moves the goal (roadmap
subgoals), and the planner's initialisers give each solve its guesses (warm start, shooting,
restarts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latentrl.agents.agent import check_batch, check_image
from latentrl.agents.latent_cost import cost_metric_of_run
from latentrl.agents.latent_scale import encoding_spread_of_run
from latentrl.agents.roadmap import roadmap_of_run
from latentrl.checkpoint import load_model
from latentrl.config import ExperimentConfig, PlanConfig
from latentrl.envs.contract import require_control_env
from latentrl.errors import UserError
from latentrl.models import E2C, Gaussian
from latentrl.models.e2c import JacobianKind
from latentrl.planning import Dynamics, ILQRConfig, MPCPlanner, QuadraticCost
from latentrl.planning.options import (
    DynamicsModifier,
    Episode,
    GoalProvider,
    Initialiser,
    Resources,
    Step,
    TrainingFrames,
    build_options,
    needs_frames,
)
from latentrl.plots import image_grid


class ModelDynamics:
    """An E2C model's mean transition as planner dynamics, linearised the chosen way."""

    def __init__(self, model: E2C, jacobian: JacobianKind = "exact") -> None:
        self.model = model
        self.jacobian = jacobian

    def step(self, z: Tensor, u: Tensor) -> Tensor:
        """``f(z (B, n), u (B, m)) -> (B, n)``."""
        return self.model.step(z, u)

    def linearize(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(A (B, n, n), B (B, n, m), c (B, n))``; see :meth:`E2C.linearize`."""
        return self.model.linearize(z, u, self.jacobian)

    def select(self, index: Tensor) -> ModelDynamics:
        """Itself: one model for every problem."""
        return self


class LatentMPCAgent:
    """Receding-horizon iLQR in the latent space of a trained E2C model.

    ``u_low``, ``u_high``: the env's action box ``(m,)``. Runs on the model's device and dtype.
    After each :meth:`act`, :meth:`decoded_latent` and :meth:`decoded_plan` show what the agent
    believes: the decoded current latent and the decoded latent trajectory of the last plan.
    On a CPU, plan with ``torch.set_num_threads(1)`` (as ``latentrl evaluate`` does): the
    planner's tensors are tiny and extra threads made it 10x slower on a busy 2-core machine.
    """

    def __init__(
        self,
        model: E2C,
        u_low: np.ndarray,
        u_high: np.ndarray,
        plan: PlanConfig | None = None,
        seed: int = 0,
        roadmap: TrainingFrames | None = None,
        state_metric: Tensor | None = None,
    ) -> None:
        self.model = model.eval()
        self.plan_config = plan or PlanConfig()
        p = self.plan_config
        self.roadmap = roadmap if needs_frames(p.options) else None
        """The run's training frames (:class:`~latentrl.agents.FrameRoadmap`), where an option
        reads them."""
        weights = next(model.parameters())
        self.device, dtype = weights.device, weights.dtype
        self.obs_shape = tuple(model.config.obs_shape)
        n, m = model.config.latent_dim, model.config.action_dim
        like = {"dtype": dtype, "device": self.device}
        low = torch.as_tensor(np.asarray(u_low, dtype=np.float64).reshape(-1), **like)
        high = torch.as_tensor(np.asarray(u_high, dtype=np.float64).reshape(-1), **like)
        if low.shape != (m,) or high.shape != (m,):
            raise UserError(
                f"the action box has shape {tuple(low.shape)} but the model's action_dim is {m}"
            )
        resources = Resources(frames=self.roadmap)
        initialisers: list[Initialiser] = build_options(p.options, "initialiser", resources)
        self.modifiers: list[DynamicsModifier] = build_options(p.options, "dynamics", resources)
        """Dynamics modifiers, innermost first."""
        self.goals: list[GoalProvider] = build_options(p.options, "goal", resources)
        """Goal providers; the last one's goal is planned towards."""
        metric = check_state_metric(state_metric, n).to(**like)
        cost = QuadraticCost(
            Q=p.q * metric,
            R=p.r * torch.eye(m, **like),
            Q_f=p.q_f * metric,
            goal=torch.zeros(n, **like),
        )
        self.model_dynamics = ModelDynamics(model, p.jacobian)
        self.planner = MPCPlanner(
            self.model_dynamics,
            cost,
            p.horizon,
            low,
            high,
            # All step sizes in one rollout: the transition network's small batched steps are
            # dispatch-bound, so one batched rollout is faster per act than one step size
            # after another.
            ILQRConfig(
                max_iterations=p.max_iterations,
                parallel_line_search=True,
                compile=planner_compiles(p.compile, self.device),
            ),
            replan_every=p.replan_every,
            initialisers=initialisers,
            seed=seed,
            speed_weight=p.q_speed * metric if p.q_speed > 0 else None,
        )
        self.goal_latent: Tensor | None = None
        """Encoder mean of the goal image ``(n,)``, set by :meth:`reset`."""
        self.latent: Tensor | None = None
        """Belief means ``(B, n)`` after the last observations given to :meth:`act`."""
        self.belief: Gaussian | None = None
        """The belief ``(B, n)`` after the last :meth:`act` (None before the first)."""
        self.subgoal_latent: Tensor | None = None
        """Planner goals ``(B, n)`` of the last :meth:`act` with a goal provider (else None)."""
        self._batch: int | None = None
        self._last_action: Tensor | None = None  # (B, m)

    @classmethod
    def from_run(
        cls,
        run_dir: Path | str,
        env: Any,
        device: torch.device | str = "cpu",
        plan: PlanConfig | None = None,
        seed: int = 0,
    ) -> LatentMPCAgent:
        """The agent of a trained run for ``env``; ``plan`` defaults to the run's ``plan``.

        Raises UserError for a run without a checkpoint or one trained on another env.
        """
        model, config = load_model(run_dir, device)
        check_run_env(config, env, Path(run_dir))
        plan = plan or config.plan
        roadmap = roadmap_of_run(run_dir, model) if needs_frames(plan.options) else None
        n = model.config.latent_dim
        metric = None
        if plan.state_scale == "encodings":
            dtype = next(model.parameters()).dtype  # divide in the dtype the planner runs in
            metric = torch.eye(n, dtype=dtype) / encoding_spread_of_run(run_dir, model)
        elif plan.state_scale == "cost":
            metric = cost_metric_of_run(run_dir, model, env)
        space = env.action_space
        return cls(model, space.low, space.high, plan, seed, roadmap, metric)

    def reset(self, goal_obs: np.ndarray, batch_size: int) -> None:
        """Encode the goal image uint8 ``(k, H, W)`` and forget the previous plan."""
        goal = check_image(goal_obs, self.obs_shape, "the goal image")
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        with torch.no_grad():
            goal_belief = self.model.initial_belief(torch.as_tensor(goal[None], device=self.device))
        self.goal_latent = goal_belief.mean[0]
        episode = Episode(torch.as_tensor(goal), self.goal_latent, batch_size)
        for option in [*self.modifiers, *self.goals]:
            option.reset(episode)
        self.planner.reset(batch_size, goal=self.goal_latent)
        self.planner.dynamics = self.model_dynamics
        self.latent = None
        self.belief = None
        self.subgoal_latent = None
        self._batch = batch_size
        self._last_action = None

    def act(self, obs: np.ndarray, states: np.ndarray | None = None) -> np.ndarray:
        """Actions float32 ``(B, m)`` for observations uint8 ``(B, k, H, W)``; ``states`` is
        ignored (the agent learns from pixels only)."""
        if self.goal_latent is None:
            raise UserError("call reset(goal_obs, batch_size) before act()")
        x = check_batch(obs, self.obs_shape, self._batch)
        previous = self.latent
        self.belief = self.next_belief(x)
        self.latent = self.belief.mean
        step = Step(
            torch.as_tensor(x), self.latent, previous, self._last_action, self.model_dynamics
        )
        with torch.no_grad():  # torch.func inside linearize still differentiates
            dynamics: Dynamics = self.model_dynamics
            for modifier in self.modifiers:
                dynamics = modifier.modify(dynamics, step)
            self.planner.dynamics = dynamics
            for provider in self.goals:
                self.subgoal_latent = provider.goal(step)
                self.planner.set_goal(self.subgoal_latent)
            u = self.planner.plan(self.latent)
        self._last_action = u
        return u.cpu().numpy().astype(np.float32)

    def next_belief(self, obs: np.ndarray) -> Gaussian:
        """The model's belief ``(B, n)`` after observations ``obs`` uint8 ``(B, k, H, W)``: the
        initial belief at an episode's first step (at every step with ``plan.belief =
        "observation"``), else the previous belief updated with the last action and ``obs``."""
        x = torch.as_tensor(obs, device=self.device)
        with torch.no_grad():
            first = self.belief is None or self._last_action is None
            if first or self.plan_config.belief == "observation":
                return self.model.initial_belief(x)
            return self.model.update_belief(self.belief, self._last_action, x)

    def encode(self, obs: np.ndarray) -> Tensor:
        """Encoder means ``(B, n)`` of observations uint8 ``(B, k, H, W)``."""
        with torch.no_grad():
            return self.model.encode(torch.as_tensor(obs, device=self.device)).mean

    def decode(self, z: Tensor) -> np.ndarray:
        """Images uint8 ``(B, k, H, W)`` of latents ``z (B, n)`` (Bernoulli means or Gaussian
        means, clipped to [0, 1])."""
        with torch.no_grad():
            out = self.model.decode(z.to(self.device))
            if self.model.config.likelihood == "bernoulli":
                out = torch.sigmoid(out)
        return (out.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()

    def decoded_latent(self, rows: list[int] | None = None) -> np.ndarray:
        """Decoded current latents uint8 ``(b, k, H, W)`` of ``rows`` (default all)."""
        if self.latent is None:
            raise UserError("decoded_latent() needs a call to act() first")
        z = self.latent if rows is None else self.latent[rows]
        return self.decode(z)

    def decoded_plan(
        self, rows: list[int] | None = None, steps: list[int] | None = None
    ) -> np.ndarray:
        """Decoded latent trajectory of the last plan, uint8 ``(b, S, k, H, W)``: step 0 is
        the latent the plan was made from, step t the one predicted t steps ahead; ``steps``
        picks S of the T + 1 (default all)."""
        z = self.planner.predicted_states
        if z is None:
            raise UserError("decoded_plan() needs a call to act() first")
        z = z if rows is None else z[rows]
        z = z if steps is None else z[:, steps]
        b, count, n = z.shape
        return self.decode(z.reshape(b * count, n)).reshape(b, count, *self.obs_shape)

    def video_frames(self, obs: np.ndarray, scale: int = 2) -> np.ndarray:
        """One video frame per row after :meth:`act` on ``obs`` uint8 ``(b, k, H, W)`` (the
        first ``b`` rows of that call): uint8 ``(b, scale H, ...)``, panels left to right:
        the observation's last frame, the decoded current latent, the decoded plan at
        :func:`plan_steps` steps ahead (last frame of each decoded stack), and with a roadmap
        the decoded subgoal the plan aimed at. A model without a decoder (``pc3``) draws
        nothing, so its frames show the observation only."""
        rows = list(range(len(obs)))
        if not self.model.has_decoder:
            return np.stack([image_grid([row], scale=scale) for row in obs[:, -1:]])
        ahead = self.decoded_plan(rows, plan_steps(self.planner.horizon))[:, :, -1]  # (b, S, H, W)
        parts = [obs[:, -1:], self.decoded_latent(rows)[:, -1:], ahead]
        if self.subgoal_latent is not None:
            parts.append(self.decode(self.subgoal_latent[rows])[:, -1:])
        panels = np.concatenate(parts, axis=1)  # (b, panels, H, W)
        return np.stack([image_grid([row], scale=scale) for row in panels])


def planner_compiles(setting: str, device: torch.device) -> bool:
    """Whether ``plan.compile`` (``auto``, ``on``, ``off``) compiles the planner on ``device``:
    ``auto`` compiles on CUDA only."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def plan_steps(horizon: int, count: int = 4) -> list[int]:
    """Steps ahead (1 .. horizon, about evenly spaced) of the plan shown in video frames."""
    return np.unique(np.linspace(1, horizon, count).round().astype(int)).tolist()


def check_state_metric(metric: Tensor | None, n: int) -> Tensor:
    """``metric`` ``(n, n)``, checked symmetric positive semi-definite and not zero; the
    identity where None. Raises UserError otherwise."""
    if metric is None:
        return torch.eye(n, dtype=torch.float64)
    M = torch.as_tensor(metric).double().cpu()
    if M.shape != (n, n):
        raise UserError(f"the state metric must be ({n}, {n}) for this model, got {tuple(M.shape)}")
    if not torch.allclose(M, M.T, atol=1e-9 * float(M.abs().max().clamp_min(1.0))):
        raise UserError("the state metric must be symmetric")
    values = torch.linalg.eigvalsh(M)
    if values.min() < -1e-9 * float(values.abs().max()) or not values.max() > 0:
        raise UserError(
            f"the state metric must be positive semi-definite and not zero, its eigenvalues "
            f"span [{float(values.min()):.3g}, {float(values.max()):.3g}]"
        )
    return M


def check_run_env(config: ExperimentConfig, env: Any, run_dir: Path) -> None:
    """Raise UserError unless the model of ``config`` was trained on ``env``'s task.

    Compares the env id (a plug-in's ``module:`` prefix ignored), the observation shape and
    the action dimension.
    """
    try:
        inner = require_control_env(env)
    except TypeError as exc:
        raise UserError(str(exc)) from None
    spec = getattr(env, "spec", None) or getattr(inner, "spec", None)
    trained_on = config.data.env_id
    if spec is not None and _plain_id(spec.id) != _plain_id(trained_on):
        raise UserError(
            f"the model of {run_dir} was trained on {trained_on!r}, not {spec.id!r}; "
            f"evaluate it on {trained_on!r} or train a model for {spec.id!r}"
        )
    obs_shape = tuple(inner.observation_space.shape)  # type: ignore[attr-defined]
    if obs_shape != tuple(config.model.obs_shape):
        raise UserError(
            f"the model of {run_dir} reads observations of shape {config.model.obs_shape}, "
            f"but the env gives {obs_shape}; it was trained on another env ({trained_on!r})"
        )
    action_dim = int(np.prod(inner.action_space.shape))  # type: ignore[attr-defined]
    if action_dim != config.model.action_dim:
        raise UserError(
            f"the model of {run_dir} takes {config.model.action_dim}-d actions, the env "
            f"{action_dim}-d; it was trained on another env ({trained_on!r})"
        )


def _plain_id(env_id: str) -> str:
    """``module:Name-v0`` -> ``Name-v0`` (Gymnasium registers plug-ins without the module)."""
    return env_id.rsplit(":", 1)[-1]
