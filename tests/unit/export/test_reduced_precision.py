"""FP16 and INT8 rows of the formats table: IR files hashed, scores near FP32, bad quantisation refused."""

import cv2
import numpy as np
import pytest

from edge.model.bundle import load_bundle, sha256_file
from edge.model.formats import GraphFormat, Precision
from edge.model.imageio import read_image
from edge.model.inspector import Inspector
from export.build import ExportError, ReducedPrecisionOptions, build_bundle

FP16_SCORE_RTOL = 1e-2  # FP16 weights, FP32 compute: measured 0.2 % on bottle


def test_openvino_fp16_bundle_lists_xml_and_bin_and_stays_near_fp32(tiny_run, tiny_bundle, bottle, tmp_path):
    out = build_bundle(tiny_run, tmp_path / "fp16", "openvino", "fp16")
    bundle = load_bundle(out, require_thresholds=False)
    manifest = bundle.manifest
    assert (manifest.graph.format, manifest.graph.precision) == (GraphFormat.OPENVINO, Precision.FP16)
    assert set(manifest.files) == {"model.xml", "model.bin", "train_images.sha256", "selftest.png"}
    assert manifest.bundle_id.startswith("patchcore-mobilenet_v2-fp16-")
    # The probe's recorded score is the FP16 graph's own, so the edge's self-test holds it to that graph.
    from edge.model.inspector import Inspector
    from edge.model.selftest import run_selftest

    selftest = run_selftest(bundle, Inspector(bundle))
    assert selftest is not None and selftest["abs_diff"] <= selftest["limit"]
    for name, entry in manifest.files.items():
        assert sha256_file(out / name) == entry.sha256
    assert manifest.export.accuracy_guard.passed is True
    assert manifest.export.derived is not None and manifest.export.quantization is None
    fp32 = Inspector(load_bundle(tiny_bundle), threads=1)
    fp16 = Inspector(bundle, threads=1)
    assert fp16.backend.name == "openvino"
    for path in sorted((bottle / "test" / "broken_small").glob("*.png"))[:3]:
        image = read_image(path)
        assert fp16.run(image).score == pytest.approx(fp32.run(image).score, rel=FP16_SCORE_RTOL)


def test_guard_refuses_int8_calibrated_on_unrepresentative_images_and_force_records_it(tiny_run, tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    cv2.imwrite(str(calib / "black.png"), np.zeros((256, 256, 3), np.uint8))
    cv2.imwrite(str(calib / "grey.png"), np.full((256, 256, 3), 128, np.uint8))
    bad = ReducedPrecisionOptions(calib_dir=calib)
    with pytest.raises(ExportError, match="accuracy guard refused the openvino/int8 graph"):
        build_bundle(tiny_run, tmp_path / "bad", "openvino", "int8", reduced=bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib"]
    forced = build_bundle(tiny_run, tmp_path / "forced", "openvino", "int8",
                          reduced=ReducedPrecisionOptions(calib_dir=calib, force=True))
    record = load_bundle(forced, require_thresholds=False).manifest.export
    assert record.accuracy_guard.passed is False and record.accuracy_guard.forced is True
    assert record.calibration.count == 2 and record.calibration.source == str(calib.resolve())
    assert record.quantization is not None and record.quantization.fp32_ops > 0
