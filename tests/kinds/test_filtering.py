"""The filtering kind: the Gaussian fusion, the Kalman step of the belief, the sequence ELBO."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from latentrl.losses import Continuation, FilterLossConfig, filter_objective, kl_diag_gaussians
from latentrl.models import Gaussian, ModelConfig
from latentrl.models.filtering import FilteringE2C, fuse

F64 = torch.float64


def random_gaussian(shape: tuple[int, ...], seed: int) -> Gaussian:
    g = torch.Generator().manual_seed(seed)
    return Gaussian(
        torch.randn(*shape, generator=g, dtype=F64), 2 * torch.randn(*shape, generator=g, dtype=F64)
    )


def diag_log_density(g: Gaussian, z: torch.Tensor) -> torch.Tensor:
    return Independent(Normal(g.mean, g.std), 1).log_prob(z)


def test_fuse_is_the_normalised_product_of_the_two_densities() -> None:
    a, b = random_gaussian((5, 3), 0), random_gaussian((5, 3), 1)
    fused = fuse(a, b)
    # log N(z; a) + log N(z; b) - log N(z; fused) does not depend on z
    zs = torch.randn(7, 5, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    gaps = torch.stack([diag_log_density(a, z) + diag_log_density(b, z) for z in zs])
    gaps = gaps - torch.stack([diag_log_density(fused, z) for z in zs])
    torch.testing.assert_close(gaps, gaps[:1].expand_as(gaps), rtol=0, atol=1e-9)
    # the order of the factors does not matter; a flat factor leaves the other as it is
    torch.testing.assert_close(fuse(b, a).mean, fused.mean)
    flat = Gaussian(torch.zeros_like(a.mean), torch.full_like(a.logvar, 60.0))
    torch.testing.assert_close(fuse(a, flat).mean, a.mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(fuse(a, flat).logvar, a.logvar, rtol=0, atol=1e-12)


def test_fuse_stays_finite_for_extreme_variances() -> None:
    a = Gaussian(torch.ones(4, dtype=torch.float32), torch.full((4,), -80.0))
    b = Gaussian(torch.zeros(4, dtype=torch.float32), torch.full((4,), 80.0))
    fused = fuse(a, b)
    assert torch.isfinite(fused.mean).all() and torch.isfinite(fused.logvar).all()
    torch.testing.assert_close(fused.mean, a.mean)


def test_the_kl_of_two_diagonal_gaussians_matches_torch() -> None:
    a, b = random_gaussian((6, 4), 3), random_gaussian((6, 4), 4)
    ours = kl_diag_gaussians(a.mean, a.logvar, b.mean, b.logvar)
    theirs = kl_divergence(
        Independent(Normal(a.mean, a.std), 1), Independent(Normal(b.mean, b.std), 1)
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


def small_config(**changes: object) -> ModelConfig:
    fields = {
        "obs_shape": (2, 8, 8),
        "action_dim": 1,
        "latent_dim": 3,
        "kind": "filter",
        "hidden_sizes": (16,),
        "transition_hidden_sizes": (8,),
    }
    return ModelConfig(**(fields | changes))  # type: ignore[arg-type]


def test_the_belief_update_is_the_kalman_filter_of_a_diagonal_linear_model() -> None:
    torch.manual_seed(0)
    model = FilteringE2C(small_config(global_transition=True)).double()
    constant = model.transition_net.constant
    assert constant is not None
    with torch.no_grad():  # raw (v, r, B, o): v and r along the first axis, so A is diagonal
        constant.copy_(torch.tensor([0.8, 0, 0, -0.9, 0, 0, 0.5, -1.0, 0.2, 0.1, 0.0, -0.3]))
    lin0 = model.transition(torch.zeros(1, 3, dtype=F64), torch.zeros(1, 1, dtype=F64))
    A0 = lin0.A[0]
    assert torch.equal(A0, torch.diag(torch.diagonal(A0))) and A0[0, 0] < 0.7  # contracts
    belief = random_gaussian((2, 3), 5)
    u = torch.tensor([[0.3], [-1.0]], dtype=F64)
    x = torch.rand(2, 2, 8, 8, dtype=F64)
    lin = model.transition(belief.mean, u)
    A, B, o = lin.A, lin.B, lin.o
    measured = model.encode(x)
    Q = torch.diag(model.process_noise.logvar().exp())
    predicted_mean = (
        torch.einsum("bij,bj->bi", A, belief.mean) + torch.einsum("bij,bj->bi", B, u) + o
    )
    P = A @ torch.diag_embed(belief.var) @ A.transpose(-1, -2) + Q
    R = torch.diag_embed(measured.var)
    gain = P @ torch.linalg.inv(P + R)
    mean = predicted_mean + torch.einsum("bij,bj->bi", gain, measured.mean - predicted_mean)
    cov = (torch.eye(3, dtype=F64) - gain) @ P
    updated = model.update_belief(belief, u, x)
    torch.testing.assert_close(updated.mean, mean, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(torch.diag_embed(updated.var), cov, rtol=1e-9, atol=1e-9)


def test_the_initial_belief_fuses_the_standard_normal_prior() -> None:
    torch.manual_seed(0)
    model = FilteringE2C(small_config()).double()
    x = torch.rand(3, 2, 8, 8, dtype=F64)
    q = model.encode(x)
    belief = model.initial_belief(x)
    torch.testing.assert_close(belief.var, 1 / (1 + 1 / q.var))
    torch.testing.assert_close(belief.mean, q.mean / (1 + q.var))


def window_batch(rows: int, steps: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (rows, steps + 1, 2, 8, 8), generator=g, dtype=torch.uint8)
    actions = torch.randn(rows, steps, 1, generator=g, dtype=F64)
    return frames, actions


def test_the_sequence_elbo_trains_every_part_and_ignores_rows_without_a_window() -> None:
    torch.manual_seed(0)
    model = FilteringE2C(small_config()).double()
    frames, actions = window_batch(4, 3)
    valid = torch.tensor([True, True, False, True])
    cont = Continuation(actions[:, 1:], frames[:, 2:], valid)
    config = FilterLossConfig(window=3)
    torch.manual_seed(1)
    loss, metrics = filter_objective(model, frames[:, 0], actions[:, 0], frames[:, 1], config, cont)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert {"loss/total", "loss/reconstruction", "loss/kl", "loss/prediction"} <= set(metrics)
    assert all(math.isfinite(float(v)) for v in metrics.values())
    # a row marked invalid does not count: changing its frames leaves the loss as it was
    other = frames.clone()
    other[2] = 255 - other[2]
    cont_other = Continuation(actions[:, 1:], other[:, 2:], valid)
    torch.manual_seed(1)
    again, _ = filter_objective(model, other[:, 0], actions[:, 0], other[:, 1], config, cont_other)
    torch.testing.assert_close(again, loss.detach())


def test_the_loss_is_the_reconstruction_plus_the_weighted_kl_and_open_loop_terms() -> None:
    torch.manual_seed(0)
    model = FilteringE2C(small_config()).double()
    frames, actions = window_batch(3, 2)
    cont = Continuation(actions[:, 1:], frames[:, 2:], torch.ones(3, dtype=torch.bool))
    for kl_weight, open_loop_weight in ((1.0, 0.0), (0.25, 0.0), (1.0, 2.0)):
        config = FilterLossConfig(2, kl_weight, open_loop_weight)
        torch.manual_seed(2)
        loss, metrics = filter_objective(
            model, frames[:, 0], actions[:, 0], frames[:, 1], config, cont
        )
        expected = metrics["loss/reconstruction"] + kl_weight * metrics["loss/kl"]
        if open_loop_weight:
            assert metrics["loss/open_loop"] > 0
            expected = expected + open_loop_weight * metrics["loss/open_loop"]
        else:
            assert "loss/open_loop" not in metrics
        torch.testing.assert_close(loss.detach(), expected)


def test_the_open_loop_term_trains_the_transition_and_the_encoder_as_scaled() -> None:
    frames, actions = window_batch(3, 2)
    cont = Continuation(actions[:, 1:], frames[:, 2:], torch.ones(3, dtype=torch.bool))
    grads = {}
    for share in (1.0, 0.25, 0.0):
        torch.manual_seed(0)
        model = FilteringE2C(small_config()).double()
        config = FilterLossConfig(2, kl_weight=0.0, open_loop_weight=1.0, encoder_gradient=share)
        torch.manual_seed(2)
        with_term, _ = filter_objective(
            model, frames[:, 0], actions[:, 0], frames[:, 1], config, cont
        )
        torch.manual_seed(2)
        without, _ = filter_objective(
            model, frames[:, 0], actions[:, 0], frames[:, 1], FilterLossConfig(2, 0.0, 0.0), cont
        )
        model.zero_grad()
        (with_term - without).backward()
        encoder = next(model.encoder.parameters()).grad
        transition = next(model.transition_net.parameters()).grad
        assert transition is not None and transition.abs().sum() > 0
        grads[share] = encoder
    assert grads[0.0] is None or grads[0.0].abs().sum() == 0
    torch.testing.assert_close(grads[0.25], 0.25 * grads[1.0])


def test_the_open_loop_unit_is_the_beliefs_std_widened_by_the_process_noise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rolled means are scored in units of sqrt(var_belief + var_process): a belief far
    sharper than the transition's own noise must not blow the term up (it did, to 1e6 nats,
    and collapsed a Pendulum-v0 training)."""
    import latentrl.losses.sequence as sequence

    fused: list[torch.Tensor] = []
    scored: dict[str, torch.Tensor] = {}

    def recording_fuse(prior: Gaussian, factor: Gaussian) -> Gaussian:
        out = fuse(prior, factor)
        fused.append(out.logvar.detach())
        return out

    original_error = sequence.rollout_error

    def recording_error(
        rolled: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor
    ) -> torch.Tensor:
        scored["logvar"] = logvar
        return original_error(rolled, mean, logvar)

    monkeypatch.setattr(sequence, "fuse", recording_fuse)
    monkeypatch.setattr(sequence, "rollout_error", recording_error)
    torch.manual_seed(0)
    model = FilteringE2C(small_config()).double()
    with torch.no_grad():
        model.process_noise.raw_logvar.fill_(math.log(0.1**2))
    frames, actions = window_batch(3, 3)
    cont = Continuation(actions[:, 1:], frames[:, 2:], torch.ones(3, dtype=torch.bool))
    filter_objective(model, frames[:, 0], actions[:, 0], frames[:, 1], FilterLossConfig(3), cont)
    beliefs = torch.stack(fused[1:], 1)  # q_1 .. q_K (q_0 is the first fuse)
    process = model.process_noise.logvar().detach()
    expected = torch.log(beliefs.exp() + process.exp())
    torch.testing.assert_close(scored["logvar"], expected, rtol=1e-10, atol=1e-10)
    assert (scored["logvar"] >= process - 1e-12).all()


