"""The inspection loop: grab a frame, decide OK/NG with the bundle, publish the verdict.

This is the process systemd keeps alive on the line. Its promises: every frame the camera
delivers gets exactly one verdict with the next ``seq`` (a frame that cannot be inspected gets a
fail-safe NG with ``error`` set, never a crash); SIGTERM/SIGINT only set the stop event, so the
frame in flight is finished and published before the socket is flushed and closed and the process
exits 0; a problem that makes starting pointless (missing or bad bundle, missing source, port in
use) is one line on stderr and exit code 2, so systemd and the operator see why at once. A camera
lost mid-shift (or silent past ``watchdog.no_frame_s``) is closed and reopened with a doubling
delay while ``status.<station>`` messages tell the line it is down; after
``watchdog.reconnect_budget`` failed attempts in a row the daemon exits 1 for systemd to restart.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from edge.bundle import Bundle, BundleError, load_bundle
from edge.cameras import Camera, CameraDisconnected, CameraError, Frame, GrabTimeout, create_camera
from edge.config import EdgeConfig
from edge.inference import Inspection, Inspector
from edge.publisher import Publisher, PublishError
from edge.status import CameraState, build_status, encode_status
from edge.verdict import build_verdict, encode_verdict

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_STARTUP = 2
GRAB_TIMEOUT_S = 1.0


class StartupError(Exception):
    """The daemon cannot start; the message is one line for stderr (exit code 2)."""


class RuntimeFailure(Exception):
    """The daemon cannot go on (camera lost, model failing every frame); exit code 1."""


@dataclass
class Counters:
    """Running totals; ``frames`` and ``errors`` go out in every verdict."""

    frames: int = 0
    verdicts: int = 0
    errors: int = 0
    failures_in_row: int = 0
    reconnects: int = 0


class InspectionDaemon:
    """Owns the bundle, inspector, publisher and camera for one run of the loop."""

    def __init__(self, config: EdgeConfig, stop: threading.Event) -> None:
        self.config = config
        self.stop = stop
        self.counters = Counters()
        self.bundle: Bundle | None = None
        self.inspector: Inspector | None = None
        self.publisher: Publisher | None = None
        self.camera: Camera | None = None
        self._failed_attempts = 0
        self._last_frame_at = time.monotonic()

    def start(self) -> None:
        """Load and open everything, in the order it is later closed in reverse; StartupError on failure."""
        config = self.config
        try:
            self.bundle = load_bundle(config.bundle)
        except BundleError as exc:
            raise StartupError(f"bundle: {exc}") from None
        try:
            backend = None if config.runtime.backend == "auto" else config.runtime.backend
            self.inspector = Inspector(self.bundle, backend=backend, options=config.runtime.options())
        except BundleError as exc:
            raise StartupError(f"bundle: {exc}") from None
        log.info("bundle %s loaded from %s (%s)", self.bundle.bundle_id, self.bundle.root,
                 self.inspector.backend.settings())
        try:
            self.publisher = Publisher(config.publish.endpoint, config.publish.sndhwm, config.publish.linger_ms)
        except PublishError as exc:
            raise StartupError(f"publish: {exc}") from None
        try:
            camera = create_camera(config.camera)
            camera.open()
        except CameraError as exc:
            raise StartupError(str(exc)) from None
        self.camera = camera

    def run(self) -> int:
        """Start, loop until the stream ends or ``stop`` is set, shut down; return the exit code."""
        try:
            self.start()
        except StartupError:
            self.shutdown()
            raise
        try:
            self._wait_for_subscriber()
            self._loop()
            c = self.counters
            log.info("stopped: frames=%d verdicts=%d errors=%d last_seq=%d reconnects=%d camera=%s", c.frames,
                     c.verdicts, c.errors, c.verdicts, c.reconnects, self._camera_stats())
        except RuntimeFailure as exc:
            log.error("stopping: %s (camera=%s)", exc, self._camera_stats())
            return EXIT_FAILURE
        finally:
            self.shutdown()
        return EXIT_OK

    def _wait_for_subscriber(self) -> None:
        wait_s = self.config.publish.wait_subscriber_s
        if wait_s <= 0 or self.publisher is None:
            return
        log.info("waiting up to %.1f s for a subscriber", wait_s)
        if not self.publisher.wait_for_subscriber(wait_s, self.stop):
            log.warning("no subscriber after %.1f s; publishing anyway", wait_s)

    def _loop(self) -> None:
        assert self.camera is not None
        no_frame_s = self.config.watchdog.no_frame_s
        self._last_frame_at = time.monotonic()
        while not self.stop.is_set():
            try:
                frame = self.camera.grab(GRAB_TIMEOUT_S)
            except GrabTimeout:
                silent = time.monotonic() - self._last_frame_at
                if no_frame_s > 0 and silent > no_frame_s:
                    self._reconnect(f"no frame for {silent:.1f} s")
                continue
            except CameraDisconnected as exc:
                self._reconnect(str(exc))
                continue
            except CameraError as exc:
                raise RuntimeFailure(f"camera: {exc}") from None
            if frame is None:
                log.info("end of stream")
                return
            self._last_frame_at = time.monotonic()
            self._failed_attempts = 0
            self.process(frame)
        log.info("stop requested")

    def _camera_stats(self) -> dict[str, int]:
        stats = getattr(self.camera, "stats", None)
        return stats() if callable(stats) else {}

    def _reconnect(self, reason: str) -> None:
        """Close and reopen the camera with a doubling delay until it opens, ``stop`` is set or the budget is spent.

        The budget counts failed attempts since the last delivered frame, so a camera that reopens but
        never delivers (or flaps) still ends in exit 1 instead of looping forever.
        """
        assert self.camera is not None
        watchdog = self.config.watchdog
        camera = self.camera
        log.warning("camera down: %s", reason)
        camera.close()
        while not self.stop.is_set():
            if self._failed_attempts >= watchdog.reconnect_budget:
                self._publish_status("gave_up", reason, None)
                raise RuntimeFailure(
                    f"camera: gave up after {self._failed_attempts} failed reconnect attempts (last: {reason})"
                )
            delay = min(watchdog.reconnect_delay_s * 2 ** self._failed_attempts, watchdog.reconnect_max_delay_s)
            self._publish_status("down", reason, delay)
            if self.stop.wait(delay):
                return
            try:
                camera.open()
            except CameraError as exc:
                self._failed_attempts += 1
                reason = str(exc)
                log.warning("reconnect attempt %d failed: %s", self._failed_attempts, reason)
                continue
            self._failed_attempts += 1  # reset only by a delivered frame
            self.counters.reconnects += 1
            self._last_frame_at = time.monotonic()
            log.info("camera reconnected (attempt %d)", self._failed_attempts)
            self._publish_status("up", None, None)
            return

    def _publish_status(self, state: CameraState, reason: str | None, next_retry_s: float | None) -> None:
        assert self.publisher is not None
        message = build_status(station=self.config.station, camera=state, reason=reason,
                               attempt=self._failed_attempts, next_retry_s=next_retry_s,
                               stats=self._camera_stats(), verdicts=self.counters.verdicts)
        self.publisher.send(encode_status(message))

    def process(self, frame: Frame) -> dict[str, object]:
        """Inspect one frame (or record why not), publish its verdict, return the payload."""
        assert self.inspector is not None and self.publisher is not None and self.bundle is not None
        counters = self.counters
        counters.frames += 1
        inspection: Inspection | None = None
        error: str | None = None
        if frame.error is not None or frame.image is None:
            error = f"decode: {frame.error or 'camera delivered no image'}"
        else:
            try:
                inspection = self.inspector.inspect(frame.image)
            except Exception as exc:  # noqa: BLE001 - any failure on one frame must become an NG verdict
                error = f"inference: {exc}"
                counters.failures_in_row += 1
                log.warning("inference failed on %s: %s", frame.source, exc)
            else:
                counters.failures_in_row = 0
        publish_start = time.perf_counter()
        if error is not None:
            counters.errors += 1
        send_map = self.config.publish.send_map and inspection is not None
        map_png = inspection.map_png() if send_map and inspection is not None else None
        seq = counters.verdicts + 1
        message = build_verdict(
            station=self.config.station, seq=seq, frame=frame, bundle_id=self.bundle.bundle_id,
            counters={"frames": counters.frames, "errors": counters.errors},
            inspection=inspection, error=error, has_map=map_png is not None,
        )
        self.publisher.send(encode_verdict(message, map_png, publish_start))
        counters.verdicts = seq
        self._log_verdict(message)
        limit = self.config.runtime.max_consecutive_failures
        if counters.failures_in_row >= limit:
            raise RuntimeFailure(f"inference failed on {limit} frames in a row")
        return message

    @staticmethod
    def _log_verdict(message: dict[str, object]) -> None:
        score, threshold = message["score"], message["threshold"]
        latency = message["latency_ms"]
        total = latency.get("total", 0.0) if isinstance(latency, dict) else 0.0
        log.info(
            "seq=%s frame=%s %s score=%s thr=%s regions=%d total=%.1fms source=%s%s",
            message["seq"], message["frame_id"], message["verdict"],
            "-" if score is None else f"{score:.4f}", "-" if threshold is None else f"{threshold:.4f}",
            len(message["regions"]) if isinstance(message["regions"], list) else 0,
            total, message["source"], f" error={message['error']}" if message["error"] else "",
        )

    def shutdown(self) -> None:
        """Close in reverse start order: camera first (no new frames), then flush the publisher."""
        if self.camera is not None:
            self.camera.close()
            self.camera = None
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None
