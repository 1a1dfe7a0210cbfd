"""Threshold strategies set what they promise on the scores they are given."""

import numpy as np
import pytest

from calibration.thresholds import MIN_GOOD_IMAGES, image_threshold, min_good_images, rates_at


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


def test_iqr_strategy_is_q3_plus_k_iqr_and_ignores_one_odd_good_score():
    good = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 100.0])
    q1, q3 = np.quantile(good, [0.25, 0.75])
    threshold, params = image_threshold("iqr", good)
    assert threshold == pytest.approx(q3 + 1.5 * (q3 - q1)) and params["k"] == 1.5
    assert threshold < image_threshold("mean_std", good)[0]  # the outlier inflates the std, not the IQR
    assert image_threshold("iqr", good, k=3.0)[0] == pytest.approx(q3 + 3.0 * (q3 - q1))


@pytest.mark.parametrize(("strategy", "target", "needed"), [
    ("quantile", 0.01, 100), ("quantile", 0.05, 20), ("quantile", 0.5, MIN_GOOD_IMAGES), ("quantile", 0.0, MIN_GOOD_IMAGES),
    ("mean_std", 0.01, MIN_GOOD_IMAGES), ("iqr", 0.01, MIN_GOOD_IMAGES),
])
def test_each_strategy_says_how_many_good_images_it_needs(strategy, target, needed):
    assert min_good_images(strategy, target) == needed


def test_rates_at_a_threshold_count_ng_as_strictly_above_it():
    assert rates_at(2.0, np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 5.0])) == \
        {"false_reject_rate": 0.5, "escape_rate": 0.5}
