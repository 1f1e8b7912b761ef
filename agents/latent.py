"""Latent MPC: E2C's controller. Encode the image, plan with iLQR in the learned latent space.

The goal image is encoded once per :meth:`LatentMPCAgent.reset` (the encoder mean ``z_goal``);
at each step the observation's encoder mean ``z_t`` is the planner's state, the model's mean
transition ``f(z, u) = A(z) z + B(z) u + o(z)`` its dynamics (``model.step`` and
``model.linearize``), and the cost ``Σ q |z_t - z_goal|² + r |u_t|² + q_f |z_T - z_goal|²``
(:class:`~latentrl.config.PlanConfig`). The agent sees pixels only: the true states handed to
:meth:`~LatentMPCAgent.act` are never read. With ``plan.blocked_ratio`` it also watches its own
latent: a push that moved it much less than the model predicted is dropped from the planner's
dynamics while the episode stays stuck (:class:`BlockedDirections`). With
``plan.roadmap_lookahead`` it plans towards a subgoal on the shortest path to the goal through
a roadmap of the training frames instead of straight to the goal
(:class:`~latentrl.agents.roadmap.FrameRoadmap`), and with ``plan.recorded_moves`` it takes the
move the roadmap's training transitions made near the observation where the model's move
disagrees with it (:class:`MoveCorrection`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latentrl.agents.agent import check_batch, check_image
from latentrl.agents.roadmap import FrameRoadmap, roadmap_of_run
from latentrl.checkpoint import load_model
from latentrl.config import ExperimentConfig, PlanConfig
from latentrl.envs.contract import require_control_env
from latentrl.errors import UserError
from latentrl.models import E2C
from latentrl.models.e2c import JacobianKind
from latentrl.planning import Dynamics, ILQRConfig, MPCPlanner, QuadraticCost
from latentrl.planning.dynamics import select_problems
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


class MoveCorrection:
    """Planner dynamics ``f(z, u) + ΔB u + Δc``: the inner dynamics with a fixed affine term
    per problem, ``delta_B (B, n, m)`` and ``delta_c (B, n)`` (``plan.recorded_moves``), so
    ``linearize`` is ``(A, B + ΔB, c + Δc)``. Row ``r`` of a call is problem ``r mod B``."""

    def __init__(self, inner: Dynamics, delta_B: Tensor, delta_c: Tensor) -> None:
        self.inner = inner
        self.delta_B = delta_B
        self.delta_c = delta_c

    def _terms(self, rows: int) -> tuple[Tensor, Tensor]:
        reps, rest = divmod(rows, self.delta_c.shape[0])
        if rest:
            raise UserError(
                f"MoveCorrection holds {self.delta_c.shape[0]} problems; a batch of {rows} "
                "rows is not a multiple"
            )
        return self.delta_B.repeat(reps, 1, 1), self.delta_c.repeat(reps, 1)

    def step(self, z: Tensor, u: Tensor) -> Tensor:
        """``f(z (R, n), u (R, m)) + ΔB u + Δc -> (R, n)``."""
        delta_B, delta_c = self._terms(u.shape[0])
        return self.inner.step(z, u) + (delta_B @ u.unsqueeze(-1)).squeeze(-1) + delta_c

    def linearize(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(A, B + ΔB, c + Δc)`` from the inner linearisation at ``(z, u)``."""
        A, B, c = self.inner.linearize(z, u)
        delta_B, delta_c = self._terms(u.shape[0])
        return A, B + delta_B, c + delta_c

    def select(self, index: Tensor) -> MoveCorrection:
        """The terms of the problems at ``index``."""
        inner = select_problems(self.inner, index) or self.inner
        return MoveCorrection(inner, self.delta_B[index], self.delta_c[index])


MOVE_AGREEMENT = 0.8
"""``plan.recorded_moves`` corrects a problem's move where a column of the model's ``B(z)`` is
at a cosine below this from the fit's (planar: 0.5 and 0.0 helped less, docs/benchmarks.md)."""


