"""The image likelihoods against their formulas and torch.distributions."""

from __future__ import annotations

import math

import torch
from torch.distributions import Normal

from latentrl.losses import bernoulli_nll, gaussian_nll

F64 = torch.float64


def test_bernoulli_nll_matches_the_formula_and_is_stable_for_huge_logits() -> None:
    g = torch.Generator().manual_seed(4)
    logits = 3 * torch.randn(5, 2, 4, 4, generator=g, dtype=F64)
    target = torch.rand(5, 2, 4, 4, generator=g, dtype=F64)
    p = torch.sigmoid(logits)
    reference = -(target * p.log() + (1 - target) * (1 - p).log()).flatten(1).sum(-1)
    torch.testing.assert_close(bernoulli_nll(logits, target), reference)
    huge = torch.tensor([[100.0, -100.0]])
    torch.testing.assert_close(
        bernoulli_nll(huge, torch.tensor([[0.0, 1.0]])), torch.tensor([200.0])
    )


def test_gaussian_nll_matches_normal_log_prob() -> None:
    g = torch.Generator().manual_seed(5)
    mean = torch.randn(3, 2, 4, 4, generator=g, dtype=F64)
    target = torch.rand(3, 2, 4, 4, generator=g, dtype=F64)
    log_std = torch.tensor(math.log(0.3), dtype=F64)
    reference = -Normal(mean, log_std.exp()).log_prob(target).flatten(1).sum(-1)
    torch.testing.assert_close(gaussian_nll(mean, log_std, target), reference)