@pytest.mark.parametrize("window", [0, -2, 1.5, True])
def test_the_window_must_be_a_positive_integer(window: object) -> None:
    from latentrl.errors import UserError

    with pytest.raises(UserError, match=r"loss\.filter\.window must be an int >= 1"):
        FilterLossConfig(window=window)  # type: ignore[arg-type]


def test_the_full_covariance_kalman_reference_is_itself_right() -> None:
    """The reference above, on a 1-d case worked by hand: prior N(0, 1), measurement N(2, 1)
    -> N(1, 1/2)."""
    prior = MultivariateNormal(torch.zeros(1, dtype=F64), torch.eye(1, dtype=F64))
    fused = fuse(
        Gaussian(torch.zeros(1, dtype=F64), torch.zeros(1, dtype=F64)),
        Gaussian(torch.full((1,), 2.0, dtype=F64), torch.zeros(1, dtype=F64)),
    )
    assert prior.mean.item() == 0.0
    torch.testing.assert_close(fused.mean, torch.ones(1, dtype=F64))
    torch.testing.assert_close(fused.var, torch.full((1,), 0.5, dtype=F64))


def test_belief_means_filter_along_chains_and_restart_at_each_chain() -> None:
    from latentrl.latent_diagnostics import belief_means, encode_rollouts

    torch.manual_seed(0)
    model = FilteringE2C(small_config()).double()
    frames, actions = window_batch(2, 3, seed=7)  # two chains of 3 transitions
    images = frames[:, :3].reshape(6, 2, 8, 8)
    u = actions.reshape(6, 1)
    continues = torch.tensor([True, True, False, True, True])
    means = belief_means(model, images, u, continues, block=1)
    for chain in range(2):
        belief = model.initial_belief(frames[chain, :1])
        expected = [belief.mean]
        for t in range(1, 3):
            belief = model.update_belief(
                belief, actions[chain, t - 1 : t], frames[chain, t : t + 1]
            )
            expected.append(belief.mean)
        torch.testing.assert_close(means[3 * chain : 3 * chain + 3], torch.cat(expected))
    # along rollouts (steps + 1, episodes, ...) the same filter runs
    rolled = encode_rollouts(
        model, frames[:, :3].transpose(0, 1).numpy(), actions[:, :2].transpose(0, 1).numpy()
    )
    torch.testing.assert_close(rolled.transpose(0, 1).reshape(6, -1), means)


