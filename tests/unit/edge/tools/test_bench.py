"""``edge-inspect bench`` measures real frames through the daemon's path, optionally at the model's input size."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
from click.testing import CliRunner

from edge.tools.bench import bench, load_frames, resize_frames


def test_frame_size_resizes_and_reencodes_every_source_image_once(bottle):
    encoded = load_frames(bottle / "test" / "broken_small")
    resized = resize_frames(encoded, 64)
    assert [name for name, _ in resized] == [name for name, _ in encoded]
    for _, data in resized:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert image.shape[:2] == (64, 64)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_at_a_frame_size_reports_every_stage_the_map_size_and_the_bundle_size(tiny_bundle, bottle, tmp_path):
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")  # OpenVINO caches inside it: not the shared one
    report_path = tmp_path / "bench.json"
    result = CliRunner().invoke(bench, [
        "--bundle", str(bundle), "--backend", "onnxruntime", "--bundle", str(bundle), "--backend", "openvino",
        "--source", str(bottle / "test" / "broken_small"), "--frame-size", "128", "--frames", "4", "--warmup", "1",
        "--threads", "1", "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["frame_size"] == 128
    first, second = report["runs"]
    assert first["settings"]["backend"] == "onnxruntime" and second["settings"]["backend"] == "openvino"
    for run in report["runs"]:
        assert set(run["latency_ms"]) == {"decode", "preprocess", "inference", "postprocess", "publish", "end_to_end"}
        assert run["map"] == report["runs"][0]["map"] and run["bundle_mb"] > 0
    assert "speedup_vs_first_p50" in second
    assert "speed-up" in result.output
