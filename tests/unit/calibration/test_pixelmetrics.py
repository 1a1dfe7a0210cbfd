"""Pixel AUROC and AUPRO: the published definition on hand-computed cases, and the binned figure against it."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.pixelmetrics import FPR_LIMIT, PixelHistogram, area_to_limit, exact_curves


def both(maps, masks, bins=4096):
    """Exact curves, and binned ones over the maps' range."""
    histogram = PixelHistogram(min(m.min() for m in maps), max(m.max() for m in maps), bins)
    for scores, mask in zip(maps, masks, strict=True):
        histogram.add(np.asarray(scores, float), np.asarray(mask, bool))
    return exact_curves(maps, masks), histogram.curves()


# Two defect regions and ten defect-free pixels in three images (worked out by hand in the tests).
# Image A: one region of two pixels touching only at a corner (one region under 8-connectivity).
MAP_A = np.array([[0.9, 0.1, 0.2], [0.3, 0.6, 0.4]])
MASK_A = np.array([[1, 0, 0], [0, 1, 0]], bool)
MAP_B = np.array([[0.5, 0.05], [0.15, 0.25]])  # a good image
MASK_B = np.zeros((2, 2), bool)
MAP_C = np.array([[0.7, 0.35], [0.45, 0.02]])
MASK_C = np.array([[1, 1], [0, 0]], bool)
HAND = ([MAP_A, MAP_B, MAP_C], [MASK_A, MASK_B, MASK_C])


def test_aupro_by_hand_with_regions_connected_through_a_corner():
    # Descending: 0.9 (A), 0.7 (C), 0.6 (A) cover half of each region in turn: PRO 0.25, 0.5, 0.75 at
    # FPR 0; then three defect-free pixels (0.5, 0.45, 0.4) take the FPR to 0.3 at PRO 0.75; the
    # rest comes after the limit. Area 0.3 * 0.75, divided by 0.3. (4-connectivity: 3 regions, 0.833.)
    exact, binned = both(*HAND)
    assert exact.n_regions == 2 and exact.n_good_pixels == 10 and exact.n_defect_pixels == 4
    assert exact.aupro == pytest.approx(0.75, abs=1e-12)
    assert binned.aupro == pytest.approx(0.75, abs=1e-12)


def test_pixel_auroc_by_hand():
    # Three defect pixels above all ten defect-free ones, the fourth (0.35) above seven: 37 / 40.
    exact, binned = both(*HAND)
    assert exact.auroc == pytest.approx(37 / 40, abs=1e-12)
    assert binned.auroc == pytest.approx(37 / 40, abs=1e-12)


def test_aupro_when_the_fpr_jumps_from_zero_past_the_limit_in_one_step():
    # Eight tied defect-free pixels: the FPR goes from 0 straight to 1, never taking a value up to
    # 0.3. Before the jump PRO is 0.5 (two of the region's four pixels); the segment to (1, 0.5) is
    # cut at 0.3 by interpolation: area 0.3 * 0.5, AUPRO 0.5. Normalising by the last FPR reached
    # below the limit (here 0) instead of by the limit has no answer at all.
    maps = [np.full((2, 4), 0.5), np.array([[0.9, 0.8], [0.1, 0.1]])]
    masks = [np.zeros((2, 4), bool), np.ones((2, 2), bool)]
    exact, binned = both(maps, masks)
    assert exact.fpr[(exact.fpr > 0) & (exact.fpr <= FPR_LIMIT)].size == 0
    assert exact.aupro == pytest.approx(0.5, abs=1e-12)
    assert binned.aupro == pytest.approx(0.5, abs=1e-12)
    assert exact.auroc == pytest.approx(16 / 32, abs=1e-12)


def test_aupro_stays_within_one_when_every_region_is_found_before_any_false_positive():
    maps = [np.array([[0.9, 0.8, 0.1, 0.2]]), np.array([[0.95, 0.3, 0.05, 0.15]])]
    masks = [np.array([[1, 1, 0, 0]], bool), np.array([[1, 0, 0, 0]], bool)]
    exact, binned = both(maps, masks)
    assert exact.aupro == pytest.approx(1.0, abs=1e-12) and binned.aupro == pytest.approx(1.0, abs=1e-12)
    assert exact.auroc == 1.0


