"""The acquisition thread: grab frames from the camera into the pipeline, and keep the camera alive.

It is the only code that calls ``camera.grab``. A camera lost mid-shift (or silent past
``watchdog.no_frame_s``) is closed and reopened with a doubling delay while ``status.<station>``
messages tell the line it is down; after ``watchdog.reconnect_budget`` failed attempts in a row
the daemon stops and exits 1 for systemd to restart it. While paused it grabs nothing (the
camera's buffers, NewestOnly on GenTL, hold or replace frames); in ``on_demand`` mode it grabs one
frame per trigger command, and the part id a trigger carries (a PLC's part number) travels with
the frame it asked for into the verdict. A camera that could not be opened at start (late at
boot) is retried first, with the same backoff and budget. While a grab or an open is in
progress ``busy_since`` says since when, so a producer call that never returns stops the systemd
watchdog pings instead of going unnoticed behind the heartbeats. Frames a free-running camera
discarded as incomplete never reach us as frames, so their count (from the camera's own
counters) is added to frames in and to the ``incomplete_buffer`` drops: accounted, not silently
missing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from edge.cameras import Camera, CameraDisconnected, CameraError, CameraNotFound, Frame, GrabTimeout
from edge.daemon.config import WatchdogConfig
from edge.daemon.pipeline import Accounting, FrameQueue, Job, Worker
from edge.wire.messages import CameraState

log = logging.getLogger(__name__)

GRAB_TIMEOUT_S = 1.0
MAX_PENDING_TRIGGERS = 100
MAX_PART_ID = 2**32 - 1
T = TypeVar("T")
StatusCallback = Callable[[CameraState, "str | None", "float | None", int], None]


def open_at_start(camera: Camera) -> str | None:
    """Open ``camera``; the reason when the device is not there yet (retried by the thread), None when open.

    Any other :class:`CameraError` (a feature value the device refuses) is raised: that is a set-up mistake.
    """
    try:
        camera.open()
    except CameraNotFound as exc:
        log.warning("camera not available at start (%s): retrying with the reconnect backoff", exc)
        return str(exc)
    return None


class CameraGaveUp(Exception):
    """The reconnect budget is spent; the daemon exits 1."""


class Acquisition(Worker):
    """Runs the grab loop on its own thread until ``stop``, the end of the stream, or a give-up."""

    def __init__(self, camera: Camera, frames: FrameQueue, accounting: Accounting, watchdog: WatchdogConfig,
                 stop: threading.Event, on_status: StatusCallback, on_demand: bool = False,
                 count_discards: bool = True, start_down: str | None = None) -> None:
        super().__init__("acquisition", stop)
        self.camera = camera
        self.frames = frames
        self.accounting = accounting
        self.watchdog = watchdog
        self.on_status = on_status
        self.on_demand = on_demand
        self.count_discards = count_discards
        self.paused = threading.Event()
        self.start_down = start_down  # the camera could not be opened at start: why (retried first thing)
        self.camera_up = start_down is None
        self.busy_since: float | None = None  # monotonic start of the grab or open in progress (watchdog)
        self.failed_attempts = 0
        self.reconnects = 0
        self._pending: deque[int | None] = deque()  # the part id of each trigger not yet grabbed
        self._trigger = threading.Condition()
        self._discards_seen = self._camera_discards() if start_down is None else 0
        self._last_frame_at = time.monotonic()

    def trigger(self, part_id: int | None = None) -> int:
        """Request one frame (``on_demand``) for ``part_id``; returns the triggers now pending.

        ValueError if not on demand, if too many triggers wait, or if ``part_id`` is not an
        unsigned 32-bit integer.
        """
        if not self.on_demand:
            raise ValueError("trigger needs pipeline.acquisition: on_demand (this camera is free-running)")
        if part_id is not None and (isinstance(part_id, bool) or not isinstance(part_id, int)
                                    or not 0 <= part_id <= MAX_PART_ID):
            raise ValueError(f"part_id must be an integer 0..{MAX_PART_ID}, not {part_id!r}")
        with self._trigger:
            if len(self._pending) >= MAX_PENDING_TRIGGERS:
                raise ValueError(f"{len(self._pending)} triggers already pending")
            self._pending.append(part_id)
            self._trigger.notify()
            return len(self._pending)

    def _run(self) -> None:
        try:
            self._loop()
        except CameraGaveUp as exc:
            self.failure = str(exc)
            log.error("%s", exc)
        except CameraError as exc:
            self.failure = f"camera: {exc}"
            log.error("camera failed: %s", exc)
        finally:
            self._account_discards()

    def _loop(self) -> None:
        no_frame_s = self.watchdog.no_frame_s
        self._last_frame_at = time.monotonic()
        if self.start_down is not None:
            self._reconnect(f"camera not available at start: {self.start_down}")
        while not self.stop.is_set():
            if self.paused.is_set():
                self.stop.wait(0.1)
                self._last_frame_at = time.monotonic()  # a paused line is not a silent camera
                continue
            part_id: int | None = None
            if self.on_demand:
                taken = self._take_trigger()
                if not taken:
                    continue
                part_id = taken[0]
            try:
                frame = self._timed(lambda: self.camera.grab(GRAB_TIMEOUT_S))
            except GrabTimeout as exc:
                if self.on_demand:  # a trigger that brought no image still gets its (NG) verdict
                    frame = Frame(image=None, frame_id=0, source="trigger", error=f"no image after trigger: {exc}",
                                  part_id=part_id)
                else:
                    silent = time.monotonic() - self._last_frame_at
                    if no_frame_s > 0 and silent > no_frame_s:
                        self._reconnect(f"no frame for {silent:.1f} s")
                    continue
            except CameraDisconnected as exc:
                self._reconnect(str(exc))
                continue
            if frame is None:
                log.info("end of stream")
                return
            frame.part_id = part_id
            self._last_frame_at = time.monotonic()
            self.failed_attempts = 0
            self._account_discards()
            self.accounting.frame_in()
            self.frames.put(Job(frame=frame))
        log.info("acquisition stopped")

    def _timed(self, call: Callable[[], T]) -> T:
        """Run one camera call with ``busy_since`` set, so a call that never returns is seen by the watchdog."""
        self.busy_since = time.monotonic()
        try:
            return call()
        finally:
            self.busy_since = None

    def _take_trigger(self) -> tuple[int | None] | None:
        """The next pending trigger's part id (in a 1-tuple), or None when none came within 0.2 s."""
        with self._trigger:
            if not self._pending:
                self._trigger.wait(0.2)
            if not self._pending:
                return None
            return (self._pending.popleft(),)

    def _camera_discards(self) -> int:
        """Frames the camera dropped without delivering: incomplete buffers in free-run."""
        if not self.count_discards:
            return 0
        return int(self.camera.stats().get("incomplete", 0))

    def _account_discards(self) -> None:
        total = self._camera_discards()
        new = total - self._discards_seen
        if new > 0:
            self.accounting.frame_in(new)
            self.accounting.drop("incomplete_buffer", new)
        self._discards_seen = max(total, self._discards_seen)

    def _reconnect(self, reason: str) -> None:
        """Close and reopen the camera with a doubling delay until it opens, ``stop`` is set or the budget is spent.

        The budget counts failed attempts since the last delivered frame, so a camera that reopens but
        never delivers (or flaps) still ends in exit 1 instead of looping forever.
        """
        watchdog = self.watchdog
        log.warning("camera down: %s", reason)
        self.camera_up = False
        self._account_discards()
        self.camera.close()
        while not self.stop.is_set():
            if self.failed_attempts >= watchdog.reconnect_budget:
                self.on_status("gave_up", reason, None, self.failed_attempts)
                raise CameraGaveUp(
                    f"camera: gave up after {self.failed_attempts} failed reconnect attempts (last: {reason})"
                )
            delay = min(watchdog.reconnect_delay_s * 2 ** self.failed_attempts, watchdog.reconnect_max_delay_s)
            self.on_status("down", reason, delay, self.failed_attempts)
            if self.stop.wait(delay):
                return
            try:
                self._timed(self.camera.open)
            except CameraError as exc:
                self.failed_attempts += 1
                reason = str(exc)
                log.warning("reconnect attempt %d failed: %s", self.failed_attempts, reason)
                continue
            self.failed_attempts += 1  # reset only by a delivered frame
            self.reconnects += 1
            self.camera_up = True
            self._last_frame_at = time.monotonic()
            log.info("camera reconnected (attempt %d)", self.failed_attempts)
            self.on_status("up", None, None, self.failed_attempts)
            return
