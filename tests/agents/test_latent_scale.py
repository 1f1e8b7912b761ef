"""plan.state_scale: the planner's state cost in units of the training encodings' spread."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from latentrl.agents import LatentMPCAgent
from latentrl.agents.latent_scale import encoding_spread_of_run, mean_variance
from latentrl.checkpoint import load_model
from latentrl.config import PlanConfig
from latentrl.data import load_transitions
from latentrl.envs import make_env
from latentrl.errors import UserError


def test_mean_variance_is_the_mean_of_the_coordinates_sample_variances() -> None:
    latents = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 4.0]])
    expected = np.var(latents.numpy(), axis=0, ddof=1).mean()  # (4 + 3) / 2
    assert mean_variance(latents) == pytest.approx(expected) == pytest.approx(3.5)
    with pytest.raises(ValueError, match="N >= 2"):
        mean_variance(latents[:1])


def test_the_spread_of_a_run_is_that_of_its_training_encodings(planar_run: Path) -> None:
    model, _ = load_model(planar_run, "cpu")
    dataset = load_transitions(planar_run.parent / "planar_data")
    with torch.no_grad():
        means = model.encode(dataset.obs).mean  # every observation: the sample is all of them
    assert len(dataset.obs) <= 4096
    spread = encoding_spread_of_run(planar_run, model)
    assert spread == pytest.approx(mean_variance(means), rel=1e-9)
    assert spread != pytest.approx(1.0, abs=0.05)


def test_the_agent_divides_its_state_weights_by_the_spread(planar_run: Path) -> None:
    plan = PlanConfig(horizon=5, max_iterations=2, q=2.0, q_f=30.0, state_scale="encodings")
    env = make_env("latentrl/Planar-v0")
    try:
        scaled = LatentMPCAgent.from_run(planar_run, env, plan=plan)
        plain = LatentMPCAgent.from_run(planar_run, env, plan=PlanConfig(horizon=5, q=2.0))
    finally:
        env.close()
    model, _ = load_model(planar_run, "cpu")
    spread = encoding_spread_of_run(planar_run, model)
    n = model.config.latent_dim
    cost = scaled.planner.cost
    assert torch.allclose(cost.Q, 2.0 / spread * torch.eye(n, dtype=cost.Q.dtype))
    assert torch.allclose(cost.Q_f, 30.0 / spread * torch.eye(n, dtype=cost.Q.dtype))
    assert torch.equal(cost.R, plain.planner.cost.R)
    assert torch.equal(plain.planner.cost.Q, 2.0 * torch.eye(n, dtype=cost.Q.dtype))


def test_without_its_training_data_the_scale_is_refused_in_one_line(planar_run: Path) -> None:
    (planar_run / "run.json").write_text(json.dumps({"dataset": str(planar_run / "gone")}))
    model, _ = load_model(planar_run, "cpu")
    with pytest.raises(UserError, match=r"^plan.state_scale=encodings needs the run's training"):
        encoding_spread_of_run(planar_run, model)


def test_a_state_metric_must_be_a_nonzero_psd_matrix_of_the_latents_size(
    planar_run: Path,
) -> None:
    model, _ = load_model(planar_run, "cpu")
    box = np.ones(2, dtype=np.float32)
    asymmetric = torch.eye(3)
    asymmetric[0, 1] = 0.5
    bad = {
        r"must be \(3, 3\) for this model, got \(2, 2\)": torch.eye(2),
        "must be symmetric": asymmetric,
        r"positive semi-definite and not zero, its eigenvalues span \[-1, 1\]": torch.diag(
            torch.tensor([1.0, -1.0, 0.5])
        ),
        "not zero": torch.zeros(3, 3),
    }
    assert model.config.latent_dim == 3
    for message, metric in bad.items():
        with pytest.raises(UserError, match=message):
            LatentMPCAgent(model, -box, box, PlanConfig(horizon=3), state_metric=metric)
    rank_one = torch.ones(3, 3)  # semi-definite is enough
    agent = LatentMPCAgent(model, -box, box, PlanConfig(horizon=3, q=2.0), state_metric=rank_one)
    assert torch.equal(agent.planner.cost.Q, 2.0 * rank_one.to(agent.planner.cost.Q.dtype))
