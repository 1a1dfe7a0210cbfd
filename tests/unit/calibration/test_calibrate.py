"""Calibration scores held-out images through the edge runtime and writes thresholds atomically."""

import shutil

import numpy as np
import pytest
import yaml

from calibration.calibrate import CalibrationError, calibrate
from edge.model.bundle import load_bundle
from edge.model.imageio import read_image
from edge.model.inspector import Inspector


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    return shutil.copytree(tiny_bundle, tmp_path / "bundle")


def recorded(bundle_dir, key):
    return yaml.safe_load((bundle_dir / "bundle.yaml").read_text())["training"][key]


def test_default_quantile_threshold_is_the_top_held_out_score_from_the_edge_runtime(bundle_copy):
    thresholds = calibrate(bundle_copy, target_frr=0.0)
    validation = recorded(bundle_copy, "validation_images")
    inspector = Inspector(load_bundle(bundle_copy))
    scores = [inspector.run(read_image(p)).score for p in validation]
    assert thresholds["image"] == pytest.approx(max(scores), rel=1e-6)
    assert thresholds["calibration"]["n_good"] == len(validation)
    assert load_bundle(bundle_copy).thresholds.image == pytest.approx(thresholds["image"])


def test_training_images_are_excluded_by_content_even_under_another_name(bundle_copy, tiny_run, tmp_path):
    train = yaml.safe_load((tiny_run / "run.yaml").read_text())["train_images"]
    validation = recorded(bundle_copy, "validation_images")
    good = tmp_path / "good"
    good.mkdir()
    for index, path in enumerate(train[:3]):
        shutil.copy(path, good / f"renamed_{index}.png")
    for path in validation[:2]:
        shutil.copy(path, good)
    thresholds = calibrate(bundle_copy, good_dir=good)
    assert thresholds["calibration"]["excluded_training_images"] == 3
    assert thresholds["calibration"]["n_good"] == 2


def test_only_training_images_is_refused(bundle_copy, tiny_run, tmp_path):
    train = yaml.safe_load((tiny_run / "run.yaml").read_text())["train_images"]
    good = tmp_path / "good"
    good.mkdir()
    for path in train[:2]:
        shutil.copy(path, good)
    before = (bundle_copy / "bundle.yaml").read_bytes()
    with pytest.raises(CalibrationError, match="no held-out good images"):
        calibrate(bundle_copy, good_dir=good)
    assert (bundle_copy / "bundle.yaml").read_bytes() == before


def test_unreadable_good_image_is_skipped_and_recorded(bundle_copy, tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    for path in recorded(bundle_copy, "validation_images")[:2]:
        shutil.copy(path, good)
    (good / "corrupt.png").write_bytes(b"\x89PNG broken")
    thresholds = calibrate(bundle_copy, good_dir=good)
    assert thresholds["calibration"]["n_good"] == 2
    assert [p.endswith("corrupt.png") for p in thresholds["calibration"]["skipped_unreadable"]] == [True]


def test_f1_strategy_with_defects_separates_them(bundle_copy, bottle):
    thresholds = calibrate(bundle_copy, defects_dir=bottle / "test" / "broken_large", strategy="f1")
    assert thresholds["strategy"] == "f1"
    assert thresholds["calibration"]["n_defects"] == 20
    assert np.isfinite(thresholds["image"]) and thresholds["image"] > 0
    assert thresholds["params"]["f1_on_calibration_set"] > 0.8
