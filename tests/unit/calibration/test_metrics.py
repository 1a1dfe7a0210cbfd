"""ROC AUC and decision rates against brute-force definitions."""

import itertools

import numpy as np
import pytest

from calibration.metrics import decision_rates, f1_optimal_threshold, roc_auc


def brute_force_auc(labels, scores):
    pos = [s for s, l in zip(scores, labels) if l]
    neg = [s for s, l in zip(scores, labels) if not l]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_pairwise_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(200) < 0.3
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounding creates many ties
    assert roc_auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores), abs=1e-12)


def test_roc_auc_is_one_for_perfect_separation_and_half_for_constant_scores():
    labels = np.array([0, 0, 1, 1], bool)
    assert roc_auc(labels, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert roc_auc(labels, np.ones(4)) == 0.5


def test_roc_auc_is_nan_without_both_classes():
    assert np.isnan(roc_auc(np.zeros(3, bool), np.arange(3.0)))


def test_decision_rates_count_rejects_and_escapes():
    labels = np.array([0, 0, 0, 0, 1, 1], bool)
    scores = np.array([0.1, 0.2, 0.9, 0.3, 0.8, 0.25])
    rates = decision_rates(labels, scores, threshold=0.5)
    assert rates["false_reject_rate"] == pytest.approx(1 / 4)
    assert rates["escape_rate"] == pytest.approx(1 / 2)
    assert rates["f1"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))


def test_f1_optimal_threshold_separates_separable_scores_midway():
    labels = np.array([0, 0, 0, 1, 1], bool)
    scores = np.array([1.0, 2.0, 3.0, 5.0, 6.0])
    threshold, f1 = f1_optimal_threshold(labels, scores)
    assert threshold == pytest.approx(4.0)
    assert f1 == 1.0
