"""The latent-quality measures: probe R^2, state features, open-loop drift."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from latentrl.latent_diagnostics import (
    encode_rollouts,
    latent_stretch,
    open_loop_error,
    random_rollouts,
    state_step_sizes,
)
from latentrl.probe import fit_probe, r_squared, state_errors, state_features


def test_r_squared_is_one_for_the_truth_and_zero_for_the_mean() -> None:
    target = torch.tensor([[1.0, 2.0], [2.0, 0.0], [4.0, 1.0]])
    assert torch.allclose(r_squared(target, target), torch.ones(2))
    assert torch.allclose(r_squared(target.mean(0).expand_as(target), target), torch.zeros(2))
    noisy = target + torch.tensor([[0.5, 0.0], [0.0, 0.0], [0.0, 1.0]])
    by_hand = 1 - np.array([0.25, 1.0]) / np.array([((target[:, 0] - 7 / 3) ** 2).sum(), 2.0])
    assert np.allclose(r_squared(noisy, target).numpy(), by_hand)


def test_state_features_split_angles_into_cos_and_sin() -> None:
    states = torch.tensor([[0.0, 3.0], [np.pi / 2, -1.0]])
    features, names = state_features(states, ["theta", "theta_dot"], angle_dims=[0])
    assert names == ["cos_theta", "sin_theta", "theta_dot"]
    assert torch.allclose(features, torch.tensor([[1.0, 0.0, 3.0], [0.0, 1.0, -1.0]]), atol=1e-7)


def test_state_errors_read_angles_from_cos_and_sin_across_the_cut() -> None:
    # an angle read just across the cut at pi is 0.2 rad off, not 2 pi - 0.2
    truth = np.array([[np.pi - 0.1, 1.0], [0.5, -2.0]])
    read = np.array(
        [[np.cos(-np.pi + 0.1), np.sin(-np.pi + 0.1), 1.5], [np.cos(0.4), np.sin(0.4), -2.0]]
    )
    np.testing.assert_allclose(
        state_errors(read, truth, [0]), [[0.2, 0.5], [-0.1, 0.0]], atol=1e-12
    )
    features, _ = state_features(torch.from_numpy(truth), ["theta", "theta_dot"], [0])
    np.testing.assert_allclose(state_errors(features.double().numpy(), truth, [0]), 0, atol=1e-6)


def test_fit_probe_recovers_a_smooth_function() -> None:
    generator = torch.Generator().manual_seed(0)
    z = torch.rand(600, 2, generator=generator) * 4 - 2
    y = torch.stack([torch.sin(z[:, 0]), z[:, 0] * z[:, 1]], dim=1)
    r2 = fit_probe(z[:500], y[:500], z[500:], y[500:], steps=800)
    assert r2.shape == (2,) and bool((r2 > 0.97).all()), r2


class _Integrator:
    """s' = s + u in 2-d; the 'image' is the state itself."""

    action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

    def sample_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(size=(n, 2))

    def next_states(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return states + actions

    def observe(self, states: np.ndarray) -> np.ndarray:
        return states.astype(np.float32)


class _Model(nn.Module):
    def __init__(self, uses_action: bool) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the model a device
        self.uses_action = uses_action

    def encode(self, x: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(mean=x.double())

    def step(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return z + u if self.uses_action else z


def test_random_rollouts_follow_the_env() -> None:
    env = _Integrator()
    observations, actions, states = random_rollouts(env, episodes=5, steps=7, seed=3)
    assert observations.shape == (8, 5, 2) and actions.shape == (7, 5, 2)
    assert states.shape == (8, 5, 2) and np.allclose(observations, states, atol=1e-6)
    assert np.all(np.abs(actions) <= 1)
    assert np.allclose(states[1:], states[:-1] + actions)
    again = random_rollouts(env, episodes=5, steps=7, seed=3)
    assert np.array_equal(observations, again.observations)


def test_open_loop_error_is_zero_for_the_true_model_and_exact_for_a_wrong_one() -> None:
    env = _Integrator()
    observations, actions, _ = random_rollouts(env, episodes=50, steps=6, seed=0)
    true_model = _Model(uses_action=True)
    assert torch.allclose(
        open_loop_error(true_model, encode_rollouts(true_model, observations), actions),
        torch.zeros(6),
        atol=1e-5,
    )
    # A model that ignores the action stays at z_0: it is off by the summed actions.
    still = _Model(uses_action=False)
    drift = open_loop_error(still, encode_rollouts(still, observations), actions)
    truth = observations[1:].astype(np.float64)
    spread = np.sqrt(((truth - truth.mean((0, 1))) ** 2).sum(-1).mean())
    expected = np.linalg.norm(np.cumsum(actions, axis=0), axis=-1).mean(-1) / spread
    assert drift.numpy() == pytest.approx(expected, rel=1e-4)
    assert bool((drift[1:] > 0).all())


def test_state_step_sizes_wrap_angles_and_scale_by_the_box() -> None:
    states = np.array([[[3.0, 0.0]], [[-3.0, 4.0]]])  # one step: theta 3 -> -3, x 0 -> 4
    sizes = state_step_sizes(states, span=np.array([1.0, 8.0]), angle_dims=[0])
    assert sizes.shape == (1, 1)
    assert sizes[0, 0] == pytest.approx(np.hypot(2 * np.pi - 6.0, 0.5))


class _TornEncoder(_Model):
    """Encodes s as s, plus a jump of 10 in the first coordinate where s_0 > 0."""

    def encode(self, x: torch.Tensor) -> SimpleNamespace:
        z = x.double().clone()
        z[..., 0] += 10.0 * (z[..., 0] > 0)
        return SimpleNamespace(mean=z)


def test_latent_stretch_is_one_for_an_isometry_and_large_for_a_tear() -> None:
    observations, _, states = random_rollouts(_Integrator(), episodes=50, steps=6, seed=0)
    steps = state_step_sizes(states, span=np.ones(2))
    smooth = latent_stretch(encode_rollouts(_Model(uses_action=True), observations), steps)
    assert smooth == pytest.approx(1.0, rel=1e-5)
    torn = latent_stretch(encode_rollouts(_TornEncoder(uses_action=True), observations), steps)
    # the largest crossing step is at most |u| <= sqrt(2) long and moves 10 further in z
    assert torn > 10.0 / np.sqrt(2)
