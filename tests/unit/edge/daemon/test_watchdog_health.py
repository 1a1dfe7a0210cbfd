"""The systemd watchdog sees a stalled acquisition (a grab or camera open that never returns), not only inference."""

from __future__ import annotations

import threading

from edge.cameras.sim import SimCamera, SimCameraConfig
from edge.daemon.acquisition import Acquisition
from edge.daemon.config import WatchdogConfig
from edge.daemon.pipeline import WEDGED_AFTER_S, Accounting, FrameQueue, pipeline_healthy
from edge.tools.harness import DEMO_IMAGES


class HangingCamera(SimCamera):
    """A real sim camera whose grab hangs like a producer call that never returns (until released)."""

    def __init__(self, config: SimCameraConfig) -> None:
        super().__init__(config)
        self.entered = threading.Event()
        self.release = threading.Event()

    def grab(self, timeout: float):  # type: ignore[no-untyped-def]
        self.entered.set()
        self.release.wait(600)  # then None: the end of the stream


def test_health_is_lost_when_either_thread_is_inside_one_call_past_the_limit():
    now = 1000.0
    assert pipeline_healthy(None, None, now)
    assert pipeline_healthy(now - 1, now - 1, now)
    assert not pipeline_healthy(None, now - WEDGED_AFTER_S - 1, now)  # acquisition stuck in a grab
    assert not pipeline_healthy(now - WEDGED_AFTER_S - 1, None, now)  # inference stuck on a frame


def test_acquisition_says_since_when_it_is_inside_a_grab_and_clears_it_after():
    camera = HangingCamera(SimCameraConfig(type="sim", source=str(DEMO_IMAGES)))
    camera.open()
    stop = threading.Event()
    accounting = Accounting()
    acquisition = Acquisition(camera, FrameQueue(2, "block", accounting, stop), accounting,
                              WatchdogConfig(), stop, lambda *_args: None)
    acquisition.start()
    try:
        assert camera.entered.wait(30)
        since = acquisition.busy_since
        assert since is not None
        assert not pipeline_healthy(None, since, since + WEDGED_AFTER_S + 0.1)
    finally:
        camera.release.set()
        assert acquisition.join(30)
    assert acquisition.busy_since is None  # the grab returned (end of stream): not busy any more