def move_correction(
    model_move: tuple[Tensor, Tensor], fitted_move: tuple[Tensor, Tensor]
) -> tuple[Tensor, Tensor]:
    """``(ΔB (B, n, m), Δc (B, n))`` taking the model's move ``(B_m, c_m)`` at the current
    latents to the fitted ``(B_fit, c_fit)``, for the problems where some column of ``B_m`` is
    at a cosine below :data:`MOVE_AGREEMENT` from ``B_fit``'s; zero for the others."""
    (B_m, c_m), (B_fit, c_fit) = model_move, fitted_move
    cosine = torch.nn.functional.cosine_similarity(B_m, B_fit, dim=1)  # (B, m)
    disagree = (cosine.min(dim=-1).values < MOVE_AGREEMENT).to(B_m.dtype)
    return disagree[:, None, None] * (B_fit - B_m), disagree[:, None] * (c_fit - c_m)


MAX_BLOCKED = 4
"""Blocked directions an episode keeps while it stays stuck (the latest first)."""


class BlockedDirections:
    """Planner dynamics in which a push along a blocked direction does nothing, as at a contact.

    Per problem up to ``K`` unit directions ``d_k``, ``directions (B, K, m)`` (zero rows: none),
    and ``g(z, u) = f(z, M u)`` with ``M = I - Σ_{k: d_kᵀu > 0} d_k d_kᵀ``: the component of
    ``u`` into a blocked direction is removed, pulling away from it is kept. ``M`` is constant
    on each piece of this map, so ``linearize`` is exact there: ``(A, B M, c)``. ``inner`` is
    shared by all problems (as :class:`ModelDynamics` is); row ``r`` of a call is problem
    ``r mod B``."""

    def __init__(self, inner: Dynamics, directions: Tensor) -> None:
        self.inner = inner
        self.directions = directions

    def _controls(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """``M u (R, m)`` and ``M (R, m, m)`` for ``u (R, m)``."""
        reps, rest = divmod(u.shape[0], self.directions.shape[0])
        if rest:
            raise UserError(
                f"BlockedDirections holds {self.directions.shape[0]} problems; a batch of "
                f"{u.shape[0]} rows is not a multiple"
            )
        d = self.directions.repeat(reps, 1, 1)  # (R, K, m)
        pushing = ((d @ u.unsqueeze(-1)) > 0).to(u.dtype)  # (R, K, 1)
        eye = torch.eye(u.shape[-1], dtype=u.dtype, device=u.device)
        M = eye - (pushing.unsqueeze(-1) * d.unsqueeze(-1) * d.unsqueeze(-2)).sum(1)
        return (M @ u.unsqueeze(-1)).squeeze(-1), M

    def step(self, z: Tensor, u: Tensor) -> Tensor:
        """``f(z (R, n), M u (R, m)) -> (R, n)``."""
        return self.inner.step(z, self._controls(u)[0])

    def linearize(self, z: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(A, B M, c)`` from the inner linearisation at ``(z, M u)``: ``g ≈ A z + B M u + c``."""
        v, M = self._controls(u)
        A, B, c = self.inner.linearize(z, v)
        return A, B @ M, c

    def select(self, index: Tensor) -> BlockedDirections:
        """The directions of the problems at ``index``."""
        inner = select_problems(self.inner, index) or self.inner
        return BlockedDirections(inner, self.directions[index])


def blocked_directions(
    moved: Tensor, predicted: Tensor, u: Tensor, ratio: float
) -> tuple[Tensor, Tensor]:
    """Of the controls ``u (B, m)`` that the model predicted to move the latent by ``predicted
    (B, n)``: unit directions ``(B, m)`` of those whose move ``moved (B, n)`` fell short of
    ``ratio`` times it (zero rows elsewhere), and a mask ``(B,)`` of those that did not."""
    size = torch.linalg.vector_norm(u, dim=-1, keepdim=True)
    expected = torch.linalg.vector_norm(predicted, dim=-1, keepdim=True)
    tried = (size > 0) & (expected > 0)
    short = torch.linalg.vector_norm(moved, dim=-1, keepdim=True) < ratio * expected
    directions = torch.where(tried & short, u / size.clamp(min=torch.finfo(u.dtype).tiny), 0.0)
    return directions, (tried & ~short).squeeze(-1)


def update_blocked(kept: Tensor, new: Tensor, moved: Tensor) -> Tensor:
    """Blocked directions ``(B, K, m)`` after a step: a problem with a ``new (B, m)`` blocked
    direction puts it first and keeps the others (the oldest drops out), one that ``moved
    (B,)`` as predicted clears them, one that did neither (no push tried) keeps ``kept``."""
    stuck = (new != 0).any(-1)[:, None, None]
    kept = torch.where(stuck, torch.cat([new.unsqueeze(1), kept[:, :-1]], dim=1), kept)
    return torch.where(moved[:, None, None], 0.0, kept)


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
        roadmap: FrameRoadmap | None = None,
    ) -> None:
        self.model = model.eval()
        self.plan_config = plan or PlanConfig()
        p = self.plan_config
        if p.roadmap_lookahead > 0 and roadmap is None:
            raise UserError(
                "plan.roadmap_lookahead > 0 needs a roadmap of the training frames: load the "
                "agent with LatentMPCAgent.from_run, or pass roadmap=roadmap_of_run(run_dir, "
                "model)"
            )
        self.roadmap = roadmap if p.roadmap_lookahead > 0 else None
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
        eye = torch.eye(n, **like)
        cost = QuadraticCost(
            Q=p.q * eye, R=p.r * torch.eye(m, **like), Q_f=p.q_f * eye, goal=torch.zeros(n, **like)
        )
        self.model_dynamics = ModelDynamics(model, p.jacobian)
        self.planner = MPCPlanner(
            self.model_dynamics,
            cost,
            p.horizon,
            low,
            high,
            # All step sizes in one rollout: the transition network's small batched steps are
            # dispatch-bound (on 20 Pendulum-v0 episodes, 2-core CPU, the same controls: 2.4x
            # faster per act than one step size after another, 1.1-1.4x faster than the full
            # step first and then the rest for the problems that refused it).
            ILQRConfig(max_iterations=p.max_iterations, parallel_line_search=True),
            replan_every=p.replan_every,
            restarts=p.restarts,
            seed=seed,
            shooting=p.shooting,
            shooting_steps=p.shooting_steps,
            shooting_beyond=p.shooting_beyond,
        )
        self.goal_latent: Tensor | None = None
        """Encoder mean of the goal image ``(n,)``, set by :meth:`reset`."""
        self.latent: Tensor | None = None
        """Encoder means ``(B, n)`` of the last observations given to :meth:`act`."""
        self.subgoal_latent: Tensor | None = None
        """Planner goals ``(B, n)`` of the last :meth:`act` with a roadmap (else None)."""
        self._batch: int | None = None
        self._last_action: Tensor | None = None  # (B, m), for plan.blocked_ratio
        self._blocked: Tensor | None = None  # (B, MAX_BLOCKED, m), for plan.blocked_ratio

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
        roadmap = roadmap_of_run(run_dir, model) if plan.roadmap_lookahead > 0 else None
        space = env.action_space
        return cls(model, space.low, space.high, plan, seed, roadmap)

    def reset(self, goal_obs: np.ndarray, batch_size: int) -> None:
        """Encode the goal image uint8 ``(k, H, W)`` and forget the previous plan."""
        goal = check_image(goal_obs, self.obs_shape, "the goal image")
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self.goal_latent = self.encode(goal[None])[0]
        if self.roadmap is not None:
            self.roadmap.set_goal(torch.as_tensor(goal), self.goal_latent)
        self.planner.reset(batch_size, goal=self.goal_latent)
        self.planner.dynamics = self.model_dynamics
        self.latent = None
        self.subgoal_latent = None
        self._batch = batch_size
        self._last_action = None
        self._blocked = None

    def act(self, obs: np.ndarray, states: np.ndarray | None = None) -> np.ndarray:
        """Actions float32 ``(B, m)`` for observations uint8 ``(B, k, H, W)``; ``states`` is
        ignored (the agent learns from pixels only)."""
        if self.goal_latent is None:
            raise UserError("call reset(goal_obs, batch_size) before act()")
        x = check_batch(obs, self.obs_shape, self._batch)
        previous, self.latent = self.latent, self.encode(x)
        with torch.no_grad():  # torch.func inside linearize still differentiates
            dynamics: Dynamics = self.model_dynamics
            if self.plan_config.recorded_moves > 0 and self.roadmap is not None:
                dynamics = self._corrected_moves(torch.as_tensor(x))
            ratio = self.plan_config.blocked_ratio
            if ratio > 0 and previous is not None and self._last_action is not None:
                self._blocked = self._update_blocked(
                    previous, self.latent, self._last_action, ratio
                )
            if self._blocked is not None:
                dynamics = BlockedDirections(dynamics, self._blocked)
            self.planner.dynamics = dynamics
            if self.roadmap is not None:
                nodes = self.roadmap.locate(torch.as_tensor(x), self.latent)
                lookahead = self.plan_config.roadmap_lookahead
                self.subgoal_latent = self.roadmap.subgoals(nodes, lookahead)
                self.planner.set_goal(self.subgoal_latent)
            u = self.planner.plan(self.latent)
        self._last_action = u
        return u.cpu().numpy().astype(np.float32)

    def _corrected_moves(self, obs: Tensor) -> MoveCorrection:
        """The model's dynamics with :func:`move_correction` towards the recorded moves near
        ``obs`` (``plan.recorded_moves``), at the current latents."""
        assert self.roadmap is not None and self.latent is not None
        z = self.latent
        fitted = self.roadmap.recorded_moves(obs, self.plan_config.recorded_moves)
        u = torch.zeros(z.shape[0], fitted[0].shape[-1], dtype=z.dtype, device=z.device)
        A, B, c = self.model_dynamics.linearize(z, u)
        model_move = (B, (A @ z.unsqueeze(-1)).squeeze(-1) + c - z)
        delta_B, delta_c = move_correction(model_move, fitted)
        return MoveCorrection(self.model_dynamics, delta_B, delta_c)

    def _update_blocked(self, previous: Tensor, latent: Tensor, u: Tensor, ratio: float) -> Tensor:
        """:func:`update_blocked` after the action ``u (B, m)`` took the latents ``previous
        (B, n)`` to ``latent (B, n)``."""
        predicted = self.model.step(previous, u) - previous
        new, moved = blocked_directions(latent - previous, predicted, u, ratio)
        kept = self._blocked
        if kept is None:
            kept = new.new_zeros(new.shape[0], MAX_BLOCKED, new.shape[-1])
        return update_blocked(kept, new, moved)

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
        the decoded subgoal the plan aimed at."""
        rows = list(range(len(obs)))
        ahead = self.decoded_plan(rows, plan_steps(self.planner.horizon))[:, :, -1]  # (b, S, H, W)
        parts = [obs[:, -1:], self.decoded_latent(rows)[:, -1:], ahead]
        if self.subgoal_latent is not None:
            parts.append(self.decode(self.subgoal_latent[rows])[:, -1:])
        panels = np.concatenate(parts, axis=1)  # (b, panels, H, W)
        return np.stack([image_grid([row], scale=scale) for row in panels])


def plan_steps(horizon: int, count: int = 4) -> list[int]:
    """Steps ahead (1 .. horizon, about evenly spaced) of the plan shown in video frames."""
    return np.unique(np.linspace(1, horizon, count).round().astype(int)).tolist()


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
