"""The PC3 model: a deterministic encoder, a stochastic latent dynamics and no decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentrl.agents.latent import LatentMPCAgent
from latentrl.config import PlanConfig
from latentrl.errors import UserError
from latentrl.kinds import build_model
from latentrl.models import ModelConfig
from latentrl.models.pc3 import PC3

F64 = torch.float64


def tiny_pc3(seed: int = 0, **overrides: object) -> PC3:
    torch.manual_seed(seed)
    kwargs: dict[str, object] = {
        "obs_shape": (2, 8, 8),
        "action_dim": 1,
        "latent_dim": 2,
        "kind": "pc3",
        "hidden_sizes": (32,),
        "transition_hidden_sizes": (8,),
        **overrides,
    }
    model = build_model(ModelConfig(**kwargs))  # type: ignore[arg-type]
    assert isinstance(model, PC3)
    return model


def images(batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 2, 8, 8), dtype=torch.uint8, generator=g)


def test_pc3_has_no_decoder_and_says_so_when_asked_to_draw() -> None:
    model = tiny_pc3()
    assert not model.has_decoder and model.decoder is None
    assert not any(key.startswith("decoder.") for key in model.state_dict())
    assert "process_noise.raw_logvar" in model.state_dict()
    with pytest.raises(UserError, match="kind 'pc3' has no decoder: it cannot draw images"):
        model.decode(torch.zeros(1, 2))


def test_the_encoder_is_deterministic_with_the_variance_floor() -> None:
    model = tiny_pc3()
    x = images(4)
    q = model.encode(x)
    torch.testing.assert_close(q.mean, model.encoder(x).mean)
    torch.testing.assert_close(q.logvar, torch.full((4, 2), model.config.logvar_range[0]))
    torch.testing.assert_close(q.sample(), q.mean, atol=0.03, rtol=0)  # std e^-6 = 0.0025
    torch.testing.assert_close(model.initial_belief(x).mean, q.mean)
    torch.testing.assert_close(model.update_belief(q, torch.zeros(4, 1), x).mean, q.mean)


def test_the_transition_density_is_the_mean_dynamics_with_the_learned_noise() -> None:
    model = tiny_pc3()
    z, u = torch.randn(5, 2), torch.randn(5, 1)
    density = model.transition_density(z, u)
    torch.testing.assert_close(density.mean, model.step(z, u))
    torch.testing.assert_close(density.std, torch.full((5, 2), 0.1), rtol=1e-3, atol=0)  # initial


def test_the_latent_agent_plans_with_pc3_and_films_the_observation_only() -> None:
    model = tiny_pc3()
    plan = PlanConfig(horizon=4, max_iterations=2)
    agent = LatentMPCAgent(model, np.array([-1.0]), np.array([1.0]), plan)
    agent.reset(images(1, seed=3)[0].numpy(), batch_size=2)
    obs = images(2).numpy()
    u = agent.act(obs)
    assert u.shape == (2, 1) and np.all(np.abs(u) <= 1.0)
    torch.testing.assert_close(agent.latent, model.encode(torch.as_tensor(obs)).mean)
    frames = agent.video_frames(obs, scale=2)
    assert frames.shape == (2, 16, 16)  # one panel: the observation's last frame, twice as big
    np.testing.assert_array_equal(frames[:, ::2, ::2], obs[:, -1])
    with pytest.raises(UserError, match="no decoder"):
        agent.decoded_latent()
