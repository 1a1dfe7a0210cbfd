"""The inference and publishing threads of the pipeline (acquisition is :mod:`edge.daemon.acquisition`).

Inference is the only user of the :class:`~edge.model.inspector.Inspector` (engines are not
thread-safe); a reload hands it a new one (and the new ``max_consecutive_failures``) through
:meth:`InferenceStage.swap`, which takes effect between two frames, so no frame is decided by half
a bundle. Publishing is the only user of the ZeroMQ socket (sockets are not thread-safe either):
it numbers verdicts, sends them and every status/event message in order, sends a heartbeat when
nothing else went out for ``heartbeat_s``, feeds the NG archive and the metrics, and tells the
systemd watchdog that the pipeline is alive. The attachments a verdict may carry (the map PNG
with ``send_map``, the frame's JPEG with ``send_image``, for the live view) are encoded here, so
their cost shows in ``latency_ms.publish`` and never delays the next inference. Both drain their input queue before finishing, so
at a stop the frames already grabbed still get their verdicts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from edge.daemon.pipeline import POLL_S, Accounting, FrameQueue, Job, Message, Worker
from edge.daemon.sequence import SequenceCounter
from edge.model.bundle import Bundle
from edge.model.imageio import ImageReadError, encode_jpeg
from edge.model.inspector import Inspector
from edge.ops.latency import LatencyWindow
from edge.outputs import OutboundMessage
from edge.wire.messages import HEARTBEAT_TOPIC_PREFIX, STATUS_TOPIC_PREFIX, encode_message
from edge.wire.publisher import Publisher
from edge.wire.verdict import build_verdict, encode_verdict

log = logging.getLogger(__name__)

STAGES = ("decode", "queue", "preprocess", "inference", "postprocess", "publish", "total")


class InferenceStage(Worker):
    """Takes frames from the frame queue, decides, hands the job to publishing."""

    def __init__(self, frames: FrameQueue, out: queue.Queue[Job | Message], inspector: Inspector, bundle: Bundle,
                 upstream_done: threading.Event, stop: threading.Event, max_failures: int) -> None:
        super().__init__("inference", stop)
        self.frames = frames
        self.out = out
        self.inspector = inspector
        self.bundle = bundle
        self.upstream_done = upstream_done
        self.max_failures = max_failures
        self.busy_since: float | None = None
        self._failures_in_row = 0
        self._pending: tuple[Inspector, Bundle, int] | None = None

    def swap(self, inspector: Inspector, bundle: Bundle, max_failures: int | None = None) -> None:
        """Use ``inspector`` (and ``max_failures``, if given) from the next frame on (called from the reload path).

        The count of failures in a row starts again with the new inspector: the old one's failures
        say nothing about it.
        """
        self._pending = (inspector, bundle, self.max_failures if max_failures is None else max_failures)

    def _run(self) -> None:
        while True:
            job = self.frames.get(POLL_S)
            if job is None:
                if self.upstream_done.is_set() and self.frames.qsize() == 0:
                    return
                continue
            if self._pending is not None:
                self.inspector, self.bundle, self.max_failures = self._pending
                self._pending = None
                self._failures_in_row = 0
                log.info("now inspecting with bundle %s (stopping after %d inference failures in a row)",
                         self.bundle.bundle_id, self.max_failures)
            self.busy_since = time.monotonic()
            self._inspect(job)
            self.busy_since = None
            self._hand_on(job)

    def _inspect(self, job: Job) -> None:
        frame = job.frame
        job.bundle_id = self.bundle.bundle_id
        job.stages_ms["decode"] = float(frame.decode_ms)
        job.stages_ms["queue"] = (time.perf_counter() - job.t_grabbed) * 1e3
        if frame.error is not None or frame.image is None:
            job.error = f"decode: {frame.error or 'camera delivered no image'}"
        else:
            try:
                job.inspection = self.inspector.inspect(frame.image)
            except Exception as exc:  # noqa: BLE001 - any failure on one frame must become an NG verdict
                job.error = f"inference: {exc}"
                self._failures_in_row += 1
                log.warning("inference failed on %s: %s", frame.source, exc)
                if self._failures_in_row >= self.max_failures and self.failure is None:
                    self.failure = f"inference failed on {self.max_failures} frames in a row"
                    log.error("%s; stopping", self.failure)
                    self.stop.set()
            else:
                self._failures_in_row = 0
                job.stages_ms.update(job.inspection.timings_ms)
        job.t_inspected = time.perf_counter()

    def _hand_on(self, job: Job) -> None:
        """Blocking put: publishing is fast, so a full queue only means a brief wait (back-pressure)."""
        while True:
            try:
                self.out.put(job, timeout=POLL_S)
                return
            except queue.Full:
                continue


class PublishStage(Worker):
    """Numbers and sends verdicts and messages; heartbeats when idle; archive, metrics, watchdog.

    Every message it sends (verdict, heartbeat, status, event) is handed to ``on_sent`` just
    before it goes out on the socket, which feeds the outputs beside the publisher without waiting
    for them; an output that persists (the broker outbox) thus has every message a subscriber can
    have seen, even when the process is killed between the two.
    """

    def __init__(self, items: queue.Queue[Job | Message], publisher: Publisher, sequence: SequenceCounter,
                 accounting: Accounting, latency: LatencyWindow, station: str, heartbeat_s: float, send_map: bool,
                 upstream_done: threading.Event, heartbeat: Callable[[bool], dict[str, Any]],
                 on_verdict: Callable[[dict[str, Any], Job, bytes | None], None],
                 alive: Callable[[], None], pipeline_healthy: Callable[[], bool], stop: threading.Event,
                 on_sent: Callable[[OutboundMessage], None] = lambda _message: None, *,
                 send_image: bool = False, image_max_side: int = 640, image_quality: int = 80,
                 error_alarm: tuple[int, Callable[[int, str | None], dict[str, Any]]] | None = None,
                 watch: Callable[[], dict[str, Any] | None] = lambda: None) -> None:
        super().__init__("publish", stop)
        self.items = items
        self.publisher = publisher
        self.sequence = sequence
        self.accounting = accounting
        self.latency = latency
        self.station = station
        self.heartbeat_s = heartbeat_s
        self.send_map = send_map
        self.send_image = send_image
        self.image_max_side = image_max_side
        self.image_quality = image_quality
        self.upstream_done = upstream_done
        self.heartbeat = heartbeat
        self.on_verdict = on_verdict
        self.alive = alive
        self.pipeline_healthy = pipeline_healthy
        self.on_sent = on_sent
        self.first = True
        self._last_sent = time.monotonic()
        self.error_alarm = error_alarm  # (after N error verdicts in a row, the status message to send)
        self.errors_in_row = 0
        self.watch = watch  # polled between messages: a status payload to send now (an output's link), or None

    def _run(self) -> None:
        while True:
            wait = POLL_S
            if self.heartbeat_s > 0:
                wait = max(0.0, min(POLL_S, self._last_sent + self.heartbeat_s - time.monotonic()))
            status = self.watch()
            if status is not None:
                self._send_status(status)
            try:
                item = self.items.get(timeout=wait)
            except queue.Empty:
                if self.upstream_done.is_set() and self.items.empty():
                    return
                self._maybe_heartbeat()
                continue
            if isinstance(item, Message):
                self.on_sent(OutboundMessage(item.kind, item.payload))  # type: ignore[arg-type]
                self._send(item.payload_parts())
            else:
                self._publish(item)

    def _send(self, parts: list[bytes]) -> None:
        self.publisher.send(parts)
        self._last_sent = time.monotonic()

    def _maybe_heartbeat(self) -> None:
        if self.heartbeat_s <= 0 or time.monotonic() - self._last_sent < self.heartbeat_s:
            return
        payload = self.heartbeat(self.first)
        self.on_sent(OutboundMessage("heartbeat", payload))
        self._send(encode_message(HEARTBEAT_TOPIC_PREFIX, payload))
        self.first = False
        if self.pipeline_healthy():
            self.alive()

    def _publish(self, job: Job) -> None:
        inspection = job.inspection
        map_png = inspection.map_png() if self.send_map and inspection is not None else None
        image_jpeg = self._frame_jpeg(job)
        self.accounting.verdict(error=job.error is not None)
        message = build_verdict(
            station=self.station, seq=self.sequence.next(), frame=job.frame, bundle_id=job.bundle_id,
            counters=self.accounting.snapshot(), inspection=inspection, error=job.error,
            has_map=map_png is not None, has_image=image_jpeg is not None, run_id=self.sequence.run_id,
            restart=self.first,
        )
        parts = encode_verdict(message, map_png, job.t_inspected or None, image_jpeg)
        self.on_sent(OutboundMessage("verdict", message, {"map_png": map_png} if map_png is not None else {}))
        self._send(parts)
        self.first = False
        stages = dict(job.stages_ms)
        stages["publish"] = message["latency_ms"]["publish"]
        stages["total"] = message["latency_ms"]["total"]
        self.latency.add(stages)
        self.alive()
        self.on_verdict(message, job, map_png)
        self._track_errors(job.error)

    def _frame_jpeg(self, job: Job) -> bytes | None:
        """The frame as a JPEG for the live view, or None (send_image off, no image, encoding failed)."""
        image = job.frame.image
        if not self.send_image or image is None or image.size == 0:
            return None
        try:
            return encode_jpeg(image, self.image_max_side, self.image_quality)
        except ImageReadError as exc:  # the verdict matters more than its picture
            log.warning("frame %s sent without its image: %s", job.frame.source, exc)
            return None

    def _track_errors(self, error: str | None) -> None:
        """Error verdicts in a row: a status message when they reach the alarm count, and when the streak ends."""
        before = self.errors_in_row
        self.errors_in_row = before + 1 if error is not None else 0
        if self.error_alarm is None or self.error_alarm[0] <= 0:
            return
        after, status = self.errors_in_row, self.error_alarm[1]
        if after == self.error_alarm[0]:
            log.warning("%d error verdicts in a row (the last: %s): is the source or camera failing?", after, error)
            self._send_status(status(after, error))
        elif after == 0 and before >= self.error_alarm[0]:
            log.warning("frames are inspected again after %d error verdicts in a row", before)
            self._send_status(status(0, None))

    def _send_status(self, payload: dict[str, Any]) -> None:
        self._send(encode_message(STATUS_TOPIC_PREFIX, payload))
        self.on_sent(OutboundMessage("status", payload))
