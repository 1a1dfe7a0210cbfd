"""A real camera, when ``EDGE_TEST_CTI`` names its GenTL producer: the camera class and the daemon on it.

Simulated producers prove the code paths; only a real device proves the set-up a line uses
(its producer, its node map, its pixel format, its timing). On a box with a camera attached,
``EDGE_TEST_CTI=/opt/vendor/lib/producer.cti pytest tests/integration/test_real_camera.py``
opens the first device the producer lists, sets Width/Height where the camera lets it, grabs a
few frames through :class:`GenTLCamera` and then runs the daemon on it. Without the variable
every test here skips with that reason, under CI too: they are the ``real_camera`` tests, the only
ones allowed to skip there (tests/conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.tools.harness import run_daemon

CTI = os.environ.get("EDGE_TEST_CTI", "")
pytestmark = [
    pytest.mark.real_camera,
    pytest.mark.skipif(not CTI, reason="no real camera: set EDGE_TEST_CTI to the GenTL producer (.cti) of an "
                       "attached camera"),
]
FRAMES = 5
SIZE_LIMIT = (640, 480)  # small enough to be quick on any camera, large enough to be a real image


def _fit(node: Any, limit: int) -> int:
    """The largest value <= ``limit`` the integer node accepts (its min where that is already larger)."""
    low, high, inc = int(node.min), int(node.max), max(int(node.inc), 1)
    return max(low, low + (min(high, limit) - low) // inc * inc)


@pytest.fixture(scope="module")
def size_features() -> dict[str, int]:
    """Width/Height to write on the first device: only those it lets us write (read-only ones are left as they are)."""
    pytest.importorskip("harvesters", reason="needs the 'camera' extra")
    from genicam.genapi import is_writable
    from harvesters.core import Harvester

    if not Path(CTI).is_file():
        pytest.fail(f"EDGE_TEST_CTI={CTI} is not a file")
    harvester = Harvester()
    try:
        harvester.add_file(CTI)
        harvester.update()
        if not harvester.device_info_list:
            pytest.fail(f"EDGE_TEST_CTI={CTI}: the producer lists no device; is the camera connected?")
        acquirer = harvester.create(0)
        try:
            node_map = acquirer.remote_device.node_map
            features = {}
            for name, limit in zip(("Width", "Height"), SIZE_LIMIT, strict=True):
                if node_map.has_node(name) and is_writable(node_map.get_node(name)):
                    features[name] = _fit(node_map.get_node(name), limit)
        finally:
            acquirer.destroy()
    finally:
        harvester.reset()
    return features


def camera_config(features: dict[str, int], **extra: Any) -> dict[str, Any]:
    return {"type": "gentl", "producers": [CTI], "index": 0, "features": features, **extra}


def test_first_device_delivers_frames_of_the_configured_size(size_features):
    from edge.cameras import create_camera
    from edge.cameras.gentl import GenTLCameraConfig

    camera = create_camera(GenTLCameraConfig(**camera_config(size_features, max_frames=FRAMES)))
    camera.open()
    try:
        frames = [camera.grab(5.0) for _ in range(FRAMES)]
    finally:
        camera.close()
    for frame in frames:
        assert frame is not None, "no frame"
        assert frame.error is None, frame.error
        assert frame.image.dtype == np.uint8 and frame.image.ndim in (2, 3)
        assert frame.image.ndim == 2 or frame.image.shape[2] == 3
        if "Width" in size_features:
            assert frame.image.shape[1] == size_features["Width"]
        if "Height" in size_features:
            assert frame.image.shape[0] == size_features["Height"]
    assert [f.frame_id for f in frames] == list(range(1, FRAMES + 1))
    assert camera.stats()["frames"] == FRAMES


def test_daemon_on_the_real_camera_publishes_one_verdict_per_frame(tmp_path, size_features):
    result = run_daemon({"camera": camera_config(size_features, max_frames=FRAMES)}, workdir=tmp_path,
                        deadline_s=120)
    assert result.exit_code == 0, result.log_tail
    verdicts = result.of("verdict")
    assert [m["seq"] for m in verdicts] == list(range(1, FRAMES + 1)), result.log_tail
    assert all(m["error"] is None and m["verdict"] in ("OK", "NG") for m in verdicts), verdicts
    assert all(m["timestamp_clock"] in ("device", "host") for m in verdicts)
