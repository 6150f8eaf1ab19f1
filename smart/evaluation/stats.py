"""Bootstrap uncertainty of per-example scores: 95% CIs of a mean, of a mean over tasks, and of paired differences.

Percentile bootstrap, seeded (the same scores give the same interval); intervals are in the scores' units.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95


def stratified_bootstrap_ci(groups: Sequence[Sequence[float]], resamples: int = RESAMPLES, seed: int = 0,
                            level: float = LEVEL) -> tuple[float, float]:
    """CI of the mean over groups (tasks) of each group's mean score: each group's items resampled on their own."""
    if not groups or not all(len(g) for g in groups):
        raise ValueError("a bootstrap needs at least one score in every group")
    rng = np.random.default_rng(seed)
    means = np.zeros(resamples)
    for group in groups:
        scores = np.asarray(group, dtype=float)
        means += scores[rng.integers(0, len(scores), size=(resamples, len(scores)))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means / len(groups), [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(scores: Sequence[float], resamples: int = RESAMPLES, seed: int = 0,
                 level: float = LEVEL) -> tuple[float, float]:
    """CI of the mean of per-example scores."""
    return stratified_bootstrap_ci([scores], resamples, seed, level)


def differences(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Per-item `a - b` of two methods' scores on the same items, in the same order."""
    if len(a) != len(b):
        raise ValueError(f"paired scores differ in length: {len(a)} and {len(b)}")
    return [x - y for x, y in zip(a, b)]


def paired_bootstrap_ci(a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES, seed: int = 0,
                        level: float = LEVEL) -> tuple[float, float]:
    """CI of mean(a) - mean(b) on the same items, resampling item indices jointly (the CI of the mean difference)."""
    return bootstrap_ci(differences(a, b), resamples, seed, level)


def _scores_by_id(rows: list[dict]) -> dict:
    """`id` -> `score` of prediction rows, in their order; an id twice is an error."""
    out = {}
    for row in rows:
        if row["id"] in out:
            raise ValueError(f"item {row['id']!r} occurs twice")
        out[row["id"]] = row["score"]
    return out


def pair_by_id(rows_a: list[dict], rows_b: list[dict]) -> tuple[list[float], list[float]]:
    """The `score`s of the items (`id`) both prediction lists hold, in the order of `rows_a`."""
    a, b = _scores_by_id(rows_a), _scores_by_id(rows_b)
    common = [key for key in a if key in b]
    return [a[key] for key in common], [b[key] for key in common]
