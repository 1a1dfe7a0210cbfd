"""The metrics endpoint serves what the daemon counted, and what its accounting holds at the scrape, per instance."""

from __future__ import annotations

import threading
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from edge.cameras.base import Frame
from edge.daemon.pipeline import Accounting, FrameQueue, Job
from edge.ops.metrics import Metrics, MetricsConfig


def make_metrics(**fields) -> Metrics:
    return Metrics(MetricsConfig.model_validate({"enabled": True, "port": 0, **fields}))


@pytest.fixture
def metrics():
    served = make_metrics()
    served.start()
    yield served
    served.close()


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics over HTTP and index every sample by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode("utf-8")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_binds_an_os_chosen_port_on_loopback(metrics):
    assert metrics.port is not None and metrics.port > 0


def test_scrape_reports_every_event_counted(metrics):
    metrics.verdict("OK")
    metrics.verdict("OK")
    metrics.verdict("NG", t=1_700_000_000.5)
    metrics.error("decode")
    metrics.observe("inference", 0.03)
    metrics.camera_up(True)
    metrics.reconnect()
    metrics.heartbeat()
    metrics.reload("refused")
    metrics.paused(True)
    samples = scrape(metrics)
    assert samples[("edge_verdicts_total", (("result", "OK"),))] == 2
    assert samples[("edge_verdicts_total", (("result", "NG"),))] == 1
    assert samples[("edge_last_verdict_timestamp_seconds", ())] == 1_700_000_000.5
    assert samples[("edge_errors_total", (("stage", "decode"),))] == 1
    assert samples[("edge_errors_total", (("stage", "inference"),))] == 0  # present before the first one
    assert samples[("edge_stage_latency_seconds_count", (("stage", "inference"),))] == 1
    assert samples[("edge_stage_latency_seconds_sum", (("stage", "inference"),))] == pytest.approx(0.03)
    assert samples[("edge_stage_latency_seconds_bucket", (("le", "0.001"), ("stage", "inference")))] == 0
    assert samples[("edge_stage_latency_seconds_bucket", (("le", "2.0"), ("stage", "inference")))] == 1
    assert samples[("edge_camera_up", ())] == 1
    assert samples[("edge_reconnects_total", ())] == 1
    assert samples[("edge_heartbeats_total", ())] == 1
    assert samples[("edge_reloads_total", (("result", "refused"),))] == 1
    assert samples[("edge_reloads_total", (("result", "ok"),))] == 0
    assert samples[("edge_paused", ())] == 1


def test_each_scrape_reads_the_pipeline_accounting_and_queues_as_they_are_then(metrics):
    accounting, stop = Accounting(), threading.Event()
    frames = FrameQueue(2, "drop_newest", accounting, stop)
    metrics.read_from(accounting.snapshot, lambda: {"frames": frames.qsize()})
    for n in range(3):
        accounting.frame_in()
        frames.put(Job(frame=Frame(image=None, frame_id=n + 1, source="test")))  # the third is dropped: full
    accounting.frame_in()
    accounting.drop("incomplete_buffer")
    samples = scrape(metrics)
    assert samples[("edge_frames_total", ())] == 4
    assert samples[("edge_drops_total", (("reason", "queue_full"),))] == 1
    assert samples[("edge_drops_total", (("reason", "incomplete_buffer"),))] == 1
    assert samples[("edge_queue_depth", (("queue", "frames"),))] == 2
    frames.discard_all("shutdown")
    samples = scrape(metrics)  # nothing was pushed into the metrics in between
    assert samples[("edge_drops_total", (("reason", "shutdown"),))] == 2
    assert samples[("edge_queue_depth", (("queue", "frames"),))] == 0
    assert samples[("edge_frames_total", ())] == sum(accounting.snapshot()["drops"].values())


def test_totals_read_zero_until_a_source_is_given(metrics):
    samples = scrape(metrics)
    assert samples[("edge_frames_total", ())] == 0
    assert samples[("edge_archive_records_total", ())] == 0
    assert not [name for name, _ in samples if name in ("edge_drops_total", "edge_queue_depth")]


