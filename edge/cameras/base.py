"""What every camera source hands the daemon, and how it says it failed.

The daemon only knows this module: a camera is anything with ``open()``, ``grab(timeout)`` and
``close()`` that returns :class:`Frame` objects. Keeping the contract here (and not in a concrete
source) lets the core loop stay ignorant of which backend is configured, and lets a bad image be
carried to the publisher as data (``Frame.error``) instead of an exception that ends the stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

# The counters every camera's ``stats()`` reports (plus ``late_triggers`` from its pacer), so status
# messages, logs and benches read the same keys whichever source is configured.
# camera.max_pixels by default: a frame larger than this is an error verdict, not a multi-second decode
# (a 50 Mpx frame is past every area-scan camera a line-side box is sized for; raise it for one that is not).
DEFAULT_MAX_PIXELS = 50_000_000
STATS_KEYS = ("frames", "timeouts", "incomplete", "dropped", "triggers", "trigger_misses", "decode_errors", "opens")


def new_stats() -> dict[str, int]:
    """A camera's counters at construction: every key of :data:`STATS_KEYS` at 0."""
    return dict.fromkeys(STATS_KEYS, 0)


class CameraError(Exception):
    """The source cannot deliver frames at all (missing folder, no images, device gone)."""


class GrabTimeout(CameraError):
    """No frame became due within the ``grab`` timeout; the stream is still alive."""


class CameraDisconnected(CameraError):
    """The device went away mid-stream (cable, power, producer error); ``close`` then ``open`` may bring it back."""


class CameraNotFound(CameraError):
    """The device is not (yet) there: none matches, or it cannot be opened now. At start it is retried, as a
    camera late at boot (a PoE camera still starting) needs; a bad setting is a plain CameraError instead."""


@dataclass
class Frame:
    """One captured (or attempted) image.

    ``image`` is ``None`` exactly when ``error`` says why (an unreadable file, an incomplete
    buffer); the daemon then publishes a fail-safe NG verdict for it. ``frame_id`` counts grabs from
    1 within one source; ``t_capture`` is wall-clock epoch seconds at capture. ``device_frame_id``
    is the producer's own frame counter where it gives one (a jump means frames the device made
    were never inspected). ``timestamp_ns`` is the device's timestamp of the image when the device
    gives one (``timestamp_clock`` "device": ticks of the camera's clock, not epoch time), otherwise
    ``t_capture`` in epoch nanoseconds (``timestamp_clock`` "host"); it is always set after init.
    ``part_id`` is what the trigger that asked for this frame carried (a PLC's part number), or
    ``None`` (free run, or a trigger without one); the verdict echoes it.
    """

    image: np.ndarray | None
    frame_id: int
    source: str
    t_capture: float = field(default_factory=time.time)
    error: str | None = None
    decode_ms: float = 0.0
    device_frame_id: int | None = None
    timestamp_ns: int | None = None
    timestamp_clock: Literal["device", "host"] = "host"
    part_id: int | None = None

    def __post_init__(self) -> None:
        if self.timestamp_ns is None:
            self.timestamp_ns = round(self.t_capture * 1e9)
            self.timestamp_clock = "host"


class Camera(Protocol):
    """The runtime half of a camera source, as the daemon uses it."""

    def open(self) -> None:
        """Acquire the source; raise :class:`CameraError` naming what is missing."""

    def grab(self, timeout: float) -> Frame | None:
        """Next frame, ``None`` at the end of a finite stream; :class:`GrabTimeout` if not due yet."""

    def close(self) -> None:
        """Release the source; safe to call twice and from another thread. ``open`` may follow."""

    def stats(self) -> dict[str, int]:
        """Counters since the first ``open`` (frames, timeouts, incomplete, dropped, ...), for logs and status."""
