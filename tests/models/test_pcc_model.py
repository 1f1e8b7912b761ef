"""The PCC model: E2C's parts, a learned transition noise and the backward encoder."""

from __future__ import annotations

import pytest
import torch

from latentrl.kinds import build_model
from latentrl.models import E2C, ModelConfig
from latentrl.models.pcc import PCC, backward_width

F64 = torch.float64


def tiny_pcc(seed: int = 0, **overrides: object) -> PCC:
    torch.manual_seed(seed)
    kwargs: dict[str, object] = {
        "obs_shape": (2, 8, 8),
        "action_dim": 2,
        "latent_dim": 3,
        "kind": "pcc",
        "hidden_sizes": (32,),
        "transition_hidden_sizes": (8,),
        "conv_channels": (4, 8),
        **overrides,
    }
    model = build_model(ModelConfig(**kwargs))  # type: ignore[arg-type]
    assert isinstance(model, PCC)
    return model.to(F64)


def images(batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 2, 8, 8), dtype=torch.uint8, generator=g)


def test_the_kind_builds_e2c_parts_plus_noise_and_backward_encoder() -> None:
    model = tiny_pcc()
    e2c = E2C(model.config)
    own = {k for k in model.state_dict() if k not in e2c.state_dict()}
    assert {k.split(".")[0] for k in own} == {"process_noise", "backward_encoder"}
    assert model.has_decoder and model.decoder is not None
    assert backward_width(model.config) == 16  # 32 // 4 is below the floor of 16
    assert backward_width(ModelConfig((2, 48, 48), 1, hidden_sizes=(800, 800))) == 200


@pytest.mark.parametrize("encoder", ["mlp", "conv"])
def test_the_backward_encoder_reads_z_next_x_and_u(encoder: str) -> None:
    model = tiny_pcc(encoder=encoder)
    x = images(5)
    z_next, u = torch.randn(5, 3, dtype=F64), torch.randn(5, 2, dtype=F64)
    q = model.backward(z_next, x, u)
    assert q.mean.shape == q.logvar.shape == (5, 3)
    low, high = model.config.logvar_range
    assert bool(((q.logvar > low) & (q.logvar < high)).all())
    # each input changes the result: the backward encoder is conditioned on all three
    for changed in (
        model.backward(z_next + 1.0, x, u),
        model.backward(z_next, images(5, seed=1), u),
        model.backward(z_next, x, u + 1.0),
    ):
        assert not torch.allclose(changed.mean, q.mean)
    # uint8 and [0, 1] floats are the same images
    torch.testing.assert_close(model.backward(z_next, x.to(F64) / 255, u).mean, q.mean)


def test_the_transition_density_is_the_mean_dynamics_with_the_learned_noise() -> None:
    model = tiny_pcc()
    z, u = torch.randn(4, 3, dtype=F64), torch.randn(4, 2, dtype=F64)
    with torch.no_grad():
        model.process_noise.raw_logvar.copy_(torch.tensor([-1.0, -2.0, -3.0]))
    density = model.transition_density(z, u)
    torch.testing.assert_close(density.mean, model.step(z, u))
    expected = torch.tensor([-1.0, -2.0, -3.0], dtype=F64)  # well inside the soft clamp
    torch.testing.assert_close(density.logvar, expected.expand(4, 3), atol=1e-3, rtol=0)
    torch.testing.assert_close(density.logvar, model.process_noise.logvar().expand(4, 3))


def test_the_belief_is_the_encoder_and_planning_uses_the_mean_dynamics() -> None:
    model = tiny_pcc()
    x = images(3)
    q = model.encode(x)
    for belief in (model.initial_belief(x), model.update_belief(q, torch.zeros(3, 2), x)):
        torch.testing.assert_close(belief.mean, q.mean)
    A, B, c = model.linearize(q.mean, torch.zeros(3, 2, dtype=F64))
    assert A.shape == (3, 3, 3) and B.shape == (3, 3, 2) and c.shape == (3, 3)
