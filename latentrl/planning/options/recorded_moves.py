"""Recorded moves: where the model's move disagrees with the training data nearby, use theirs.

At each step the least squares ``Δz ≈ B u + c`` of the ``count`` recorded training
transitions whose first frame is closest by image to the observation (the run's training
frames, :class:`~.kinds.TrainingFrames`) is compared with the model's move at the current
latent. Where a column of the model's ``B(z)`` is at a cosine below :data:`MOVE_AGREEMENT`
from the fit's, the planner's dynamics get the difference added, ``f(z, u) + (B_fit - B(z_t))
u + c_fit - c(z_t)``, so the first step moves as the data did there. For a model whose move is
wrong in places (planar, next to the obstacles). Reads the roadmap's training frames, so it
needs ``plan.options.roadmap``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from latentrl.errors import UserError
from latentrl.field_rules import check_fields, checked
from latentrl.planning.dynamics import Dynamics, select_problems
from latentrl.planning.options.kinds import Episode, Resources, Step, TrainingFrames
from latentrl.planning.options.registry import OptionSpec, register

MOVE_AGREEMENT = 0.8
"""The move of a problem is corrected where a column of the model's ``B(z)`` is at a cosine
below this from the fit's."""


@dataclass(frozen=True)
class RecordedMovesConfig:
    """``[plan.options.recorded_moves]``."""

    count: int = checked(32, int, low=1)
    """Recorded transitions (nearest by image) the move is fitted to."""

    def __post_init__(self) -> None:
        check_fields(self, "plan.options.recorded_moves")


class MoveCorrection:
    """Planner dynamics ``f(z, u) + ΔB u + Δc``: the inner dynamics with a fixed affine term
    per problem, ``delta_B (B, n, m)`` and ``delta_c (B, n)``, so ``linearize`` is
    ``(A, B + ΔB, c + Δc)``. Row ``r`` of a call is problem ``r mod B``."""

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


class RecordedMoves:
    """Corrects the model's move towards the recorded moves near the observation
    (:class:`~.kinds.DynamicsModifier`)."""

    def __init__(self, config: RecordedMovesConfig, frames: TrainingFrames) -> None:
        self.config = config
        self.frames = frames

    def reset(self, episode: Episode) -> None:
        """Nothing to forget."""

    def modify(self, dynamics: Dynamics, step: Step) -> MoveCorrection:
        """``dynamics`` plus :func:`move_correction` of the model's move at ``step.z``."""
        z = step.z
        fitted = self.frames.recorded_moves(step.observation, self.config.count)
        u = torch.zeros(z.shape[0], fitted[0].shape[-1], dtype=z.dtype, device=z.device)
        A, B, c = step.model.linearize(z, u)
        model_move = (B, (A @ z.unsqueeze(-1)).squeeze(-1) + c - z)
        delta_B, delta_c = move_correction(model_move, fitted)
        return MoveCorrection(dynamics, delta_B, delta_c)


def _build(config: RecordedMovesConfig, resources: Resources) -> RecordedMoves:
    if resources.frames is None:
        raise UserError(
            "plan.options.recorded_moves needs the run's training frames: load the agent "
            "with LatentMPCAgent.from_run"
        )
    return RecordedMoves(config, resources.frames)


register(
    OptionSpec(
        name="recorded_moves",
        kind="dynamics",
        order=0,
        config=RecordedMovesConfig,
        build=_build,
        requires={"roadmap": "it fits the transitions of the roadmap's training frames"},
        needs_frames=True,
    )
)
