"""The sim camera replays files like a line camera: paced, finite or looping, never raising on a bad file.

Pacing is checked on a fake monotonic clock that moves only when the camera waits (the
``clock`` fixture), so what is asserted is the schedule itself (which waits, how long, which
frame is late), never how long this machine took.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import edge.cameras.pacing
import edge.cameras.sim
from edge.cameras import CAMERAS, CameraDisconnected, CameraError, GrabTimeout, create_camera
from edge.cameras.sim import SimCamera, SimCameraConfig


class FakeClock:
    """``time.monotonic`` for the sim camera and its pacer; it advances only by the waits they make."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now


class ClockEvent:
    """The camera's ``closed`` event on the fake clock: a wait that is not cut short by close() passes time."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self._set = False

    def set(self) -> None:
        self._set = True

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        if self._set:
            return True
        assert timeout is not None, "the camera never waits without a timeout"
        self.clock.waits.append(timeout)
        self.clock.now += timeout
        return False


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(edge.cameras.pacing, "time", SimpleNamespace(monotonic=fake.monotonic))
    monkeypatch.setattr(edge.cameras.sim, "time", SimpleNamespace(monotonic=fake.monotonic, time=time.time,
                                                                  perf_counter=time.perf_counter))
    monkeypatch.setattr(edge.cameras.sim, "threading", SimpleNamespace(Event=lambda: ClockEvent(fake)))
    return fake


class WatchedEvent(threading.Event):
    """A real event that says when someone starts waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()
        return super().wait(timeout)


