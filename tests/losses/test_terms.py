"""E2C's four terms against their math on the shared forward pass, and every section's checks."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from latentrl.errors import UserError
from latentrl.kinds import EVERY_KIND_READS, model_kind
from latentrl.losses import (
    CurvatureConfig,
    KLPriorConfig,
    KLTransitionConfig,
    LossConfig,
    MultiStepConfig,
    MultiStepPredictionConfig,
    PredictionConfig,
    ReconstructionConfig,
    forward_pass,
    kl_prior,
    kl_transition,
    observation_nll,
    prediction,
    reconstruction,
)
from latentrl.models import E2C, transition_covariance

SECTIONS = {
    "reconstruction": ReconstructionConfig,
    "prediction": PredictionConfig,
    "kl_prior": KLPriorConfig,
    "kl_transition": KLTransitionConfig,
    "multi_step": MultiStepConfig,
    "multi_step_prediction": MultiStepPredictionConfig,
    "curvature": CurvatureConfig,
}


def test_every_section_of_e2c_is_listed() -> None:
    read_by_e2c = model_kind("e2c").loss_sections()[: -len(EVERY_KIND_READS)]
    sections = {name: type(section) for name, section in vars(LossConfig()).items()}
    assert {name: sections[name] for name in read_by_e2c} == SECTIONS


@pytest.mark.parametrize("name", sorted(SECTIONS))
@pytest.mark.parametrize(
    ("weight", "message"),
    [
        (-0.5, "must be a finite number >= 0, got -0.5"),
        (math.nan, "must be a finite number >= 0, got nan"),
        (math.inf, "must be a finite number >= 0, got inf"),
        (True, "must be a finite number >= 0, got True"),
        ("1", "must be a finite number >= 0, got '1'"),
    ],
)
def test_a_weight_must_be_a_finite_number_not_below_zero(
    name: str, weight: object, message: str
) -> None:
    with pytest.raises(UserError, match=f"^loss\\.{name}\\.weight {message}$"):
        SECTIONS[name](weight=weight)  # type: ignore[call-arg]
    assert SECTIONS[name](weight=0).weight == 0  # type: ignore[call-arg]


MS, CURV = MultiStepConfig, CurvatureConfig


@pytest.mark.parametrize(
    ("section", "kwargs", "message"),
    [
        (MS, {"horizon": 0}, r"loss\.multi_step\.horizon must be an int >= 1, got 0"),
        (MS, {"horizon": 2.0}, r"loss\.multi_step\.horizon must be an int >= 1, got 2\.0"),
        (
            MS,
            {"encoder_gradient": 1.5},
            r"encoder_gradient must be a finite number in \[0, 1\], got 1\.5",
        ),
        (MS, {"encoder_gradient": -0.1}, r"encoder_gradient must be a finite number in \[0, 1\]"),
        (
            MS,
            {"encoder_gradient": math.nan},
            r"encoder_gradient must be a finite number in \[0, 1\]",
        ),
        (CURV, {"radius": 0.0}, r"loss\.curvature\.radius must be a finite number > 0, got 0\.0"),
        (CURV, {"radius": math.nan}, r"loss\.curvature\.radius must be a finite number > 0"),
        (CURV, {"radius": math.inf}, r"loss\.curvature\.radius must be a finite number > 0"),
    ],
)
def test_term_parameters_are_checked(
    section: type, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(UserError, match=message):
        section(**kwargs)


def test_sections_are_frozen() -> None:
    config = LossConfig()
    with pytest.raises(AttributeError):
        config.curvature.radius = 1.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.multi_step = MultiStepConfig()  # type: ignore[misc]


def test_the_image_terms_score_the_decoded_sample_and_prediction(
    tiny_model: Callable[..., E2C], blob_transitions: Callable[..., tuple[torch.Tensor, ...]]
) -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(8)
    torch.manual_seed(4)
    fp = forward_pass(model, x, u, x_next)
    torch.manual_seed(4)
    q_t = model.encode(x)
    z_t = q_t.sample()
    z_next = model.step(z_t, u)
    for module, z, target, config in (
        (reconstruction, z_t, x, ReconstructionConfig()),
        (prediction, z_next, x_next, PredictionConfig()),
    ):
        values, metrics = module.term(fp, config)  # type: ignore[attr-defined]
        expected = observation_nll(model, model.decode(z), target.float() / 255)
        assert values.shape == (8,)
        torch.testing.assert_close(values, expected, rtol=1e-5, atol=1e-4)
        assert list(metrics) == [f"loss/{module.__name__.rsplit('.', 1)[1]}"]
        assert torch.equal(next(iter(metrics.values())), values.detach().mean())


def test_the_kl_terms_are_the_closed_forms_of_the_model_outputs(
    tiny_model: Callable[..., E2C], blob_transitions: Callable[..., tuple[torch.Tensor, ...]]
) -> None:
    model = tiny_model()
    x, u, x_next = blob_transitions(16)
    torch.manual_seed(7)
    fp = forward_pass(model, x, u, x_next)
    prior, prior_metrics = kl_prior.term(fp, KLPriorConfig())
    transition, transition_metrics = kl_transition.term(fp, KLTransitionConfig())
    torch.manual_seed(7)
    q_t, q_next = model.encode(x), model.encode(x_next)
    z_t = q_t.sample()
    mean, lin = model.predict(q_t, z_t, u)
    n = model.config.latent_dim
    standard = MultivariateNormal(torch.zeros(n, dtype=torch.float64), torch.eye(n).double())
    reference_prior = kl_divergence(
        MultivariateNormal(q_t.mean.double(), torch.diag_embed(q_t.var.double())), standard
    )
    torch.testing.assert_close(prior.double(), reference_prior, rtol=1e-5, atol=1e-5)
    S1 = transition_covariance(lin.A.double(), q_t.var.double())
    reference = kl_divergence(
        MultivariateNormal(mean.double(), 0.5 * (S1 + S1.transpose(-1, -2))),
        MultivariateNormal(q_next.mean.double(), torch.diag_embed(q_next.var.double())),
    )
    torch.testing.assert_close(transition.double(), reference, rtol=1e-5, atol=1e-5)
    assert torch.equal(prior_metrics["loss/kl_prior"], prior.detach().mean())
    assert torch.equal(transition_metrics["loss/kl_transition"], transition.detach().mean())