@pytest.mark.parametrize("belief", ["filtered", "observation"])
def test_the_agent_plans_from_the_filtered_belief_or_the_latest_observation(belief: str) -> None:
    from latentrl.agents import LatentMPCAgent
    from latentrl.config import PlanConfig

    torch.manual_seed(0)
    model = FilteringE2C(small_config())
    plan = PlanConfig(horizon=3, max_iterations=2, belief=belief)  # type: ignore[arg-type]
    agent = LatentMPCAgent(model, -np.ones(1), np.ones(1), plan)
    frames = torch.randint(0, 256, (3, 2, 2, 8, 8), generator=torch.Generator().manual_seed(1))
    agent.reset(frames[0, 0].numpy().astype(np.uint8), 2)
    with torch.no_grad():
        expected = model.initial_belief(frames[0].float() / 255)
        u = torch.as_tensor(agent.act(frames[0].numpy().astype(np.uint8)))
        torch.testing.assert_close(agent.latent, expected.mean)
        for t in (1, 2):
            x = frames[t].float() / 255
            filtered = model.update_belief(expected, u, x)
            latest = model.initial_belief(x)
            assert not torch.allclose(filtered.mean, latest.mean, atol=1e-3)
            expected = filtered if belief == "filtered" else latest
            u = torch.as_tensor(agent.act(frames[t].numpy().astype(np.uint8)))
            torch.testing.assert_close(agent.latent, expected.mean)
