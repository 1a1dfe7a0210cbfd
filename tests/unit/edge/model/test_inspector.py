"""Decision, normalisation and region extraction of the single inference path."""

import numpy as np
import pytest

from edge.model.bundle import load_bundle
from edge.model.imageio import read_image
from edge.model.inspector import Inspector, find_regions, normalize


def test_normalisation_puts_the_threshold_at_one_half():
    assert normalize(2.0, 2.0) == pytest.approx(0.5)
    assert normalize(0.0, 2.0) == 0.0
    assert normalize(10.0, 2.0) == 1.0


def test_regions_are_scaled_to_the_original_image_and_sorted_by_peak():
    anomaly_map = np.zeros((64, 64), np.float32)
    anomaly_map[10:20, 30:40] = 5.0
    anomaly_map[50:52, 2:4] = 9.0
    regions = find_regions(anomaly_map, 1.0, (256, 128, 3))
    assert [r.peak for r in regions] == [9.0, 5.0]
    big = regions[1]
    assert (big.x, big.y, big.w, big.h) == (60, 40, 20, 40)
    assert big.area == 100 * 2 * 4
    assert find_regions(anomaly_map, 10.0, (64, 64)) == []


def test_inspector_decides_with_the_calibrated_threshold_and_flags_a_defect(tiny_bundle, bottle):
    bundle = load_bundle(tiny_bundle)
    inspector = Inspector(bundle, threads=1)
    good = inspector.inspect(read_image(sorted((bottle / "test" / "good").glob("*.png"))[0]))
    defect = inspector.inspect(read_image(sorted((bottle / "test" / "broken_large").glob("*.png"))[0]))
    assert defect.score > good.score
    for result in (good, defect):
        assert result.verdict == ("NG" if result.score > bundle.thresholds.image else "OK")
        assert result.normalized_score == pytest.approx(float(normalize(result.score, bundle.thresholds.image)))
        assert (result.verdict == "NG") == bool(result.regions)  # pixel threshold equals image threshold
        assert set(result.timings_ms) == {"preprocess", "inference", "postprocess"}
    assert defect.verdict == "NG"
    assert all(0 <= r.x < 512 and 0 <= r.y < 512 for r in defect.regions)
    assert defect.map_png()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grayscale_frames_are_replicated_to_three_channels(tiny_bundle, bottle):
    inspector = Inspector(load_bundle(tiny_bundle), threads=1)
    image = read_image(sorted((bottle / "test" / "broken_large").glob("*.png"))[0])
    gray = image.mean(axis=2).astype(np.uint8)
    replicated = np.repeat(gray[:, :, None], 3, axis=2)  # the BGR image whose three channels are that gray
    from_gray, from_bgr = inspector.run(gray), inspector.run(replicated)
    assert np.isfinite(from_gray.score) and from_gray.score > 0
    assert from_gray.score == pytest.approx(from_bgr.score, rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(from_gray.anomaly_map, from_bgr.anomaly_map, rtol=1e-6, atol=1e-6)


def test_a_grayscale_frame_on_a_colour_trained_bundle_is_warned_about_once(caplog):
    import logging
    from pathlib import Path

    from edge.model.selftest import run_selftest

    demo = Path(__file__).resolve().parents[4] / "edge" / "demo" / "bundle"
    bundle = load_bundle(demo)
    inspector = Inspector(bundle)
    run_selftest(bundle, inspector)  # learns the probe's channels: colour
    assert inspector.trained_channels == 3
    colour = read_image(demo / "selftest.png")
    gray = colour[:, :, 1].copy()
    with caplog.at_level(logging.WARNING, logger="edge.model.inspector"):
        inspector.inspect(colour)
        inspector.inspect(gray)
        inspector.inspect(gray)
    (record,) = [r for r in caplog.records if r.name == "edge.model.inspector"]
    assert "made from colour images but this frame is grayscale (256x256)" in record.getMessage()
