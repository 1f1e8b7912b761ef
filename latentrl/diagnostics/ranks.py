"""Spearman's rank correlation: does one quantity order samples as another does."""

from __future__ import annotations

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values`` ``(n,)``, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    return (last - (counts - 1) / 2)[inverse.reshape(-1)]


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of ``a`` and ``b`` ``(n,)``: the Pearson correlation of
    their average ranks, in [-1, 1] (1: the same order); NaN where either is constant."""
    rank_a, rank_b = average_ranks(np.asarray(a)), average_ranks(np.asarray(b))
    if rank_a.std() == 0 or rank_b.std() == 0:
        return float("nan")
    return float(np.corrcoef(rank_a, rank_b)[0, 1])