def test_archive_totals_are_read_from_the_archive_at_scrape_time(metrics):
    totals = {"written": 3, "bytes": 3000, "failures": 0}
    metrics.read_from(Accounting().snapshot, archive=lambda: totals)
    assert scrape(metrics)[("edge_archive_records_total", ())] == 3
    totals.update(written=5, bytes=3900, failures=1)
    samples = scrape(metrics)
    assert samples[("edge_archive_records_total", ())] == 5
    assert samples[("edge_archive_bytes", ())] == 3900
    assert samples[("edge_archive_failures_total", ())] == 1


def test_reconnects_are_described_as_what_they_count(metrics):
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode("utf-8"))}
    assert families["edge_reconnects"].documentation.startswith("Successful camera reconnects")


def test_a_bundle_change_replaces_the_info_series(metrics):
    metrics.bundle("bottle-a")
    metrics.bundle("bottle-b")
    info = {labels: value for (name, labels), value in scrape(metrics).items() if name == "edge_bundle_info"}
    assert info == {(("bundle_id", "bottle-b"),): 1}


def test_two_instances_in_one_process_keep_separate_counts(metrics):
    other = make_metrics()
    other.start()
    try:
        counted = Accounting()
        metrics.read_from(counted.snapshot)
        other.read_from(Accounting().snapshot)
        counted.frame_in()
        metrics.verdict("NG")
        assert scrape(metrics)[("edge_frames_total", ())] == 1
        assert scrape(metrics)[("edge_verdicts_total", (("result", "NG"),))] == 1
        assert scrape(other)[("edge_frames_total", ())] == 0
        assert scrape(other)[("edge_verdicts_total", (("result", "NG"),))] == 0
        assert other.port != metrics.port
    finally:
        other.close()


def test_disabled_metrics_count_but_serve_nothing():
    quiet = Metrics(MetricsConfig.model_validate({}))
    accounting = Accounting()
    quiet.read_from(accounting.snapshot)
    quiet.start()
    accounting.frame_in()
    quiet.verdict("OK")
    assert quiet.port is None
    families = {f.name: f for f in text_string_to_metric_families(quiet.render().decode("utf-8"))}
    assert families["edge_frames"].samples[0].value == 1
    assert {s.labels["result"]: s.value for s in families["edge_verdicts"].samples if s.name.endswith("_total")} \
        == {"OK": 1, "NG": 0}
    quiet.close()


def test_close_frees_the_port_for_the_next_server():
    first = make_metrics()
    first.start()
    port = first.port
    first.close()
    assert first.port is None
    second = make_metrics(port=port)
    second.start()
    try:
        assert scrape(second)[("edge_heartbeats_total", ())] == 0
    finally:
        second.close()


def test_a_taken_port_raises_oserror_at_start(metrics):
    clash = make_metrics(port=metrics.port)
    with pytest.raises(OSError):
        clash.start()


def test_config_allows_port_0_and_refuses_unknown_keys_and_bad_ports():
    assert MetricsConfig.model_validate({"port": 0}).port == 0
    with pytest.raises(ValidationError):
        MetricsConfig.model_validate({"port": 70000})
    with pytest.raises(ValidationError, match="Extra inputs"):
        MetricsConfig.model_validate({"path": "/metrics"})



def test_each_output_is_scraped_with_its_delivered_undelivered_queued_and_connected_values(metrics):
    stats = {"plc": {"delivered": 7, "undelivered": {"queue_full": 2, "shutdown": 1}, "queued": 3,
                     "connected": False, "last_error": "timeout"}}
    metrics.read_from(lambda: {"frames": 0, "drops": {}}, outputs=lambda: stats)
    samples = scrape(metrics)
    assert samples[("edge_output_delivered_total", (("output", "plc"),))] == 7
    assert samples[("edge_output_undelivered_total", (("output", "plc"), ("reason", "queue_full")))] == 2
    assert samples[("edge_output_undelivered_total", (("output", "plc"), ("reason", "shutdown")))] == 1
    assert samples[("edge_output_queued", (("output", "plc"),))] == 3
    assert samples[("edge_output_connected", (("output", "plc"),))] == 0
    stats["plc"] = {**stats["plc"], "delivered": 9, "connected": True}  # read again at the next scrape
    samples = scrape(metrics)
    assert samples[("edge_output_delivered_total", (("output", "plc"),))] == 9
    assert samples[("edge_output_connected", (("output", "plc"),))] == 1
