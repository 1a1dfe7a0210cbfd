"""Prometheus metrics: what the plant's monitoring scrapes to see that a station is healthy.

A station that silently stops inspecting, drops frames or slows down must show up on a dashboard
and raise an alert before the line notices, so the daemon counts frames, verdicts, errors, drops,
reconnects and per-stage latency, and serves them as Prometheus text on ``/metrics``. Totals that
someone else already keeps (the pipeline's frames and drops, the queue depths, the archive's
records) are read from their owner at each scrape (:meth:`Metrics.read_from`) rather than copied
in as they change, so a scrape shows exactly what a heartbeat would and there is no second copy
to drift; only what happens at an event (a verdict, an error, a stage's duration, a reconnect) is
counted here. Each :class:`Metrics` has its own registry (several daemons' worth can live in one
test process), and works with the endpoint disabled: the counts are kept either way, only nothing
is served.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

# Stage latencies on a 2-core box run from ~1 ms (decode, publish) to ~2 s (a slow first inference).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
ERROR_STAGES = ("decode", "inference")
RELOAD_RESULTS = ("ok", "refused")

Snapshot = Callable[[], Mapping[str, Any]]
NO_COUNTS: Mapping[str, Any] = {"frames": 0, "drops": {}}
NO_ARCHIVE: Mapping[str, Any] = {"written": 0, "bytes": 0, "failures": 0}


class MetricsConfig(BaseModel):
    """``metrics:`` the Prometheus endpoint."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Serve Prometheus metrics over HTTP on /metrics.")
    host: str = Field("127.0.0.1", description="Address to listen on; 0.0.0.0 lets other machines scrape.")
    port: int = Field(9108, ge=0, le=65535, description="TCP port; 0 = any free port (logged at start).")


class _ReadAtScrape:
    """The families whose values are read from their owners when ``/metrics`` is scraped."""

    def __init__(self) -> None:
        self.counts: Snapshot = lambda: NO_COUNTS
        self.queues: Callable[[], Mapping[str, int]] = dict
        self.archive: Snapshot = lambda: NO_ARCHIVE
        self.outputs: Callable[[], Mapping[str, Mapping[str, Any]]] = dict

    def describe(self) -> list[Metric]:
        """The families (without reading anything), so the registry refuses a clash of names."""
        return list(_families(NO_COUNTS, {}, NO_ARCHIVE, {}))

    def collect(self) -> Iterator[Metric]:
        return _families(self.counts(), self.queues(), self.archive(), self.outputs())


