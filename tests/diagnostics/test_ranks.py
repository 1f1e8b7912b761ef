"""Spearman's rank correlation against scipy's, with and without ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from latentrl.diagnostics.ranks import average_ranks, rank_correlation


def test_tied_values_share_the_mean_of_their_ranks() -> None:
    values = np.array([3.0, 1.0, 2.0, 2.0, 5.0, 2.0])
    np.testing.assert_array_equal(average_ranks(values), [5.0, 1.0, 3.0, 3.0, 6.0, 3.0])
    rng = np.random.default_rng(0)
    ties = rng.integers(0, 7, size=200).astype(float)
    np.testing.assert_array_equal(average_ranks(ties), rankdata(ties))


@pytest.mark.parametrize("tied", [False, True])
def test_rank_correlation_is_spearmans(tied: bool) -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=300)
    b = a + rng.normal(size=300)
    if tied:
        a, b = np.round(a), np.round(b)
    assert rank_correlation(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_a_monotone_map_keeps_the_order_and_a_constant_has_none() -> None:
    a = np.random.default_rng(2).normal(size=50)
    assert rank_correlation(a, np.exp(3 * a)) == pytest.approx(1.0)
    assert rank_correlation(a, -(a**3)) == pytest.approx(-1.0)
    assert math.isnan(rank_correlation(a, np.full(50, 2.0)))
