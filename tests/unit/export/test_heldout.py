"""The held-out labelled set is read with its labels and masks, and ROC AUC matches its brute-force definition."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from export.heldout import labelled_test_images, roc_auc
from training.synthetic import write_dataset


def brute_force_auc(labels, scores):
    pos = [score for score, defect in zip(scores, labels, strict=True) if defect]
    neg = [score for score, defect in zip(scores, labels, strict=True) if not defect]
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


def test_labelled_test_images_label_by_folder_and_match_masks_by_stem(tmp_path):
    data = write_dataset(tmp_path / "data", n_train=2, n_test_good=2, n_test_per_defect=1, size=64, seed=0)
    items = labelled_test_images(data)
    good = [item for item in items if not item.is_defect]
    defects = [item for item in items if item.is_defect]
    assert len(good) == 2 and all(item.mask is None for item in good)
    assert defects and all(item.mask is not None and item.mask.stem == f"{item.path.stem}_mask" for item in defects)


def test_a_test_set_without_good_images_is_refused(tmp_path):
    (tmp_path / "test" / "crack").mkdir(parents=True)
    assert cv2.imwrite(str(tmp_path / "test" / "crack" / "000.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="no test/good folder"):
        labelled_test_images(tmp_path)
