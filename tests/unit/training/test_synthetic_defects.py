"""Synthetic defects change the image where their mask says, and nowhere else, reproducibly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.model.imageio import read_image
from training.synthetic_defects import DEFECT_KINDS, make_defect, perlin_noise


@pytest.mark.parametrize("kind", DEFECT_KINDS)
@pytest.mark.parametrize("dataset", ["bottle", "magnetic_tile"])
def test_each_defect_is_masked_sized_and_confined(kind: str, dataset: str, request: pytest.FixtureRequest) -> None:
    folder: Path = request.getfixturevalue(dataset) / "train" / "good"
    first, second = (read_image(p) for p in sorted(folder.iterdir())[:2])
    rng = np.random.default_rng(0)
    for _ in range(5):
        defect, mask = make_defect(kind, first, second, rng)
        assert defect.shape == first.shape and defect.dtype == np.uint8 and mask.dtype == np.uint8
        area = (mask > 0).mean()
        assert 0.0002 < area < 0.06, area
        changed = np.abs(defect.astype(int) - first.astype(int))
        changed = changed.max(axis=2) if changed.ndim == 3 else changed
        outside = cv2.dilate(mask, np.ones((9, 9), np.uint8)) == 0  # feathering reaches a few pixels out
        assert changed[outside].max() <= 1
        assert changed[mask > 0].mean() > 3


def test_defects_and_noise_are_reproducible_for_a_seed() -> None:
    image = np.random.default_rng(1).integers(60, 200, (120, 160), dtype=np.uint8)
    for kind in DEFECT_KINDS:
        a = make_defect(kind, image, image, np.random.default_rng(5))
        b = make_defect(kind, image, image, np.random.default_rng(5))
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    noise = perlin_noise((64, 96), (3, 4), np.random.default_rng(2))
    assert noise.shape == (64, 96) and -1.5 < noise.min() < 0 < noise.max() < 1.5
