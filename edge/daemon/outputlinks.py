"""Status messages when an output's link to its peer (a PLC, a broker) is lost or comes back.

The outputs count every message they deliver or not (heartbeats carry those counts), but a line's
PLC programmer and the plant's dashboards watch ``status.<station>``: that is where a camera going
down shows, so a PLC or broker connection going down shows there too, with the output's name and
its last error. The publishing thread polls :meth:`OutputLinks.poll` between messages; a change
must hold for ``hold_s`` before it is reported, so a PLC that opens a connection per poll does not
turn the status topic into a stream. Every output is expected to be connected from the start: one
that has not reached its peer a second after start is reported disconnected (a PLC that is not
there at boot is news too), one that connects at once says nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

POLL_EVERY_S = 0.5
HOLD_S = 1.0


class OutputLinks:
    """Debounced connected/disconnected changes of the outputs, as status payloads built by ``status``."""

    def __init__(self, stats: Callable[[], dict[str, dict[str, Any]]],
                 status: Callable[[str, bool, dict[str, int], dict[str, dict[str, Any]]], dict[str, Any]],
                 camera_up: Callable[[], bool], camera_stats: Callable[[], dict[str, int]], *,
                 hold_s: float = HOLD_S, poll_every_s: float = POLL_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stats = stats
        self.status = status  # (reason, camera up, camera counters, outputs) -> the status payload
        self.camera_up = camera_up
        self.camera_stats = camera_stats
        self.hold_s = hold_s
        self.poll_every_s = poll_every_s
        self.clock = clock
        self._reported: dict[str, bool] = {}  # the state last reported (or first seen) per output
        self._changed_at: dict[str, float] = {}  # when an output's state first differed from the reported one
        self._next_poll = 0.0

    def poll(self) -> dict[str, Any] | None:
        """A status payload when an output's link changed and held, else None (cheap between polls)."""
        now = self.clock()
        if now < self._next_poll:
            return None
        self._next_poll = now + self.poll_every_s
        outputs = self.stats()
        changes = []
        for name, stats in outputs.items():
            connected = bool(stats.get("connected"))
            self._reported.setdefault(name, True)  # expected up: only a link that is not is news
            if connected == self._reported[name]:
                self._changed_at.pop(name, None)
                continue
            since = self._changed_at.setdefault(name, now)
            if now - since >= self.hold_s:
                self._reported[name] = connected
                self._changed_at.pop(name, None)
                error = stats.get("last_error")
                changes.append(f"output {name} connected" if connected
                               else f"output {name} disconnected{f': {error}' if error else ''}")
        if not changes:
            return None
        return self.status("; ".join(changes), self.camera_up(), self.camera_stats(), outputs)
