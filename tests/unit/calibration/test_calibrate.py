"""Calibration scores held-out images through the edge runtime and writes thresholds atomically."""

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from calibration.calibrate import CalibrationError, calibrate, set_threshold
from calibration.cli import calibrate_main
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
    thresholds = calibrate(bundle_copy, good_dir=good, allow_few=True)
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
    thresholds = calibrate(bundle_copy, good_dir=good, allow_few=True)
    assert thresholds["calibration"]["n_good"] == 2
    assert [p.endswith("corrupt.png") for p in thresholds["calibration"]["skipped_unreadable"]] == [True]


def test_f1_strategy_with_defects_separates_them(bundle_copy, bottle):
    thresholds = calibrate(bundle_copy, defects_dir=bottle / "test" / "broken_large", strategy="f1")
    assert thresholds["strategy"] == "f1"
    assert thresholds["calibration"]["n_defects"] == 20
    assert np.isfinite(thresholds["image"]) and thresholds["image"] > 0
    assert thresholds["params"]["f1_on_calibration_set"] > 0.8


def good_folder(bundle_copy, tmp_path, n: int):
    good = tmp_path / "good"
    good.mkdir(parents=True)
    for path in recorded(bundle_copy, "validation_images")[:n]:
        shutil.copy(path, good)
    return good


def test_too_few_images_for_the_target_are_refused_unless_allowed_and_then_recorded(bundle_copy, tmp_path):
    good = good_folder(bundle_copy, tmp_path, 1)
    before = (bundle_copy / "bundle.yaml").read_bytes()
    with pytest.raises(CalibrationError, match=r"1 usable held-out good image\(s\), but a false-reject target of "
                       r"0.01 needs at least 100 \(1/target.*--allow-few"):
        calibrate(bundle_copy, good_dir=good)
    assert (bundle_copy / "bundle.yaml").read_bytes() == before
    thresholds = calibrate(bundle_copy, good_dir=good, allow_few=True)
    assert thresholds["calibration"]["allow_few"] is True and thresholds["calibration"]["n_good"] == 1
    assert load_bundle(bundle_copy).thresholds.calibration.allow_few is True
    calibrate(bundle_copy, good_dir=good_folder(bundle_copy, tmp_path / "more", 12), target_frr=0.1)
    assert load_bundle(bundle_copy).thresholds.calibration.allow_few is None  # enough images: nothing to record


def test_an_image_of_a_wildly_different_size_is_listed_and_left_out(bundle_copy, tmp_path):
    good = good_folder(bundle_copy, tmp_path, 12)
    first = min(good.iterdir())
    cv2.imwrite(str(good / "thumbnail.png"), cv2.resize(read_image(first), (4, 4)))
    thresholds = calibrate(bundle_copy, good_dir=good, target_frr=0.1)
    assert thresholds["calibration"]["n_good"] == 12
    assert [Path(p).name for p in thresholds["calibration"]["skipped_size"]] == ["thumbnail.png"]
    assert "size 4x4" in thresholds["left_out"][str(good / "thumbnail.png")]


def test_a_codec_message_goes_into_the_reason_not_through_the_progress_bar(bundle_copy, tmp_path, capfd):
    good = good_folder(bundle_copy, tmp_path, 12)
    data = min(good.iterdir()).read_bytes()
    (good / "truncated.png").write_bytes(data[: len(data) // 2])
    thresholds = calibrate(bundle_copy, good_dir=good, target_frr=0.1)
    reason = thresholds["left_out"][str(good / "truncated.png")]
    assert "libpng error" in reason
    assert "libpng" not in capfd.readouterr().err


def test_set_threshold_records_manual_who_when_and_the_false_reject_rate_it_implies(bundle_copy, tmp_path):
    good = good_folder(bundle_copy, tmp_path, 12)
    inspector = Inspector(load_bundle(bundle_copy))
    scores = sorted(inspector.run(read_image(p)).score for p in good.iterdir())
    value = (scores[-2] + scores[-3]) / 2  # two of the twelve above it
    result = set_threshold(bundle_copy, value, good_dir=good, user="tester")
    thresholds = load_bundle(bundle_copy).thresholds
    assert (thresholds.strategy, thresholds.pixel_strategy, thresholds.image, thresholds.pixel) == \
        ("manual", "same_as_image", value, value)
    assert thresholds.params["set_by"] == "tester" and thresholds.params["set_at"]
    assert thresholds.params["previous"]["strategy"] == "quantile"
    assert thresholds.calibration.false_reject_rate == pytest.approx(2 / 12)
    assert result["calibration"]["n_good"] == 12


def test_set_threshold_with_its_own_pixel_threshold_says_so_and_loads(bundle_copy, tmp_path):
    good = good_folder(bundle_copy, tmp_path, 2)
    set_threshold(bundle_copy, 2.0, pixel=2.5, good_dir=good)
    thresholds = load_bundle(bundle_copy).thresholds
    assert (thresholds.image, thresholds.pixel, thresholds.pixel_strategy) == (2.0, 2.5, "manual")


def test_edge_calibrate_set_threshold_prints_the_implied_false_reject_rate(bundle_copy, tmp_path):
    good = good_folder(bundle_copy, tmp_path, 4)
    result = CliRunner().invoke(calibrate_main, [str(bundle_copy), "--good", str(good), "--set-threshold", "1e9"])
    assert result.exit_code == 0, result.output
    assert "image threshold 1000000000.0000 (set by hand): false-reject rate 0.000 on 4 held-out good images" \
        in result.output
