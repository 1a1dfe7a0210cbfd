"""The frame schedule shared by sources that decide themselves when the next frame is due.

The sim camera replays files at ``fps`` and the GenTL camera fires software triggers at ``fps``;
both need the same rules, so they live here once: slots on a monotonic clock (slow inference does
not stretch the nominal rate), a grab more than a period late restarts the schedule instead of
bursting to catch up (and is counted), and a ``close`` from another thread ends the wait at once.
"""

from __future__ import annotations

import logging
import threading
import time

from edge.cameras.base import GrabTimeout

log = logging.getLogger(__name__)


class Pacer:
    """Waits for the next slot of a fixed-rate schedule; ``fps == 0`` means every slot is due at once."""

    def __init__(self, fps: float, closed: threading.Event, name: str) -> None:
        self.fps = fps
        self.name = name
        self.late = 0
        self._closed = closed
        self._next_due: float | None = None

    def reset(self) -> None:
        """Start a new schedule: the next frame is due at once."""
        self._next_due = None

    def wait(self, timeout: float) -> bool:
        """Sleep until the next slot; False if closed meanwhile; :class:`GrabTimeout` if not due in ``timeout``."""
        if self.fps <= 0:
            return not self._closed.is_set()
        period = 1.0 / self.fps
        now = time.monotonic()
        if self._next_due is None:
            self._next_due = now
        delay = self._next_due - now
        if delay > timeout:
            if self._closed.wait(max(timeout, 0.0)):
                return False
            raise GrabTimeout(f"{self.name}: next frame due in {delay:.3f} s")
        if delay > 0 and self._closed.wait(delay):
            return False
        now = time.monotonic()
        if now - self._next_due > period:
            # Fell behind by more than a frame: restart the schedule instead of bursting to catch up.
            self.late += 1
            self._next_due = now
        self._next_due += period
        return True
