"""The GenTL camera: selection and feature errors that name the fix; fetch faults become our exceptions.

Three layers of realness: a real GenApi node map with the few Harvesters calls faked (for faults
a simulated producer will not produce on demand), the viky.cti producer shipped in the genicam
wheel (always present with the ``camera`` extra), and TLSimu.cti for software triggers when
``EDGE_TEST_TLSIMU_CTI`` names it (or it lies at build/gentl/TLSimu.cti, where CI puts it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("harvesters", reason="GenTL tests need the 'camera' extra (harvesters, genicam)")

from genicam.gentl import IoException, TimeoutException  # noqa: E402

from edge.cameras import CAMERAS, CameraDisconnected, CameraError, GrabTimeout, create_camera  # noqa: E402
from edge.cameras.gentl import GenTLCamera, GenTLCameraConfig  # noqa: E402
from edge.daemon.config import ConfigError, load_config  # noqa: E402
from tests.unit.edge.cameras.gentl_fakes import (  # noqa: E402
    FakeAcquirer,
    FakeDeviceInfo,
    FakeHarvester,
    real_node_map,
    real_stream_node_map,
)

REPO = Path(__file__).resolve().parents[4]
VIKY = Path(__import__("genicam").__file__).parent / "viky.cti"
TLSIMU = Path(os.environ.get("EDGE_TEST_TLSIMU_CTI", REPO / "build" / "gentl" / "TLSimu.cti"))
needs_tlsimu = pytest.mark.skipif(
    not TLSIMU.is_file(),
    reason=f"no TLSimu.cti at {TLSIMU} (set EDGE_TEST_TLSIMU_CTI; CI extracts it from the genicam 1.5.0 wheel)",
)


def fake_camera(
    script: list, trigger: str = "free_run", stream_node_map: object = "real", timestamp_ns: int | None = None,
    **fields,
) -> tuple[GenTLCamera, FakeAcquirer, FakeHarvester]:
    stream = real_stream_node_map() if stream_node_map == "real" else stream_node_map
    acquirer = FakeAcquirer(script, real_node_map(), stream, timestamp_ns)
    devices = [FakeDeviceInfo(model="EdgeTestCam", serial_number="TEST-0001", user_defined_name="left"),
               FakeDeviceInfo(model="EdgeTestCam", serial_number="TEST-0002", user_defined_name="right")]
    harvester = FakeHarvester(devices, acquirer)
    config = GenTLCameraConfig(type="gentl", producers=[str(VIKY)], trigger=trigger,
                               **({"serial_number": "TEST-0002"} | fields))
    camera = GenTLCamera(config, harvester_factory=lambda: harvester)
    camera.open()
    return camera, acquirer, harvester


def test_registry_and_config_know_the_gentl_camera(tmp_path):
    assert CAMERAS["gentl"] == (GenTLCameraConfig, GenTLCamera)
    config_file = tmp_path / "c.yaml"
    config_file.write_text("bundle: b\ncamera:\n  type: gentl\n  producers: [prod/x.cti]\n  fps: 5\n")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: camera: fps applies to trigger: software only"):
        load_config(config_file)
    config_file.write_text("bundle: b\ncamera:\n  type: gentl\n  producers: [prod/x.cti]\n  exposure: 5\n")
    with pytest.raises(ConfigError, match=r"c.yaml:5: camera.exposure: Extra inputs are not permitted"):
        load_config(config_file)
    config_file.write_text("bundle: b\ncamera:\n  type: gentl\n  producers: [prod/x.cti]\n  trigger: software\n")
    assert load_config(config_file).camera.producers == [str(tmp_path / "prod" / "x.cti")]


def test_features_are_written_in_order_and_trigger_set_for_software_mode():
    camera, acquirer, harvester = fake_camera([1], trigger="software",
                                              features={"PixelFormat": "BayerRG8", "Width": 32, "ExposureTime": 800})
    node_map = acquirer.remote_device.node_map
    assert harvester.files == [str(VIKY)] and harvester.created == [1]
    assert (node_map.PixelFormat.value, node_map.Width.value, node_map.ExposureTime.value) == ("BayerRG8", 32, 800.0)
    assert (node_map.TriggerMode.value, node_map.TriggerSource.value) == ("On", "Software")
    frame = camera.grab(1.0)
    assert node_map.TriggerSoftwareValue.value == 1 and camera.stats()["triggers"] == 1
    assert frame.image.shape == (48, 32, 3) and frame.source == "gentl:TEST-0002#1"


def test_bad_feature_is_a_camera_error_naming_feature_and_reason_and_releases_the_device():
    cases = {
        "Width": (1000, "Width=1000: Value = 1000 must be equal or smaller than Max = 128"),
        "Gain": (3.0, "Gain=3.0: Node is not writable"),
        "PixelFormat": ("Mono12", "'Mono12' is not one of Mono8, BayerRG8, RGB8"),
        "ExposureTme": (10, "the device has no feature 'ExposureTme'"),
        "ReverseX": ("yes", "ReverseX: expected true or false"),
    }
    for name, (value, message) in cases.items():
        with pytest.raises(CameraError, match=message.replace("(", r"\(")) as info:
            fake_camera([], features={name: value})
        assert "Exception thrown" not in str(info.value)


def test_selection_errors_list_the_devices_found():
    with pytest.raises(CameraError, match=r"no device matches serial_number='NOPE'.*\[0\].*TEST-0001.*TEST-0002"):
        fake_camera([], serial_number="NOPE")
    with pytest.raises(CameraError, match="2 devices match model='EdgeTestCam'; set camera.serial_number"):
        fake_camera([], serial_number=None, model="EdgeTestCam")
    _, _, harvester = fake_camera([], serial_number=None, user_defined_name="left")
    assert harvester.created == [0]


def test_missing_producer_and_empty_gentl_path_are_errors(tmp_path, monkeypatch):
    with pytest.raises(CameraError, match="producer .*nope.cti does not exist"):
        GenTLCamera(GenTLCameraConfig(type="gentl", producers=[str(tmp_path / "nope.cti")])).open()
    monkeypatch.setenv("GENICAM_GENTL64_PATH", str(tmp_path))
    with pytest.raises(CameraError, match=f"no GenTL producer .*GENICAM_GENTL64_PATH.*looked in: {tmp_path}"):
        GenTLCamera(GenTLCameraConfig(type="gentl")).open()


def test_image_is_copied_out_before_the_buffer_goes_back():
    camera, acquirer, _ = fake_camera([7])
    frame = camera.grab(1.0)
    assert acquirer.fetched[0].queued and (acquirer.fetched[0].payload.components[0].data == 0).all()
    assert frame.image.shape == (48, 64) and (frame.image == 7).all()


def test_timeout_incomplete_gap_and_device_loss_are_counted_and_typed():
    camera, acquirer, harvester = fake_camera([1, "incomplete", 2, TimeoutException(), 5, IoException("link down")])
    assert camera.grab(1.0).frame_id == 1
    assert camera.grab(1.0).source.endswith("#2") and camera.stats()["incomplete"] == 1
    with pytest.raises(GrabTimeout):
        camera.grab(1.0)
    assert camera.grab(1.0).frame_id == 3
    with pytest.raises(CameraDisconnected, match="fetch failed: link down"):
        camera.grab(1.0)
    stats = camera.stats()
    assert (stats["frames"], stats["timeouts"], stats["incomplete"], stats["dropped"]) == (3, 1, 1, 2)
    camera.close()
    camera.close()
    assert acquirer.destroyed and harvester.was_reset and camera.grab(1.0) is None


def test_software_trigger_without_a_complete_image_is_an_error_frame_not_a_skip():
    camera, acquirer, _ = fake_camera([1, "incomplete"], trigger="software", trigger_timeout_s=0.2)
    assert camera.grab(1.0).error is None
    asked = len(acquirer.fetch_timeouts)
    missed = camera.grab(1.0)
    assert missed.image is None and "1 incomplete buffer(s)" in missed.error and missed.frame_id == 2
    # The image was waited for within the trigger's timeout (0.2 s), not the grab's (1.0 s).
    assert acquirer.fetch_timeouts[asked:] and all(0 < t <= 0.2 for t in acquirer.fetch_timeouts[asked:])
    assert camera.stats()["trigger_misses"] == 1 and camera.stats()["triggers"] == 2


def test_viky_producer_streams_frames_from_the_selected_device():
    camera = create_camera(GenTLCameraConfig(
        type="gentl", producers=[str(VIKY)], serial_number="2",
        features={"PixelFormat": "Mono8", "AcquisitionFrameRate": 100.0}, max_frames=10))
    camera.open()
    try:
        frames = [camera.grab(2.0) for _ in range(10)]
        assert camera.grab(2.0) is None  # max_frames
    finally:
        camera.close()
    assert all(f.error is None and f.image.shape == (400, 400) and f.image.dtype == np.uint8 for f in frames)
    assert [f.frame_id for f in frames] == list(range(1, 11))
    assert all(f.source.startswith("gentl:2#") for f in frames)
    assert camera.stats()["frames"] == 10 and camera.stats()["incomplete"] == 0


def test_viky_rgba_frames_come_out_bgr_and_ambiguous_model_lists_devices():
    camera = GenTLCamera(GenTLCameraConfig(type="gentl", producers=[str(VIKY)], index=0,
                                           features={"PixelFormat": "RGBa8"}))
    camera.open()
    try:
        frame = camera.grab(2.0)
    finally:
        camera.close()
    assert frame.image.shape == (400, 400, 3)
    with pytest.raises(CameraError, match=r"3 devices match model='Viky'.*serial_number='0'.*VikyTL_DEV_blue"):
        GenTLCamera(GenTLCameraConfig(type="gentl", producers=[str(VIKY)], model="Viky")).open()


def test_newest_buffer_handling_is_the_producers_newest_only_mode_and_oldest_keeps_every_frame_in_order():
    camera, acquirer, _ = fake_camera([1, 2])
    assert acquirer.data_streams[0].node_map.StreamBufferHandlingMode.value == "NewestOnly"
    assert [camera.grab(1.0).device_frame_id for _ in range(2)] == [1, 2] and acquirer.try_fetches == 0
    camera, acquirer, _ = fake_camera([[1, 2, 3]], buffer_handling="oldest", num_buffers=5)
    assert acquirer.data_streams[0].node_map.StreamBufferHandlingMode.value == "OldestFirst"
    assert acquirer.num_buffers == 5
    assert [camera.grab(1.0).device_frame_id for _ in range(3)] == [1, 2, 3] and camera.stats()["dropped"] == 0


def test_producer_without_newest_only_is_drained_to_the_newest_frame_and_older_buffers_go_back():
    camera, acquirer, _ = fake_camera([1, [2, 3, 4], 5], stream_node_map=None)
    frames = [camera.grab(1.0) for _ in range(3)]
    assert [(f.frame_id, f.device_frame_id) for f in frames] == [(1, 1), (2, 4), (3, 5)]
    assert (frames[1].image == 4).all() and all(b.queued for b in acquirer.fetched)
    assert camera.stats()["dropped"] == 2


def test_num_buffers_below_the_producer_minimum_is_an_error_naming_the_minimum():
    with pytest.raises(CameraError, match="num_buffers=1 but the producer needs at least 2"):
        fake_camera([], num_buffers=1)


def test_device_timestamp_travels_in_the_frame_and_host_time_stands_in_when_there_is_none():
    camera, _, _ = fake_camera([7], timestamp_ns=5_000_000_000)
    frame = camera.grab(1.0)
    assert (frame.timestamp_clock, frame.timestamp_ns, frame.device_frame_id) == ("device", 5_000_007_000, 7)
    camera, _, _ = fake_camera([7])
    frame = camera.grab(1.0)
    assert frame.timestamp_clock == "host" and frame.timestamp_ns == round(frame.t_capture * 1e9)


def grab_after_stall(handling: str, stall_s: float, fps: float = 50.0) -> tuple[int, int, int, dict]:
    """viky.cti at ``fps``: producer ids of a grab, of the grab after ``stall_s`` of not grabbing, and of the next."""
    camera = GenTLCamera(GenTLCameraConfig(
        type="gentl", producers=[str(VIKY)], serial_number="1", buffer_handling=handling,
        features={"PixelFormat": "Mono8", "AcquisitionFrameRate": fps}))
    camera.open()
    try:
        first = camera.grab(2.0).device_frame_id
        time.sleep(stall_s)
        after_stall = camera.grab(2.0)
        following = camera.grab(2.0).device_frame_id
    finally:
        camera.close()
    assert after_stall.timestamp_clock == "host"  # viky.cti gives no buffer timestamp
    return first, after_stall.device_frame_id, following, camera.stats()


def test_viky_slow_consumer_gets_the_newest_frame_with_newest_and_a_stale_one_with_oldest():
    first, after_stall, following, stats = grab_after_stall("newest", 0.5)
    # The camera went on making frames during the stall (25 at 50 fps on an idle machine; how many
    # depends on the load, so only "more than one" is asserted): the grab after it skips the ones
    # in between, and the next grab returns a later frame, so nothing older was left queued.
    assert after_stall - first > 1, (first, after_stall)
    assert following > after_stall, (after_stall, following)
    assert stats["dropped"] == following - first - 2
    first, after_stall, following, stats = grab_after_stall("oldest", 0.5)
    assert (after_stall - first, following - after_stall) == (1, 1)  # the buffers queued before the stall


@needs_tlsimu
def test_tlsimu_software_trigger_gives_one_frame_per_trigger():
    camera = GenTLCamera(GenTLCameraConfig(type="gentl", producers=[str(TLSIMU)], serial_number="SN_InterfaceA_0",
                                           trigger="software", max_frames=12))
    camera.open()
    try:
        frames = [camera.grab(2.0) for _ in range(12)]
        assert camera.grab(2.0) is None
    finally:
        camera.close()
    stats = camera.stats()
    assert stats["triggers"] == 12 and stats["trigger_misses"] == 0 and stats["frames"] == 12
    assert all(f.error is None and f.image.shape == (512, 512) for f in frames)
    producer_ids = [f.device_frame_id for f in frames]
    assert producer_ids == list(range(producer_ids[0], producer_ids[0] + 12))
    assert [int(f.source.rsplit("#", 1)[1]) for f in frames] == producer_ids
    assert all(f.timestamp_clock == "device" and f.timestamp_ns > 0 for f in frames)  # TLSimu stamps its buffers
