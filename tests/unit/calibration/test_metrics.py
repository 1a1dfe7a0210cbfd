"""Decision rates and the F1-optimal threshold against hand-counted cases."""

import numpy as np
import pytest

from calibration.metrics import decision_rates, f1_optimal_threshold


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
