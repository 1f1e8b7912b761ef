"""Can the planner hold the goal in this model, and does the model know what a push does there?

Two questions a trained model answers before any episode is run, both near the goal image's
encoding z_g, where a swing-up is won or lost:

- **Holding.** The planner keeps the latent at z_g only if some action u in the box makes
  f(z_g, u) = z_g. With the drift d = f(z_g, c) - z_g at the box's centre c and B = df/du
  there, the least-squares action is u* = c - B⁺ d (:func:`holding_action`); its share of the
  box (:func:`box_share`) above 1 means the model cannot hold its own goal.
- **Pushes.** From true states near the goal, the env is stepped under two opposite full
  pushes and the frames are encoded; the model is rolled from the first encoding under the
  same pushes. The difference between the two outcomes is what the push does: the model's and
  the frames' are compared by direction (cosine; 1 is as the frames show, negative is the
  wrong way) and size (:func:`push_agreement`).
- **The cost.** The planner minimises the latent distance |z - z_g|² (its state cost is
  isotropic). Over true states near the goal, and over states drawn from the whole state box,
  that distance should order states as the task's own cost does: the Spearman rank
  correlation of the two (:func:`rank_correlation`; 1 is the same order). A model can pass both
  checks above and still price the wrong things, e.g. the cart-pole's cart above its pole.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from latentrl.diagnostics.ranks import rank_correlation
from latentrl.envs.contract import ControlEnv, goal_observation, sample_near_goal_states
from latentrl.planning.dynamics import Dynamics

Encode = Callable[[np.ndarray], Tensor]
"""Observations ``(N, ...)`` as the env gives them -> latent means ``(N, n)``."""


def holding_action(drift: Tensor, B: Tensor, centre: Tensor) -> tuple[Tensor, Tensor]:
    """The action ``(m,)`` that best cancels ``drift`` ``(n,)`` through ``B`` ``(n, m)`` from
    ``centre`` ``(m,)`` in least squares, u* = centre - B⁺ drift, and the drift left over,
    drift + B (u* - centre) ``(n,)`` (zero where B spans the drift)."""
    delta = -torch.linalg.pinv(B) @ drift
    return centre + delta, drift + B @ delta


def box_share(u: Tensor, low: Tensor, high: Tensor) -> float:
    """How far ``u`` ``(m,)`` reaches into the box ``[low, high]`` ``(m,)``: the largest
    |u_i - centre_i| / half-width_i; 1 is the box's edge, above 1 outside it."""
    centre, half = (high + low) / 2, (high - low) / 2
    return float(((u - centre).abs() / half).max())


def push_agreement(true_effect: Tensor, predicted_effect: Tensor) -> tuple[Tensor, Tensor]:
    """Cosine ``(...,)`` between the predicted and the true effect of a push ``(..., n)``, and
    the ratio of their lengths (predicted / true)."""
    true_norm = true_effect.norm(dim=-1)
    predicted_norm = predicted_effect.norm(dim=-1)
    cosine = (true_effect * predicted_effect).sum(-1) / (true_norm * predicted_norm).clamp_min(
        1e-12
    )
    return cosine, predicted_norm / true_norm.clamp_min(1e-12)


def cost_ranking(
    env: ControlEnv, z: Tensor, z_goal: Tensor, states: np.ndarray, action: np.ndarray
) -> dict[str, Any]:
    """How ``|z - z_goal|²`` of the encodings ``z`` ``(N, n)`` of ``states`` ``(N, d)`` orders
    them against the task's cost ``env.cost(states, action)`` (``action`` ``(m,)`` for every
    state): the rank correlation and both values per state."""
    distance = ((z - z_goal) ** 2).sum(-1).detach().double().cpu().numpy()
    cost = np.asarray(env.cost(states, np.repeat(action[None], len(states), 0)), np.float64)
    rank = rank_correlation(distance, cost)
    return {
        "rank_correlation": None if math.isnan(rank) else rank,
        "latent_distance": distance.tolist(),
        "task_cost": cost.tolist(),
    }


