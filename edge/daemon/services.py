"""The daemon's side services: systemd notify and watchdog, metrics, NG archive, control socket.

None of these decides a verdict, and each can be switched off in the config, so they live apart
from the pipeline: the daemon calls a handful of plain methods here at its events (a verdict, a
heartbeat, a camera state change, a reload) and this module fans them out. What the services
read from the daemon (its control commands, the stop event, the accounting's counts, the queue
depths) is handed to :meth:`Services.start` as plain values and callables, so this module does
not know the daemon's class. Called from the publishing thread (verdict, heartbeat, alive), the
acquisition thread (camera) and the main or control thread (reload, paused, notify); each target
is safe for that, and a metrics scrape reads the counts from its own thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.control.server import ControlError, ControlServer, Handler
from edge.ops.archive import Archive, ArchiveWriter
from edge.ops.metrics import Metrics, Snapshot
from edge.ops.notify import SystemdNotifier, WatchdogPinger
from edge.outputs import OutboundMessage, OutputContext, OutputError, QueuedOutput, create_outputs

if TYPE_CHECKING:
    from edge.daemon.config import EdgeConfig
    from edge.daemon.pipeline import Job

log = logging.getLogger(__name__)

# How long each service may take to close (the daemon's stop budget adds them up: edge.daemon.deadlines).
ARCHIVE_CLOSE_S = 5.0
OUTPUTS_CLOSE_S = 2.0  # shared by all outputs: what is still queued after it is counted as undelivered
METRICS_CLOSE_S = 2.0
PINGER_CLOSE_S = 2.0


class ServiceError(Exception):
    """A service cannot start (metrics port in use, control keys missing); the daemon exits 2."""


class Services:
    """Starts, feeds and stops the side services of one daemon run."""

    def __init__(self, config: EdgeConfig, notifier: SystemdNotifier | None = None,
                 outputs: list[QueuedOutput] | None = None) -> None:
        """``outputs`` replaces those the config's ``outputs:`` section would build (for tests)."""
        self.config = config
        self.notifier = notifier or SystemdNotifier()
        self.pinger = WatchdogPinger(self.notifier)
        self.metrics = Metrics(config.metrics)
        self.archive: ArchiveWriter | None = None
        self.control: ControlServer | None = None
        self.outputs: list[QueuedOutput] = []
        self._given_outputs = outputs
        self._stopping_sent = False
        self._errors_in_row = 0

    def start(self, *, bundle_id: str | None, handlers: Mapping[str, Handler], stop: threading.Event,
              counts: Snapshot, queue_depths: Callable[[], Mapping[str, int]], state_dir: Path | None = None,
              run_id: str = "") -> None:
        """Start what the config enables; ServiceError with one line if something cannot start.

        ``handlers`` are the control commands (also handed to the outputs, so a PLC can trigger),
        ``stop`` the daemon's stop event (it also ends the control thread); ``counts`` (the
        accounting's snapshot) and ``queue_depths`` are read by each metrics scrape, from the
        scrape's thread.
        """
        config = self.config
        if config.archive.enabled:
            self.archive = ArchiveWriter(Archive(config.archive))
        context = OutputContext(station=config.station, handlers=handlers, stop=stop, state_dir=state_dir,
                                run_id=run_id)
        outputs = self._given_outputs if self._given_outputs is not None else create_outputs(config.outputs, context)
        self.metrics.read_from(counts, queue_depths, self.archive.stats if self.archive is not None else None,
                               self.output_stats)
        try:
            self.metrics.start()
        except OSError as exc:
            raise ServiceError(f"metrics: cannot serve on {config.metrics.host}:{config.metrics.port}: "
                               f"{exc.strerror or exc}") from None
        if bundle_id is not None:
            self.metrics.bundle(bundle_id)
        self.metrics.camera_up(True)
        if self.archive is not None:
            self.archive.start()
        if config.control.enabled:
            self.control = ControlServer(config.control, handlers, stop)
            try:
                self.control.start()
            except ControlError as exc:
                raise ServiceError(f"control: {exc}") from None
        for output in outputs:
            try:
                output.start()
            except OutputError as exc:
                raise ServiceError(f"outputs.{output.name}: {exc}") from None
            self.outputs.append(output)
        self.pinger.start()

    def reload_allowed_clients(self) -> int | None:
        """Re-read the control socket's allow-list (KeyFileError keeps the one in use); None if control is off."""
        return self.control.reload_allowed_clients() if self.control is not None else None

    def close(self) -> None:
        """Stop in reverse order; the archive writes what is queued within its deadline."""
        if not self._stopping_sent:
            self.notify("stopping")
        self.pinger.close(PINGER_CLOSE_S)
        deadline = time.monotonic() + OUTPUTS_CLOSE_S
        for output in reversed(self.outputs):
            lost = output.close(max(0.0, deadline - time.monotonic()))
            if lost:
                log.warning("outputs.%s: %d message(s) not delivered at shutdown", output.name, lost)
        if self.control is not None:
            self.control.close()
        if self.archive is not None:
            dropped = self.archive.close(ARCHIVE_CLOSE_S)
            if dropped:
                log.warning("archive: %d record(s) not written at shutdown", dropped)
        self.metrics.close(METRICS_CLOSE_S)
        self.notifier.close()

    def output_stats(self) -> dict[str, dict[str, Any]]:
        """Each started output's accounting, by name (heartbeats, ``stopped``, metrics)."""
        return {output.name: output.stats() for output in self.outputs}

    # events -------------------------------------------------------------------------------

    def published(self, message: OutboundMessage) -> None:
        """A message is about to go out on the verdict socket: hand it to every output first (never blocks).

        First, so that an output that persists (the broker outbox) holds everything a subscriber
        may have seen, even if the process dies right after the send.
        """
        for output in self.outputs:
            output.submit(message)

    def verdict(self, message: dict[str, Any], job: Job, map_png: bytes | None) -> None:
        metrics = self.metrics
        metrics.verdict(str(message["verdict"]), message.get("t_publish"))
        if message["error"]:
            metrics.error(str(message["error"]).split(":", 1)[0])
        self._errors_in_row = self._errors_in_row + 1 if message["error"] else 0
        metrics.errors_in_row(self._errors_in_row)
        for stage, ms in job.stages_ms.items():
            metrics.observe(stage, ms / 1000.0)
        metrics.observe("publish", message["latency_ms"]["publish"] / 1000.0)
        metrics.observe("total", message["latency_ms"]["total"] / 1000.0)
        if self.archive is not None:
            inspection = job.inspection
            self.archive.submit(message, job.frame.image,
                                map_png if map_png is not None else (inspection.map_png if inspection else None))

    def heartbeat(self) -> None:
        self.metrics.heartbeat()

    def alive(self) -> None:
        self.pinger.alive()

    def camera(self, state: str) -> None:
        self.metrics.camera_up(state == "up")
        if state == "up":
            self.metrics.reconnect()

    def reload(self, result: str, bundle_id: str | None = None) -> None:
        self.metrics.reload(result)
        if bundle_id is not None:
            self.metrics.bundle(bundle_id)

    def paused(self, paused: bool) -> None:
        self.metrics.paused(paused)

    def notify(self, what: str, text: str = "") -> None:
        """systemd: ``ready``, ``status``, ``reloading`` or ``stopping``."""
        if what == "ready":
            self.notifier.ready(text)
        elif what == "status":
            self.notifier.status(text)
        elif what == "reloading":
            self.notifier.reloading("reloading config and bundle")
        elif what == "stopping":
            self._stopping_sent = True
            self.notifier.stopping()
