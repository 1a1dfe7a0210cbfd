"""The daemon: start the pipeline, keep it running for months, stop it without losing a part.

This is the process systemd keeps alive on the line. Its promises:

- every frame the camera delivers gets exactly one verdict with the next ``seq``, or is counted
  as dropped with a reason (see :mod:`edge.daemon.pipeline`); a frame that cannot be inspected gets a
  fail-safe NG with ``error`` set, never a crash;
- SIGTERM/SIGINT only set the stop event: acquisition stops, the frames already grabbed are
  inspected and published, the socket is flushed and the process exits 0;
- SIGHUP or the ``reload`` control command loads the config file and its bundle again without
  closing the verdict socket, and re-reads the Curve allow-lists (a client key added to the folder
  needs no restart); a bundle that fails validation or its self-test is refused, the old one keeps
  deciding, and the refusal is logged and published on ``event.<station>``;
- a problem that makes starting pointless (missing or bad bundle, missing source, port in use) is
  one line on stderr and exit code 2; a camera that stays lost past the reconnect budget, or a
  model failing every frame, ends in exit 1 for systemd's ``Restart=on-failure``;
- systemd hears READY once everything is up, STATUS lines while running and WATCHDOG pings only
  while verdicts or heartbeats really flow (:mod:`edge.ops.notify`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from edge.cameras import Camera, CameraError, create_camera
from edge.control.keys import KeyFileError
from edge.daemon.acquisition import Acquisition, open_at_start
from edge.daemon.announce import Announcer, log_verdict
from edge.daemon.config import ConfigError, EdgeConfig
from edge.daemon.deadlines import warn_if_over_budget
from edge.daemon.outputlinks import OutputLinks
from edge.daemon.pipeline import (
    PUBLISH_JOIN_MIN_S,
    PUBLISH_QUEUE,
    Accounting,
    FrameQueue,
    Job,
    Message,
    drain,
    pipeline_healthy,
)
from edge.daemon.preflight import StartupError, load_inspector, preflight, state_dir_for, take_state_lock
from edge.daemon.sequence import SequenceCounter, SequenceError
from edge.daemon.services import ServiceError, Services
from edge.daemon.stages import InferenceStage, PublishStage
from edge.daemon.statelock import StateLock
from edge.model.bundle import Bundle, BundleError
from edge.ops.latency import LatencyWindow
from edge.outputs import OutboundMessage
from edge.wire.messages import EVENT_TOPIC_PREFIX, CameraState, encode_message
from edge.wire.publisher import Publisher, PublishError

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_STARTUP = 2
STATUS_EVERY_S = 5.0
# Sections a reload cannot apply to a running daemon (they own sockets, threads or the camera).
RESTART_ONLY = ("station", "camera", "publish", "pipeline", "state_dir", "watchdog", "control", "metrics", "archive",
                "outputs")


class ReloadRefused(Exception):
    """A reload was refused; the running bundle goes on. The message says why."""


class InspectionDaemon:
    """Owns the camera, bundle, pipeline threads and publisher for one run of the daemon."""

    def __init__(self, config: EdgeConfig, stop: threading.Event,
                 reload_config: Callable[[], EdgeConfig] | None = None, services: Services | None = None) -> None:
        self.config = config
        self.stop = stop
        self.reload_requested = threading.Event()
        self.reload_config = reload_config or (lambda: self.config)
        self.services = services if services is not None else Services(config)
        self.accounting = Accounting()
        self.latency = LatencyWindow()
        self.sequence = SequenceCounter(state_dir_for(config))
        self.state_lock: StateLock | None = None
        self.bundle: Bundle | None = None
        self.publisher: Publisher | None = None
        self.camera: Camera | None = None
        self.acquisition: Acquisition | None = None
        self.inference: InferenceStage | None = None
        self.publishing: PublishStage | None = None
        self.started_at = time.monotonic()
        self.frames = FrameQueue(config.pipeline.queue_size, config.pipeline.overload, self.accounting, stop)
        self._items: queue.Queue[Job | Message] = queue.Queue(maxsize=PUBLISH_QUEUE)
        self.announce = Announcer(self._items, config.station, self.sequence, self.accounting,
                                  lambda: self.publishing is not None and self.publishing.finished.is_set())
        self._reload_lock = threading.Lock()
        self._acquisition_done = threading.Event()
        self._inference_done = threading.Event()

    # ----------------------------------------------------------------- start / run / stop

    def start(self) -> None:
        """Check, lock, bind, load and open everything, in the order it is later closed in reverse; StartupError.

        The verdict socket is bound before the bundle loads and self-tests, so a subscriber that was
        already waiting has its connection up by the first frame (a PUB socket drops what it sends
        before then). A camera that cannot be opened yet (late at boot) is not a start-up error: the
        acquisition thread retries it with the reconnect backoff and the line sees ``status`` down.
        """
        config = self.config
        bundle = preflight(config)
        self.state_lock = take_state_lock(config)
        warn_if_over_budget(config)
        try:
            self.publisher = Publisher(config.publish.endpoint, config.publish.sndhwm, config.publish.linger_ms,
                                       curve=config.publish.curve)
        except PublishError as exc:
            raise StartupError(f"publish: {exc}") from None
        try:
            self.bundle, inspector, _ = load_inspector(config, bundle)
        except BundleError as exc:
            raise StartupError(f"bundle: {exc}") from None
        log.info("bundle %s loaded from %s (%s)", self.bundle.bundle_id, self.bundle.root, inspector.backend.settings())
        try:
            self.sequence.open()
        except SequenceError as exc:
            raise StartupError(str(exc)) from None
        camera = self.camera = create_camera(config.camera)
        try:
            camera_down = open_at_start(camera)  # late at boot: retried; a bad setting (CameraError) stops the start
        except CameraError as exc:
            raise StartupError(str(exc)) from None
        self.acquisition = Acquisition(
            camera, self.frames, self.accounting, config.watchdog, self.stop, self._on_camera_status,
            on_demand=config.pipeline.acquisition == "on_demand",
            count_discards=getattr(config.camera, "trigger", "free_run") != "software", start_down=camera_down,
        )
        self.inference = InferenceStage(self.frames, self._items, inspector, self.bundle, self._acquisition_done,
                                        self.stop, config.runtime.max_consecutive_failures)
        self.publishing = PublishStage(
            self._items, self.publisher, self.sequence, self.accounting, self.latency, config.station,
            config.publish.heartbeat_s, config.publish.send_map, self._inference_done, self._heartbeat,
            self._on_verdict, self.services.alive, self._healthy, self.stop, on_sent=self.services.published,
            send_image=config.publish.send_image, image_max_side=config.publish.image_max_side,
            image_quality=config.publish.image_quality,
            error_alarm=(config.watchdog.error_frames_alarm, self._error_status), watch=OutputLinks(
                self.services.output_stats, self.announce.output_link, self._camera_up, self._camera_stats).poll)
        try:
            self.services.start(bundle_id=self.bundle.bundle_id, handlers=self.handlers(), stop=self.stop,
                                counts=self.accounting.snapshot, queue_depths=self._queue_depths,
                                state_dir=state_dir_for(config), run_id=self.sequence.run_id)
        except ServiceError as exc:
            raise StartupError(str(exc)) from None

    def run(self) -> int:
        """Start, run until the stream ends or ``stop`` is set, drain, shut down; return the exit code."""
        try:
            self.start()
        except StartupError:
            self.shutdown()
            raise
        try:
            self._wait_for_subscriber()
            assert self.acquisition and self.inference and self.publishing
            self.publishing.start()
            self.inference.start()
            self.acquisition.start()
            self.announce.event("started", {"bundle_id": self.bundle.bundle_id if self.bundle else None,
                                            "previous_stop_clean": self.sequence.previous_clean})
            self.services.notify("ready", self._status_line())
            self._supervise()
            code = self._drain()
        finally:
            self.shutdown()
        return code

    def _wait_for_subscriber(self) -> None:
        wait_s = self.config.publish.wait_subscriber_s
        if self.publisher is None:
            return
        if wait_s <= 0:
            self.publisher.settle(stop=self.stop)  # subscribers already retrying their connect get in first
            return
        log.info("waiting up to %.1f s for a subscriber", wait_s)
        if not self.publisher.wait_for_subscriber(wait_s, self.stop):
            log.warning("no subscriber after %.1f s; publishing anyway", wait_s)

    def _supervise(self) -> None:
        """Main thread: reloads on request, STATUS lines, until acquisition has finished."""
        assert self.acquisition is not None
        next_status = time.monotonic() + STATUS_EVERY_S
        while not self.acquisition.finished.wait(0.2):
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                try:
                    self.reload("SIGHUP")
                except ReloadRefused:
                    pass  # logged and published by reload()
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + STATUS_EVERY_S
                self.services.notify("status", self._status_line())
        if self.stop.is_set():
            log.info("stop requested: finishing the frames already grabbed")
            self.services.notify("stopping")

    def _drain(self) -> int:
        """Let inference and publishing finish what was grabbed, within the shutdown deadline."""
        assert self.acquisition and self.inference and self.publishing
        deadline = time.monotonic() + self.config.pipeline.shutdown_timeout_s
        self._acquisition_done.set()
        if not self.inference.join(max(0.0, deadline - time.monotonic())):
            log.error("inference did not finish within the shutdown deadline; frames still queued are dropped")
        lost = self.frames.discard_all("shutdown")
        self._inference_done.set()
        if not self.publishing.join(max(PUBLISH_JOIN_MIN_S, deadline - time.monotonic())):
            log.error("publishing did not finish within the shutdown deadline")
        lost += self._discard_items()
        failure = self.acquisition.failure or self.inference.failure or self.publishing.failure
        counts = self.accounting.snapshot()
        if self.publisher is not None and self.publishing.finished.is_set():  # only then may this thread use it
            stopped = self.announce.event_payload("stopped", {
                "counters": counts, "last_seq": self.sequence.last, "balanced": self.accounting.balanced(),
                "failure": failure, "latency_ms": self.latency.summary(),
                "camera": {"reconnects": self.acquisition.reconnects, "stats": self._camera_stats()},
                "outputs": self.services.output_stats()})
            self.services.published(OutboundMessage("event", stopped))
            self.publisher.send(encode_message(EVENT_TOPIC_PREFIX, stopped))
        log.info("stopped: frames=%d verdicts=%d errors=%d drops=%s last_seq=%d reconnects=%d balanced=%s camera=%s",
                 counts["frames"], counts["verdicts"], counts["errors"], counts["drops"], self.sequence.last,
                 self.acquisition.reconnects, self.accounting.balanced(), self._camera_stats())
        if lost:
            log.warning("%d frame(s) dropped at shutdown", lost)
        if failure:
            log.error("stopping: %s", failure)
            return EXIT_FAILURE
        return EXIT_OK

    def _discard_items(self) -> int:
        count = sum(isinstance(item, Job) for item in drain(self._items))
        if count:
            self.accounting.drop("shutdown", count)
        return count

    def shutdown(self) -> None:
        """Close in reverse start order: services, camera (no new frames), publisher (flush), sequence."""
        self.services.close()
        if self.camera is not None:
            self.camera.close()
            self.camera = None
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None
        try:
            self.sequence.close()
        except SequenceError as exc:
            log.error("%s", exc)
        if self.state_lock is not None:
            self.state_lock.release()

    # ----------------------------------------------------------------- control

    def reload(self, source: str) -> dict[str, Any]:
        """Load the config file and its bundle again; swap the bundle in between two frames.

        The bundle, ``runtime`` (engine settings and ``max_consecutive_failures``) and ``log_level``
        are applied, and the Curve allow-lists of the sockets already open are read again (a client
        key added to the folder is admitted from now on). Raises ReloadRefused (after logging and
        publishing the refusal) when the new config, bundle or an allow-list cannot be used; the
        running bundle is untouched then. Sections that own sockets, threads or the camera are not
        applied by a reload; a change there is reported as needing a restart.
        """
        with self._reload_lock:
            self.services.notify("reloading")
            try:
                new = self.reload_config()
                bundle, inspector, selftest = load_inspector(new)
                if self.publisher is not None:
                    self.publisher.reload_allowed_clients()
                self.services.reload_allowed_clients()
            except (ConfigError, BundleError, KeyFileError) as exc:
                reason = str(exc)
                log.error("reload (%s) refused, bundle %s keeps running: %s", source,
                          self.bundle.bundle_id if self.bundle else "-", reason)
                self.announce.event("reload_refused", {"reason": reason, "source": source,
                                                       "bundle_id": self.bundle.bundle_id if self.bundle else None})
                self._count_reload("refused")
                self.services.notify("ready", self._status_line())
                raise ReloadRefused(reason) from None
            needs_restart = [name for name in RESTART_ONLY if getattr(new, name) != getattr(self.config, name)]
            if needs_restart:
                log.warning("reload: changes to %s take effect only after a restart", ", ".join(needs_restart))
            assert self.inference is not None
            self.inference.swap(inspector, bundle, new.runtime.max_consecutive_failures)
            old = self.bundle.bundle_id if self.bundle else None
            self.bundle = bundle
            self.config = self.config.model_copy(update={"bundle": new.bundle, "runtime": new.runtime,
                                                         "log_level": new.log_level})
            logging.getLogger().setLevel(new.log_level)
            detail = {"bundle_id": bundle.bundle_id, "previous_bundle_id": old, "source": source,
                      "selftest": selftest, "needs_restart": needs_restart}
            log.info("reload (%s): bundle %s -> %s", source, old, bundle.bundle_id)
            self.announce.event("reload", detail)
            self._count_reload("ok")
            self.services.notify("ready", self._status_line())
            return detail

    def pause(self) -> dict[str, Any]:
        assert self.acquisition is not None
        self.acquisition.paused.set()
        self.services.paused(True)
        log.info("paused: no frames are grabbed until resume")
        return {"state": "paused"}

    def resume(self) -> dict[str, Any]:
        assert self.acquisition is not None
        self.acquisition.paused.clear()
        self.services.paused(False)
        log.info("resumed")
        return {"state": "running"}

    def trigger(self, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """One frame in ``on_demand`` mode; ``args["part_id"]`` (optional) travels into its verdict."""
        assert self.acquisition is not None
        return {"pending": self.acquisition.trigger((args or {}).get("part_id"))}

    def status(self) -> dict[str, Any]:
        """What ``ctl status`` answers: camera, bundle, counters, latency percentiles, queues."""
        acq = self.acquisition
        return {
            "station": self.config.station,
            "run_id": self.sequence.run_id,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "state": "paused" if acq is not None and acq.paused.is_set() else "running",
            "acquisition": self.config.pipeline.acquisition,
            "camera": {"type": self.config.camera.type, "up": self._camera_up(),
                       "reconnects": acq.reconnects if acq else 0, "stats": self._camera_stats()},
            "bundle": {"id": self.bundle.bundle_id if self.bundle else None,
                       "path": str(self.bundle.root) if self.bundle else None},
            "counters": self.accounting.snapshot(),
            "last_seq": self.sequence.last,
            "latency_ms": self.latency.summary(),
            "queues": {**self._queue_depths(), "policy": self.config.pipeline.overload},
            "outputs": self.services.output_stats(),
        }

    def handlers(self) -> Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        """Control commands, by name, for :class:`edge.control.server.ControlServer`."""
        return {  # the names of edge.control.COMMANDS, which ctl offers (a test keeps them equal)
            "status": lambda _args: self.status(),
            "trigger": self.trigger,
            "reload": lambda _args: self.reload("control"),
            "pause": lambda _args: self.pause(),
            "resume": lambda _args: self.resume(),
        }

    # ----------------------------------------------------------------- callbacks from the threads

    def _on_camera_status(self, state: CameraState, reason: str | None, next_retry_s: float | None,
                          attempt: int) -> None:
        self.announce.camera(state, reason, next_retry_s, attempt, self._camera_stats())
        self.services.camera(state)

    def _heartbeat(self, first: bool) -> dict[str, Any]:
        acq = self.acquisition
        self.services.heartbeat()
        return self.announce.heartbeat(first, paused=bool(acq and acq.paused.is_set()), camera_up=self._camera_up(),
                                       bundle_id=self.bundle.bundle_id if self.bundle else "",
                                       outputs=self.services.output_stats())

    def _error_status(self, count: int, last_error: str | None) -> dict[str, Any]:
        return self.announce.error_streak(count, last_error, self._camera_up(), self._camera_stats())

    def _on_verdict(self, message: dict[str, Any], job: Job, map_png: bytes | None) -> None:
        log_verdict(message)
        self.services.verdict(message, job, map_png)

    def _healthy(self) -> bool:
        return pipeline_healthy(self.inference.busy_since if self.inference is not None else None,
                                self.acquisition.busy_since if self.acquisition is not None else None,
                                time.monotonic())

    def _camera_up(self) -> bool:
        return bool(self.acquisition and self.acquisition.camera_up)

    def _camera_stats(self) -> dict[str, int]:
        return self.camera.stats() if self.camera is not None else {}

    def _queue_depths(self) -> dict[str, int]:
        """Items waiting per internal queue (for ``status`` and each metrics scrape, from any thread)."""
        return {"frames": self.frames.qsize(), "publish": self._items.qsize()}

    def _count_reload(self, result: str) -> None:
        self.services.reload(result, self.bundle.bundle_id if self.bundle else None)

    def _status_line(self) -> str:
        return self.announce.status_line(bool(self.acquisition and self.acquisition.paused.is_set()),
                                         self.bundle.bundle_id if self.bundle else None)