def _families(counts: Mapping[str, Any], queues: Mapping[str, int], archive: Mapping[str, Any],
              outputs: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    yield CounterMetricFamily("edge_frames_total", "Frames grabbed from the camera.", value=counts["frames"])
    drops = CounterMetricFamily("edge_drops_total", "Frames dropped before inspection, by reason.", labels=["reason"])
    for reason, n in sorted(counts["drops"].items()):
        drops.add_metric([reason], n)
    yield drops
    depth = GaugeMetricFamily("edge_queue_depth", "Items waiting in each internal queue.", labels=["queue"])
    for name, n in sorted(queues.items()):
        depth.add_metric([name], n)
    yield depth
    yield CounterMetricFamily("edge_archive_records_total", "Records written to the NG archive.",
                              value=archive["written"])
    yield GaugeMetricFamily("edge_archive_bytes", "Bytes the NG archive holds now.", value=archive["bytes"])
    yield CounterMetricFamily("edge_archive_failures_total", "Archive records that could not be written.",
                              value=archive["failures"])
    yield from _output_families(outputs)


def _output_families(outputs: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    """Per output beside the publisher: delivered, undelivered by reason, queued, connected."""
    delivered = CounterMetricFamily("edge_output_delivered_total", "Messages an output delivered.", labels=["output"])
    undelivered = CounterMetricFamily("edge_output_undelivered_total", "Messages an output did not deliver, by "
                                      "reason.", labels=["output", "reason"])
    queued = GaugeMetricFamily("edge_output_queued", "Messages waiting in an output's queue.", labels=["output"])
    connected = GaugeMetricFamily("edge_output_connected", "1 when an output is connected to its peer.",
                                  labels=["output"])
    for name, stats in sorted(outputs.items()):
        delivered.add_metric([name], stats["delivered"])
        for reason, n in sorted(stats["undelivered"].items()):
            undelivered.add_metric([name, reason], n)
        queued.add_metric([name], stats["queued"])
        connected.add_metric([name], 1.0 if stats["connected"] else 0.0)
    yield from (delivered, undelivered, queued, connected)


class Metrics:
    """The daemon's metrics: one plain method per event it reports, and the totals it reads at each scrape."""

    def __init__(self, config: MetricsConfig | None = None) -> None:
        self.config = config if config is not None else MetricsConfig.model_validate({})
        self.registry = CollectorRegistry()
        r = self.registry
        self._read_at_scrape = _ReadAtScrape()
        r.register(self._read_at_scrape)
        self._verdicts = Counter("edge_verdicts_total", "Verdicts published, by result.", ["result"], registry=r)
        self._errors = Counter(
            "edge_errors_total", "Frames that got an error (fail-safe NG) verdict, by stage.", ["stage"], registry=r
        )
        self._camera_up = Gauge("edge_camera_up", "1 while the camera delivers, 0 while it is lost.", registry=r)
        self._reconnects = Counter("edge_reconnects_total",
                                   "Successful camera reconnects: the camera was lost and opened again.", registry=r)
        self._latency = Histogram("edge_stage_latency_seconds", "Time spent per pipeline stage.", ["stage"],
                                  buckets=LATENCY_BUCKETS, registry=r)
        self._bundle = Gauge("edge_bundle_info", "The model bundle in use (value 1).", ["bundle_id"], registry=r)
        self._last_verdict = Gauge("edge_last_verdict_timestamp_seconds", "Epoch time of the last verdict.",
                                   registry=r)
        self._heartbeats = Counter("edge_heartbeats_total", "Heartbeats sent.", registry=r)
        self._reloads = Counter("edge_reloads_total", "Bundle reloads, by result.", ["result"], registry=r)
        self._paused = Gauge("edge_paused", "1 while inspection is paused, else 0.", registry=r)
        self._errors_in_row = Gauge("edge_error_frames_in_row", "Error verdicts in a row right now (0 once a frame "
                                    "is inspected again): a deleted source or a failing camera shows here.",
                                    registry=r)
        for result in ("OK", "NG"):  # series exist (at 0) from the start, so rate() and alerts see them
            self._verdicts.labels(result=result)
        for stage in ERROR_STAGES:
            self._errors.labels(stage=stage)
        for result in RELOAD_RESULTS:
            self._reloads.labels(result=result)
        self._lock = threading.Lock()
        self._bundle_id: str | None = None
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def read_from(self, counts: Snapshot, queues: Callable[[], Mapping[str, int]] | None = None,
                  archive: Snapshot | None = None,
                  outputs: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None) -> None:
        """Where each scrape reads its totals; called from the scrape's thread, so each must be thread-safe.

        ``counts`` gives the pipeline's ``frames`` and ``drops`` ({reason: n}) as in heartbeats,
        ``queues`` the items waiting per queue name, ``archive`` the NG archive's ``written``,
        ``bytes`` and ``failures``, ``outputs`` each output's stats by name. Until set, and for
        what is not given, the totals read 0.
        """
        self._read_at_scrape.counts = counts
        if queues is not None:
            self._read_at_scrape.queues = queues
        if archive is not None:
            self._read_at_scrape.archive = archive
        if outputs is not None:
            self._read_at_scrape.outputs = outputs

    # -- serving ---------------------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The port actually bound (useful with port 0); None while not serving."""
        return int(self._server.server_port) if self._server is not None else None

    def start(self) -> None:
        """Serve ``/metrics`` on a daemon thread, when enabled; OSError if the port is taken."""
        if not self.config.enabled or self._server is not None:
            return
        self._server, self._thread = start_http_server(self.config.port, self.config.host, registry=self.registry)
        log.info("metrics: serving http://%s:%s/metrics", self.config.host, self.port)

    def close(self, deadline_s: float = 5.0) -> None:
        """Stop serving and free the port."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(deadline_s)
        self._server = self._thread = None

    def render(self) -> bytes:
        """The exposition text, as a scrape would get it (for status output and tests)."""
        return generate_latest(self.registry)

    # -- events ----------------------------------------------------------------------------------

    def verdict(self, result: str, t: float | None = None) -> None:
        """A verdict (``OK``/``NG``) was published at epoch ``t`` (default now)."""
        self._verdicts.labels(result=result).inc()
        if t is None:
            self._last_verdict.set_to_current_time()
        else:
            self._last_verdict.set(t)

    def error(self, stage: str) -> None:
        """A frame got an error verdict because ``stage`` (decode or inference) failed."""
        self._errors.labels(stage=stage).inc()

    def observe(self, stage: str, seconds: float) -> None:
        """One run of ``stage`` took ``seconds``."""
        self._latency.labels(stage=stage).observe(seconds)

    def camera_up(self, up: bool) -> None:
        """The camera is delivering (True) or lost (False)."""
        self._camera_up.set(1 if up else 0)

    def reconnect(self) -> None:
        """The camera was lost and has been opened again (a successful reconnect; failed attempts are not counted)."""
        self._reconnects.inc()

    def bundle(self, bundle_id: str) -> None:
        """The bundle now in use; the previous one's series is removed so only one is ever 1."""
        with self._lock:
            if self._bundle_id is not None and self._bundle_id != bundle_id:
                self._bundle.remove(self._bundle_id)
            self._bundle_id = bundle_id
            self._bundle.labels(bundle_id=bundle_id).set(1)

    def heartbeat(self) -> None:
        """A heartbeat was sent."""
        self._heartbeats.inc()

    def reload(self, result: str) -> None:
        """A bundle reload finished: ``ok`` or ``refused``."""
        self._reloads.labels(result=result).inc()

    def errors_in_row(self, count: int) -> None:
        """Error verdicts in a row now (0 after an inspected frame)."""
        self._errors_in_row.set(count)

    def paused(self, paused: bool) -> None:
        """Inspection was paused (True) or resumed (False)."""
        self._paused.set(1 if paused else 0)
