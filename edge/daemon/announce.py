"""What the daemon says besides verdicts: camera status, events, heartbeats, its STATUS and log lines.

The publishing thread is the only user of the verdict socket, so status and event messages are
built here and handed to it through the same queue as the verdicts, in order; a heartbeat is
built when that thread asks for one. Keeping the wording of these messages apart leaves
:mod:`edge.daemon.supervisor` with the daemon's life cycle (start, reload, stop) and gives this
module nothing to decide: every value it reports is passed in or read from the run's sequence
counter and accounting.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from typing import Any

from edge.daemon.pipeline import Accounting, Job, Message
from edge.daemon.sequence import SequenceCounter
from edge.wire.messages import (
    EVENT_TOPIC_PREFIX,
    STATUS_TOPIC_PREFIX,
    CameraState,
    build_event,
    build_heartbeat,
    build_status,
)

log = logging.getLogger(__name__)

ENQUEUE_TIMEOUT_S = 1.0


class Announcer:
    """Builds one run's status, event and heartbeat messages; queues the first two for the publishing thread."""

    def __init__(self, items: queue.Queue[Job | Message], station: str, sequence: SequenceCounter,
                 accounting: Accounting, publishing_finished: Callable[[], bool]) -> None:
        self.items = items
        self.station = station
        self.sequence = sequence
        self.accounting = accounting
        self.publishing_finished = publishing_finished

    def camera(self, state: CameraState, reason: str | None, next_retry_s: float | None, attempt: int,
               stats: dict[str, int]) -> None:
        """Queue a ``status.<station>`` message: the camera went down, failed a retry, came back or was given up."""
        self._enqueue(Message(STATUS_TOPIC_PREFIX, build_status(
            station=self.station, camera=state, reason=reason, attempt=attempt, next_retry_s=next_retry_s,
            stats=stats, verdicts=self.accounting.verdicts)))

    def error_streak(self, count: int, last_error: str | None, camera_up: bool, stats: dict[str, int]) -> dict[str, Any]:
        """A ``status.<station>`` payload for the publishing thread to send now: error verdicts in a row."""
        reason = f"{count} error verdicts in a row, the last: {last_error}" if count else None
        return build_status(station=self.station, camera="up" if camera_up else "down", reason=reason, attempt=0,
                            next_retry_s=None, stats=stats, verdicts=self.accounting.verdicts,
                            error_frames_in_row=count, subject="errors")

    def output_link(self, reason: str, camera_up: bool, stats: dict[str, int],
                    outputs: dict[str, Any]) -> dict[str, Any]:
        """A ``status.<station>`` payload for the publishing thread to send now: an output's link went or came."""
        return build_status(station=self.station, camera="up" if camera_up else "down", reason=reason, attempt=0,
                            next_retry_s=None, stats=stats, verdicts=self.accounting.verdicts, outputs=outputs,
                            subject="output")

    def event(self, event: str, detail: dict[str, Any]) -> None:
        """Queue an ``event.<station>`` message, unless publishing has already ended."""
        if self.publishing_finished():
            return
        self._enqueue(Message(EVENT_TOPIC_PREFIX, self._event(event, detail)))

    def event_payload(self, event: str, detail: dict[str, Any]) -> dict[str, Any]:
        """An event to send directly (``stopped``, once the publishing thread has finished)."""
        return self._event(event, detail)

    def heartbeat(self, first: bool, *, paused: bool, camera_up: bool, bundle_id: str,
                  outputs: dict[str, Any]) -> dict[str, Any]:
        """A ``heartbeat.<station>`` payload, for the publishing thread to send now."""
        return build_heartbeat(
            station=self.station, run_id=self.sequence.run_id, restart=first, last_seq=self.sequence.last,
            paused=paused, camera_up=camera_up, bundle_id=bundle_id, counters=self.accounting.snapshot(),
            outputs=outputs)

    def status_line(self, paused: bool, bundle_id: str | None) -> str:
        """The one line systemd shows for the unit (``STATUS=``)."""
        c = self.accounting.snapshot()
        return (f"{'paused' if paused else 'inspecting'}: {c['verdicts']} verdicts, {c['dropped']} dropped, "
                f"{c['errors']} errors; bundle {bundle_id or '-'}")

    def _event(self, event: str, detail: dict[str, Any]) -> dict[str, Any]:
        return build_event(station=self.station, run_id=self.sequence.run_id, event=event, detail=detail)

    def _enqueue(self, message: Message) -> None:
        try:
            self.items.put(message, timeout=ENQUEUE_TIMEOUT_S)
        except queue.Full:
            log.warning("%s message not published: publish queue full", message.prefix.rstrip("."))


def log_verdict(message: dict[str, Any]) -> None:
    """The one log line per verdict (journald keeps it beside the published message); WARNING for an error verdict."""
    score, threshold = message["score"], message["threshold"]
    total = message["latency_ms"].get("total", 0.0)
    log.log(
        logging.WARNING if message["error"] else logging.INFO,
        "seq=%s frame=%s %s score=%s thr=%s regions=%d total=%.1fms source=%s%s",
        message["seq"], message["frame_id"], message["verdict"],
        "-" if score is None else f"{score:.4f}", "-" if threshold is None else f"{threshold:.4f}",
        len(message["regions"]), total, message["source"], f" error={message['error']}" if message["error"] else "",
    )
