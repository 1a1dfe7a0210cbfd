"""Threshold strategies set what they promise on the scores they are given."""

import numpy as np
import pytest

from calibration.thresholds import image_threshold


def test_quantile_strategy_bounds_the_false_reject_rate_on_calibration_scores():
    good = np.random.default_rng(0).normal(10, 1, 1000)
    threshold, params = image_threshold("quantile", good, target_frr=0.05)
    assert np.mean(good > threshold) <= 0.05
    assert np.mean(good > threshold) > 0.04  # not needlessly loose
    assert params == {"target_false_reject_rate": 0.05}


def test_quantile_with_zero_target_is_the_largest_good_score():
    good = np.array([1.0, 3.0, 2.0])
    assert image_threshold("quantile", good, target_frr=0.0)[0] == 3.0


def test_mean_std_strategy():
    good = np.array([1.0, 2.0, 3.0])
    threshold, params = image_threshold("mean_std", good, k=2.0)
    assert threshold == pytest.approx(2.0 + 2.0 * 1.0)
    assert params["k"] == 2.0


def test_f1_strategy_needs_defects_and_separates_them():
    with pytest.raises(ValueError, match="needs labelled defect"):
        image_threshold("f1", np.array([1.0, 2.0]))
    threshold, _ = image_threshold("f1", np.array([1.0, 2.0]), np.array([4.0, 5.0]))
    assert 2.0 < threshold < 4.0


def test_unknown_strategy_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown strategy 'median'"):
        image_threshold("median", np.array([1.0]))