def test_empty_masks_give_no_regions_and_undefined_figures():
    maps = [np.array([[0.1, 0.5]]), np.array([[0.3, 0.2]])]
    masks = [np.zeros((1, 2), bool), np.zeros((1, 2), bool)]
    exact, binned = both(maps, masks)
    for curves in (exact, binned):
        assert curves.n_regions == 0 and curves.n_good_pixels == 4
        assert np.isnan(curves.aupro) and np.isnan(curves.auroc)


def test_a_defect_image_with_an_empty_mask_counts_as_defect_free_pixels_only():
    with_empty, _ = both([*HAND[0], np.array([[0.01, 0.03]])], [*HAND[1], np.zeros((1, 2), bool)])
    # Two more defect-free pixels, both below every defect pixel: AUROC (37 + 2 * 4) / (4 * 12).
    assert with_empty.n_good_pixels == 12 and with_empty.n_regions == 2
    assert with_empty.auroc == pytest.approx((37 + 8) / 48, abs=1e-12)


def test_area_to_limit_interpolates_at_the_cut_and_ignores_vertical_steps():
    x, y = np.array([0.0, 0.0, 0.2, 0.5, 1.0]), np.array([0.0, 0.4, 0.4, 1.0, 1.0])
    # 0.2 * 0.4, then from (0.2, 0.4) to the cut at 0.3 (y = 0.6): 0.1 * 0.5.
    assert area_to_limit(x, y, 0.3) == pytest.approx(0.08 + 0.05)
    assert area_to_limit(x, y, 1.0) == pytest.approx(0.08 + 0.3 * 0.7 + 0.5)
    with pytest.raises(ValueError, match="outside"):
        area_to_limit(x, y, 1.5)


def blobs(rng, count, size=48):
    """Maps with smooth noise and masks with several 8-connected defects, as a detector would see them."""
    maps, masks = [], []
    yy, xx = np.mgrid[:size, :size]
    for index in range(count):
        score = rng.normal(1.0, 0.15, (size, size))
        mask = np.zeros((size, size), bool)
        for _ in range(index % 3):  # every third image is good
            cy, cx, r = *rng.integers(6, size - 6, 2), rng.integers(2, 6)
            blob = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            mask |= blob
            score[blob] += rng.uniform(0.1, 1.0)
        maps.append(score)
        masks.append(mask)
    return maps, masks


@pytest.mark.parametrize("seed", range(3))
def test_binned_figures_agree_with_the_exact_computation(seed):
    maps, masks = blobs(np.random.default_rng(seed), 24)
    exact, binned = both(maps, masks, bins=65536)
    assert exact.n_regions > 10
    assert binned.auroc == pytest.approx(exact.auroc, abs=1e-4)
    assert binned.aupro == pytest.approx(exact.aupro, abs=1e-4)
    assert 0.0 < exact.aupro < 1.0


def test_histograms_merge_to_the_histogram_of_all_images():
    maps, masks = blobs(np.random.default_rng(7), 9)
    lo, hi = min(m.min() for m in maps), max(m.max() for m in maps)
    whole, first, second = (PixelHistogram(lo, hi, 1024) for _ in range(3))
    for index, (scores, mask) in enumerate(zip(maps, masks, strict=True)):
        whole.add(scores, mask)
        (first if index < 4 else second).add(scores, mask)
    merged = (first + second).curves()
    assert merged.aupro == pytest.approx(whole.curves().aupro, abs=1e-12)
    assert merged.auroc == pytest.approx(whole.curves().auroc, abs=1e-12)


def test_pixel_auroc_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    maps, masks = blobs(np.random.default_rng(3), 12)
    exact, binned = both(maps, masks, bins=65536)
    labels = np.concatenate([m.ravel() for m in masks])
    scores = np.concatenate([m.ravel() for m in maps])
    reference = metrics.roc_auc_score(labels, scores)
    assert exact.auroc == pytest.approx(reference, abs=1e-12)
    assert binned.auroc == pytest.approx(reference, abs=1e-4)