def write_images(folder: Path, count: int, prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{prefix}_{i:02d}.png"
        cv2.imwrite(str(path), np.full((16, 24), i * 10, dtype=np.uint8))
        paths.append(path)
    return paths


def open_camera(**fields) -> SimCamera:
    camera = SimCamera(SimCameraConfig(type="sim", **fields))
    camera.open()
    return camera


def grab_all(camera: SimCamera, limit: int = 100) -> list:
    frames = []
    for _ in range(limit):
        frame = camera.grab(timeout=5.0)
        if frame is None:
            return frames
        frames.append(frame)
    raise AssertionError("stream did not end")


def test_registry_builds_the_sim_camera_from_its_config(tmp_path):
    write_images(tmp_path, 1)
    assert CAMERAS["sim"] == (SimCameraConfig, SimCamera)
    camera = create_camera(SimCameraConfig(type="sim", source=str(tmp_path)))
    assert isinstance(camera, SimCamera)


def test_replays_every_image_in_sorted_order_then_ends(tmp_path):
    paths = write_images(tmp_path / "b", 2) + write_images(tmp_path / "a", 2)
    frames = grab_all(open_camera(source=str(tmp_path)))
    assert [f.source for f in frames] == sorted(str(p) for p in paths)
    assert [f.frame_id for f in frames] == [1, 2, 3, 4]
    assert all(f.error is None and f.image.shape == (16, 24) and f.image.dtype == np.uint8 for f in frames)
    assert all(abs(f.t_capture - time.time()) < 60 for f in frames)


def test_paces_frames_at_the_requested_fps(tmp_path, clock):
    write_images(tmp_path, 8)
    frames = grab_all(open_camera(source=str(tmp_path), fps=20))
    assert len(frames) == 8
    # The first frame is due at once, each next one a period (1/20 s) after the one before.
    assert clock.waits == pytest.approx([0.05] * 7)


def test_slow_consumer_does_not_get_a_catch_up_burst(tmp_path, clock):
    write_images(tmp_path, 4)
    camera = open_camera(source=str(tmp_path), fps=20)
    camera.grab(timeout=1.0)
    clock.now += 0.3  # the consumer comes back six periods late
    camera.grab(timeout=1.0)  # overdue: at once, and counted as late
    assert clock.waits == [] and camera.stats()["late_triggers"] == 1
    camera.grab(timeout=1.0)
    assert clock.waits == pytest.approx([0.05])  # the schedule restarted: the next frame waits a whole period


def test_fps_zero_replays_as_fast_as_possible(tmp_path, clock):
    write_images(tmp_path, 20)
    frames = grab_all(open_camera(source=str(tmp_path), fps=0))
    assert len(frames) == 20
    assert clock.waits == []  # never waits for a slot


def test_grab_raises_timeout_when_the_next_frame_is_not_due(tmp_path, clock):
    write_images(tmp_path, 2)
    camera = open_camera(source=str(tmp_path), fps=2)
    assert camera.grab(timeout=1.0).frame_id == 1
    with pytest.raises(GrabTimeout):
        camera.grab(timeout=0.05)
    assert clock.waits == pytest.approx([0.05])  # waited its timeout, not the 0.5 s to the next slot
    assert camera.grab(timeout=2.0).frame_id == 2
    assert clock.waits == pytest.approx([0.05, 0.45])  # then the rest of the period


def test_loop_starts_again_and_max_frames_stops_it(tmp_path):
    paths = write_images(tmp_path, 3)
    frames = grab_all(open_camera(source=str(tmp_path), loop=True, max_frames=7))
    assert [f.source for f in frames] == [str(paths[i % 3]) for i in range(7)]
    assert [f.frame_id for f in frames] == list(range(1, 8))


def test_a_loop_decodes_each_file_once_and_reads_a_file_changed_on_disk_again(tmp_path):
    paths = write_images(tmp_path, 2)
    camera = open_camera(source=str(tmp_path), loop=True)
    first = [camera.grab(timeout=5.0) for _ in range(2)]
    again = [camera.grab(timeout=5.0) for _ in range(2)]
    assert [a.image is b.image for a, b in zip(first, again, strict=True)] == [True, True]  # pixels kept, not decoded
    with pytest.raises(ValueError, match="read-only"):
        first[0].image[0, 0] = 1  # a stage writing into a frame would change every later pass of that file
    cv2.imwrite(str(paths[1]), np.full((16, 24), 99, dtype=np.uint8))
    os.utime(paths[1], ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on a coarse clock
    changed = [camera.grab(timeout=5.0) for _ in range(2)]
    assert changed[0].image is first[0].image
    assert changed[1].image is not first[1].image and int(changed[1].image[0, 0]) == 99


def test_a_loop_decodes_every_frame_with_no_cache_and_keeps_what_fits_in_a_small_one(tmp_path):
    write_images(tmp_path, 3)  # 16x24 gray: 384 bytes each
    uncached = open_camera(source=str(tmp_path), loop=True, cache_mb=0)
    frames = [uncached.grab(timeout=5.0) for _ in range(6)]
    assert not any(frames[i].image is frames[i + 3].image for i in range(3))
    assert frames[0].image.flags.writeable
    small = open_camera(source=str(tmp_path), loop=True, cache_mb=800 / 2**20)  # room for two of the three
    frames = [small.grab(timeout=5.0) for _ in range(6)]
    assert [frames[i].image is frames[i + 3].image for i in range(3)] == [True, True, False]
    assert [np.array_equal(frames[i].image, frames[i + 3].image) for i in range(3)] == [True, True, True]


def test_max_frames_stops_a_finite_source_early(tmp_path):
    write_images(tmp_path, 5)
    assert len(grab_all(open_camera(source=str(tmp_path), max_frames=2))) == 2


def test_close_ends_a_grab_waiting_in_another_thread(tmp_path, monkeypatch):
    events: list[WatchedEvent] = []

    def watched_event() -> WatchedEvent:
        events.append(WatchedEvent())
        return events[-1]

    monkeypatch.setattr(edge.cameras.sim, "threading", SimpleNamespace(Event=watched_event))
    write_images(tmp_path, 2)
    camera = open_camera(source=str(tmp_path), fps=0.001)  # the second frame is due in 1000 s
    camera.grab(timeout=1.0)
    (closed,) = events
    result: list = []
    grabber = threading.Thread(target=lambda: result.append(camera.grab(timeout=600.0)))
    grabber.start()
    assert closed.waiting.wait(30), "the grab never started waiting"
    camera.close()
    grabber.join(30)  # without close() it would wait out its 600 s timeout
    assert not grabber.is_alive() and result == [None]


def test_corrupt_file_gives_an_error_frame_and_the_stream_goes_on(tmp_path):
    write_images(tmp_path, 2)
    (tmp_path / "img_00b.png").write_bytes(b"\x89PNG not really an image")
    (tmp_path / "img_00c.png").write_bytes(b"")
    frames = grab_all(open_camera(source=str(tmp_path)))
    assert len(frames) == 4
    bad = [f for f in frames if f.error is not None]
    assert [Path(f.source).name for f in bad] == ["img_00b.png", "img_00c.png"]
    assert all(f.image is None and "img_00" in f.error for f in bad)
    assert frames[-1].error is None and frames[-1].image is not None


def test_glob_source_replays_only_matching_files(tmp_path):
    write_images(tmp_path / "good", 2, prefix="good")
    write_images(tmp_path / "bad", 3, prefix="bad")
    frames = grab_all(open_camera(source=str(tmp_path / "**" / "bad_*.png")))
    assert len(frames) == 3 and all("bad_" in f.source for f in frames)


def test_empty_folder_is_a_camera_error_naming_the_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(CameraError, match=str(tmp_path)):
        open_camera(source=str(tmp_path))


def test_missing_folder_and_unmatched_glob_are_camera_errors(tmp_path):
    with pytest.raises(CameraError, match="does not exist"):
        open_camera(source=str(tmp_path / "nope"))
    with pytest.raises(CameraError, match="no image files match"):
        open_camera(source=str(tmp_path / "*.png"))


def test_shuffle_with_a_seed_is_a_repeatable_permutation(tmp_path):
    paths = write_images(tmp_path, 8)
    first = [f.source for f in grab_all(open_camera(source=str(tmp_path), shuffle=True, seed=3))]
    again = [f.source for f in grab_all(open_camera(source=str(tmp_path), shuffle=True, seed=3))]
    other = [f.source for f in grab_all(open_camera(source=str(tmp_path), shuffle=True, seed=4))]
    assert first == again and sorted(first) == [str(p) for p in paths]
    assert first != [str(p) for p in paths] and other != first


def test_pixel_format_output_goes_through_the_camera_format(tmp_path):
    path = tmp_path / "colour.png"
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[:] = (40, 130, 220)
    cv2.imwrite(str(path), image)
    bayer = grab_all(open_camera(source=str(path), pixel_format="BayerGB8"))[0].image
    mono = grab_all(open_camera(source=str(path), pixel_format="Mono12"))[0].image
    assert bayer.shape == (8, 8, 3) and bayer[2:6, 2:6].reshape(-1, 3).tolist() == [[40, 130, 220]] * 16
    assert mono.shape == (8, 8) and (mono == cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)).all()
    with pytest.raises(ValueError, match="unknown pixel format 'Mono9'"):
        SimCameraConfig(type="sim", source=str(path), pixel_format="Mono9")


def test_injected_incomplete_buffers_are_skipped_free_run_and_error_frames_when_triggered(tmp_path):
    write_images(tmp_path, 6)
    free = open_camera(source=str(tmp_path), faults={"incomplete_every": 3})
    assert [f.frame_id for f in grab_all(free)] == [1, 2, 3, 4] and free.stats()["incomplete"] == 2
    triggered = open_camera(source=str(tmp_path), trigger="software", faults={"incomplete_every": 3})
    frames = grab_all(triggered)
    assert [f.error is not None for f in frames] == [False, False, True, False, False, True]
    assert triggered.stats()["triggers"] == 6 and triggered.stats()["trigger_misses"] == 2


def test_injected_timeout_and_device_loss_then_reopen_continues_the_replay(tmp_path, clock):
    paths = write_images(tmp_path, 5)
    camera = open_camera(source=str(tmp_path), faults={"timeout_every": 2, "disconnect_after": 2, "down_for_s": 0.2})
    assert camera.grab(1.0).source == str(paths[0])
    with pytest.raises(GrabTimeout, match="simulated"):
        camera.grab(1.0)
    assert camera.grab(1.0).source == str(paths[1])
    with pytest.raises(CameraDisconnected, match="device lost after 2 frames"):
        camera.grab(1.0)
    camera.close()
    with pytest.raises(CameraError, match="device not found"):
        camera.open()
    clock.now += 0.25  # the device is back after down_for_s
    camera.open()
    with pytest.raises(GrabTimeout):  # grab 4 of every-2nd-times-out
        camera.grab(1.0)
    assert camera.grab(1.0).source == str(paths[2])
    assert camera.stats()["opens"] == 2 and camera.stats()["timeouts"] == 2
