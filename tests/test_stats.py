"""Bootstrap CIs on hand-made scores: coverage of the mean, degenerate cases, determinism, pairing by id."""
from __future__ import annotations

import random

import pytest

from smart.evaluation.stats import bootstrap_ci, differences, pair_by_id, paired_bootstrap_ci, stratified_bootstrap_ci

_RNG = random.Random(0)
SCORES = [float(_RNG.random() < 0.6) for _ in range(50)]


def test_ci_contains_the_mean_and_narrows_with_more_items():
    mean = sum(SCORES) / len(SCORES)
    low, high = bootstrap_ci(SCORES)
    assert 0.0 <= low < mean < high <= 1.0
    assert 0.1 < high - low < 0.4  # about 4 standard errors of a rate near 50% on 50 items (0.28)
    wide_low, wide_high = bootstrap_ci(SCORES[:10])
    assert wide_high - wide_low > high - low


def test_ci_is_in_the_scores_units():
    low, high = bootstrap_ci([100 * s for s in SCORES])
    assert (low, high) == pytest.approx(tuple(100 * x for x in bootstrap_ci(SCORES)))


def test_ci_of_a_constant_is_degenerate():
    assert bootstrap_ci([0.58] * 50) == pytest.approx((0.58, 0.58))
    assert bootstrap_ci([1.0]) == (1.0, 1.0)


def test_seeded_and_deterministic():
    assert bootstrap_ci(SCORES) == bootstrap_ci(SCORES)
    assert bootstrap_ci(SCORES, seed=1) == bootstrap_ci(SCORES, seed=1) != bootstrap_ci(SCORES, seed=0)
    low, high = bootstrap_ci(SCORES, resamples=4000, level=0.5)
    assert bootstrap_ci(SCORES)[0] < low < high < bootstrap_ci(SCORES)[1]


def test_paired_difference_of_always_right_and_always_wrong():
    assert paired_bootstrap_ci([100.0] * 20, [0.0] * 20) == (100.0, 100.0)
    assert paired_bootstrap_ci([0.0] * 20, [100.0] * 20) == (-100.0, -100.0)
    assert paired_bootstrap_ci(SCORES, SCORES) == (0.0, 0.0)  # the same answers: no difference at all


def test_paired_resamples_items_jointly():
    # b is a plus a constant: joint resampling keeps the difference exact, independent resampling would not
    a = SCORES
    b = [s + 0.25 for s in a]
    assert paired_bootstrap_ci(a, b) == pytest.approx((-0.25, -0.25))
    with pytest.raises(ValueError, match="length"):
        differences([1.0], [1.0, 0.0])


def test_stratified_ci_averages_the_task_means():
    # a 10-item task always right and a 2-item task always wrong: the mean over tasks is 50, not 10/12
    assert stratified_bootstrap_ci([[1.0] * 10, [0.0] * 2]) == pytest.approx((0.5, 0.5))
    low, high = stratified_bootstrap_ci([SCORES, [1.0] * 5])
    mean = (sum(SCORES) / len(SCORES) + 1) / 2
    assert low < mean < high and high - low == pytest.approx((bootstrap_ci(SCORES)[1] - bootstrap_ci(SCORES)[0]) / 2,
                                                             abs=0.05)
    with pytest.raises(ValueError):
        stratified_bootstrap_ci([SCORES, []])


def test_pair_by_id_matches_items_whatever_their_order():
    a = [{"id": "q1", "score": 1.0}, {"id": "q2", "score": 0.0}, {"id": "q3", "score": 1.0}]
    b = [{"id": "q3", "score": 0.0}, {"id": "q4", "score": 1.0}, {"id": "q1", "score": 1.0}]
    assert pair_by_id(a, b) == ([1.0, 1.0], [1.0, 0.0])  # q1, q3 in a's order; q2 and q4 unpaired
    assert pair_by_id(a, []) == ([], [])
    with pytest.raises(ValueError, match="q1"):
        pair_by_id(a, b + [{"id": "q1", "score": 0.0}])
