"""The daemon with faulty and real GenTL cameras, as a real subprocess watched over a real ZeroMQ socket.

Device loss: the camera is closed and reopened with a doubling delay while ``status.<station>``
messages say it is down; it comes back and verdicts go on, or after the reconnect budget the
daemon exits 1. GenTL: the viky.cti producer through the full pipeline, and N software triggers
on TLSimu.cti giving N verdicts (when ``EDGE_TEST_TLSIMU_CTI`` or build/gentl/TLSimu.cti has it).
Camera counters and reconnects come from the daemon's ``stopped`` event, never from its log.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.tools.harness import DEMO_IMAGES, REPO, DaemonRun, run_daemon

TLSIMU = Path(os.environ.get("EDGE_TEST_TLSIMU_CTI", REPO / "build" / "gentl" / "TLSimu.cti"))


def run(tmp_path: Path, camera: dict, watchdog: dict | None = None) -> DaemonRun:
    return run_daemon({"camera": camera, "watchdog": watchdog or {}}, workdir=tmp_path, deadline_s=120)


def test_lost_camera_comes_back_and_every_delivered_frame_still_gets_one_verdict(tmp_path):
    camera = {"type": "sim", "source": str(DEMO_IMAGES), "max_frames": 8,
              "faults": {"disconnect_after": 3, "down_for_s": 0.5}}
    result = run(tmp_path, camera, {"reconnect_delay_s": 0.2, "reconnect_max_delay_s": 1.0})
    assert result.exit_code == 0, result.log_tail
    verdicts = result.of("verdict")
    assert [m["seq"] for m in verdicts] == list(range(1, 9))
    assert [m["frame_id"] for m in verdicts] == list(range(1, 9))
    statuses = [(m["camera"], m["attempt"], m["next_retry_s"]) for m in result.of("status")]
    # Lost after 3 frames: down (retry in 0.2 s), still down (0.4 s), back up; again after 3 more.
    assert statuses[:3] == [("down", 0, 0.2), ("down", 1, 0.4), ("up", 2, None)], statuses
    assert statuses[3:] == statuses[:3]
    # The status goes out at once, possibly ahead of verdicts for frames grabbed before the loss that
    # are still being inspected: those are the ones captured before the status's time.
    first_down_t = result.of("status")[0]["t"]
    assert [m["seq"] for m in verdicts if m["t_capture"] < first_down_t] == [1, 2, 3]
    assert result.stopped["camera"]["reconnects"] == 2 and result.stopped["camera"]["stats"]["opens"] == 3
    assert result.stopped["balanced"] and result.stopped["failure"] is None


def test_camera_that_never_comes_back_exits_1_after_the_budget_with_growing_delays(tmp_path):
    camera = {"type": "sim", "source": str(DEMO_IMAGES), "loop": True,
              "faults": {"disconnect_after": 2, "down_for_s": None}}
    result = run(tmp_path, camera, {"reconnect_delay_s": 0.1, "reconnect_max_delay_s": 0.4, "reconnect_budget": 4})
    assert result.exit_code == 1, result.log_tail
    assert [m["seq"] for m in result.of("verdict")] == [1, 2]
    statuses = result.of("status")
    assert [(m["camera"], m["next_retry_s"]) for m in statuses] == [
        ("down", 0.1), ("down", 0.2), ("down", 0.4), ("down", 0.4), ("gave_up", None)]
    assert statuses[-1]["reason"] == "sim camera: device not found (simulated loss)"
    assert statuses[-1]["verdicts"] == 2 and statuses[-1]["stats"]["opens"] == 1 and statuses[-1]["attempt"] == 4
    assert "gave up after 4 failed reconnect attempts" in result.stopped["failure"]
    assert result.stopped["camera"]["reconnects"] == 0 and result.stopped["balanced"]


def test_viky_producer_through_the_full_pipeline(tmp_path):
    pytest.importorskip("harvesters", reason="needs the 'camera' extra")
    viky = Path(__import__("genicam").__file__).parent / "viky.cti"
    camera = {"type": "gentl", "producers": [str(viky)], "serial_number": "0", "max_frames": 15,
              "features": {"PixelFormat": "RGBa8", "AcquisitionFrameRate": 20.0}}
    result = run(tmp_path, camera)
    assert result.exit_code == 0, result.log_tail
    verdicts = result.of("verdict")
    assert [m["seq"] for m in verdicts] == list(range(1, 16))
    assert all(m["error"] is None and m["verdict"] in ("OK", "NG") and m["source"].startswith("gentl:0#")
               for m in verdicts)
    # viky.cti numbers its frames but stamps no time: the verdict says the timestamp is the host's.
    assert all(m["source"] == f"gentl:0#{m['device_frame_id']}" and m["timestamp_clock"] == "host"
               and m["timestamp_ns"] == round(m["t_capture"] * 1e9) for m in verdicts)
    stats = result.stopped["camera"]["stats"]
    assert (stats["frames"], stats["incomplete"]) == (15, 0)


@pytest.mark.skipif(not TLSIMU.is_file(), reason=f"no TLSimu.cti at {TLSIMU} (set EDGE_TEST_TLSIMU_CTI)")
def test_n_software_triggers_on_tlsimu_give_n_verdicts(tmp_path):
    pytest.importorskip("harvesters", reason="needs the 'camera' extra")
    camera = {"type": "gentl", "producers": [str(TLSIMU)], "serial_number": "SN_InterfaceB_0",
              "trigger": "software", "fps": 20, "max_frames": 20}
    result = run(tmp_path, camera)
    assert result.exit_code == 0, result.log_tail
    verdicts = result.of("verdict")
    assert [m["seq"] for m in verdicts] == list(range(1, 21)) and all(m["error"] is None for m in verdicts)
    assert all(m["timestamp_clock"] == "device" and m["device_frame_id"] is not None for m in verdicts)
    stats = result.stopped["camera"]["stats"]
    assert (stats["triggers"], stats["trigger_misses"]) == (20, 0)