def opposite_pushes(
    low: np.ndarray, high: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` pairs of opposite corners of the action box ``(m,)``: ``(count, m)`` each.
    One action dimension: the box's two ends."""
    signs = rng.choice(np.array([-1.0, 1.0]), size=(count, len(low)))
    signs[:, 0] = 1.0  # which of the pair is "plus" does not matter; fix it
    centre, half = (high + low) / 2, (high - low) / 2
    return centre + signs * half, centre - signs * half


def true_rollout(
    env: ControlEnv, states: np.ndarray, action: np.ndarray, steps: int
) -> list[np.ndarray]:
    """Observations after each of ``steps`` steps of ``action`` ``(N, m)`` from ``states``
    ``(N, d)``: a list of ``steps`` arrays ``(N, ...)``."""
    observations = []
    for _ in range(steps):
        states = env.next_states(states, action)
        observations.append(env.observe(states))
    return observations


def model_rollout(dynamics: Dynamics, z: Tensor, action: Tensor, steps: int) -> Tensor:
    """The mean transition rolled ``steps`` steps under the constant ``action`` ``(N, m)``
    from ``z`` ``(N, n)``: ``(N, steps, n)``."""
    latents = []
    for _ in range(steps):
        z = dynamics.step(z, action)
        latents.append(z)
    return torch.stack(latents, 1)


def measure_goal(
    env: ControlEnv,
    encode: Encode,
    dynamics: Dynamics,
    low: np.ndarray,
    high: np.ndarray,
    typical_move: float,
    posterior_std: float,
    states: int,
    steps: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Both checks on ``env``'s goal for a model seen through ``encode`` and ``dynamics``, with
    the action box ``low``, ``high`` ``(m,)``; ``typical_move``: the mean length of one step's
    change of the encodings (the unit of the drift); ``posterior_std``: the encoder's typical
    standard deviation (the unit of the frames' push effect: below 1, a push hides in the
    posterior's noise); ``states`` near-goal start states, ``steps`` steps of each push, and as
    many states drawn from the whole state box for the cost's order."""
    z_goal = encode(goal_observation(env)[None])
    like = {"dtype": z_goal.dtype, "device": z_goal.device}
    low_t, high_t = torch.as_tensor(low, **like), torch.as_tensor(high, **like)
    centre = (low_t + high_t) / 2
    _, B, _ = dynamics.linearize(z_goal, centre[None])
    with torch.no_grad():
        drift = (dynamics.step(z_goal, centre[None]) - z_goal)[0]
    u_hold, residual = holding_action(drift, B[0].detach(), centre)
    starts = sample_near_goal_states(env, states, rng)
    plus, minus = opposite_pushes(np.asarray(low), np.asarray(high), states, rng)
    # both pushes of every start in one batch: rows [:states] plus, [states:] minus
    both_starts = np.concatenate([starts, starts])
    both_pushes = np.concatenate([plus, minus])
    with torch.no_grad():
        z0 = encode(env.observe(both_starts))
        true = torch.stack(
            [encode(o) for o in true_rollout(env, both_starts, both_pushes, steps)], 1
        )
        model = model_rollout(dynamics, z0, torch.as_tensor(both_pushes, **like), steps)
    true_effect = true[:states] - true[states:]
    cosine, size = push_agreement(true_effect, model[:states] - model[states:])
    centre_np = np.asarray((low + high) / 2, dtype=np.float64)
    anywhere = env.sample_states(states, rng)
    with torch.no_grad():
        z_anywhere = encode(env.observe(anywhere))
    return {
        "typical_move": typical_move,
        "posterior_std": posterior_std,
        "drift": float(drift.norm()) / typical_move,
        "holding_action": u_hold.tolist(),
        "holding_box_share": box_share(u_hold, low_t, high_t),
        "holding_residual": float(residual.norm()) / typical_move,
        "control_gain": float(B[0].norm()) / typical_move,
        "push": {
            "states": states,
            "steps": steps,
            "cosine": _curve(cosine),
            "size_ratio": _curve(size),
            "wrong_way": (cosine < 0).double().mean(0).tolist(),
            "effect_in_std": (true_effect.norm(dim=-1).mean(0) / posterior_std).tolist(),
        },
        "cost": {
            "states": states,
            "near_goal": cost_ranking(env, z0[:states], z_goal, starts, centre_np),
            "anywhere": cost_ranking(env, z_anywhere, z_goal, anywhere, centre_np),
        },
    }


def _curve(values: Tensor) -> dict[str, list[float]]:
    """Mean and standard error over the first dimension of ``values`` ``(N, steps)``."""
    x = values.detach().double()
    return {"mean": x.mean(0).tolist(), "se": (x.std(0) / x.shape[0] ** 0.5).tolist()}
