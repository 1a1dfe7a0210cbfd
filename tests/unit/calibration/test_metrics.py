"""Decision rates, the thresholds worth asking about and the image curves, against hand counts and scikit-learn."""

import numpy as np
import pytest

from calibration.metrics import (
    decision_rates,
    f1_optimal_threshold,
    pr_points,
    roc_points,
    what_if,
    zero_escape_threshold,
)
from export.heldout import roc_auc


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


def test_zero_escape_threshold_is_the_highest_that_rejects_every_defect():
    labels = np.array([0, 0, 1, 1, 0], bool)
    scores = np.array([1.0, 2.5, 2.0, 3.0, 1.5])
    threshold = zero_escape_threshold(labels, scores)
    assert threshold < 2.0 and np.nextafter(threshold, np.inf) == 2.0
    assert decision_rates(labels, scores, threshold)["escape_rate"] == 0.0
    assert decision_rates(labels, scores, 2.0)["escape_rate"] == 0.5


def test_what_if_counts_rejects_and_escapes_at_each_threshold_in_order():
    labels = np.array([0, 0, 0, 1, 1], bool)
    scores = np.array([1.0, 2.0, 3.0, 2.5, 4.0])
    rows = what_if(labels, scores, {"high": 3.5, "low": 0.5, "mid": 2.2})
    assert [r["name"] for r in rows] == ["low", "mid", "high"]
    assert [(r["false_rejects"], r["escapes"]) for r in rows] == [(3, 0), (1, 0), (0, 1)]
    assert rows[1]["false_reject_rate"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("seed", range(3))
def test_image_auroc_roc_and_pr_points_match_scikit_learn(seed):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    labels = rng.random(150) < 0.4
    scores = np.round(rng.normal(labels * 1.2, 1.0), 1)  # ties
    assert roc_auc(labels, scores) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr = roc_points(labels, scores)
    ref_fpr, ref_tpr, _ = metrics.roc_curve(labels, scores, drop_intermediate=False)
    assert np.allclose(fpr, ref_fpr) and np.allclose(tpr, ref_tpr)
    recall, precision = pr_points(labels, scores)
    ref_precision, ref_recall, _ = metrics.precision_recall_curve(labels, scores)
    assert np.allclose(recall, ref_recall[::-1][1:]) and np.allclose(precision, ref_precision[::-1][1:])
