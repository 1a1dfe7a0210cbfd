"""The metrics endpoint serves what the daemon counted, per instance, and frees its port on close."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

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
    for _ in range(3):
        metrics.frame()
    metrics.verdict("OK")
    metrics.verdict("OK")
    metrics.verdict("NG", t=1_700_000_000.5)
    metrics.error("decode")
    metrics.drop("queue_full", 2)
    metrics.drop("incomplete_buffer")
    metrics.observe("inference", 0.03)
    metrics.camera_up(True)
    metrics.reconnect()
    metrics.queue_depth("infer", 2)
    metrics.heartbeat()
    metrics.reload("refused")
    metrics.paused(True)
    samples = scrape(metrics)
    assert samples[("edge_frames_total", ())] == 3
    assert samples[("edge_verdicts_total", (("result", "OK"),))] == 2
    assert samples[("edge_verdicts_total", (("result", "NG"),))] == 1
    assert samples[("edge_last_verdict_timestamp_seconds", ())] == 1_700_000_000.5
    assert samples[("edge_errors_total", (("stage", "decode"),))] == 1
    assert samples[("edge_errors_total", (("stage", "inference"),))] == 0  # present before the first one
    assert samples[("edge_drops_total", (("reason", "queue_full"),))] == 2
    assert samples[("edge_drops_total", (("reason", "incomplete_buffer"),))] == 1
    assert samples[("edge_stage_latency_seconds_count", (("stage", "inference"),))] == 1
    assert samples[("edge_stage_latency_seconds_sum", (("stage", "inference"),))] == pytest.approx(0.03)
    assert samples[("edge_stage_latency_seconds_bucket", (("le", "0.001"), ("stage", "inference")))] == 0
    assert samples[("edge_stage_latency_seconds_bucket", (("le", "2.0"), ("stage", "inference")))] == 1
    assert samples[("edge_camera_up", ())] == 1
    assert samples[("edge_reconnects_total", ())] == 1
    assert samples[("edge_queue_depth", (("queue", "infer"),))] == 2
    assert samples[("edge_heartbeats_total", ())] == 1
    assert samples[("edge_reloads_total", (("result", "refused"),))] == 1
    assert samples[("edge_reloads_total", (("result", "ok"),))] == 0
    assert samples[("edge_paused", ())] == 1


def test_a_bundle_change_replaces_the_info_series(metrics):
    metrics.bundle("bottle-a")
    metrics.bundle("bottle-b")
    info = {labels: value for (name, labels), value in scrape(metrics).items() if name == "edge_bundle_info"}
    assert info == {(("bundle_id", "bottle-b"),): 1}


def test_archive_totals_advance_the_counter_by_the_change(metrics):
    metrics.archive(3, 3000)
    metrics.archive(5, 4200, failures=1)
    metrics.archive(5, 3900, failures=1)
    samples = scrape(metrics)
    assert samples[("edge_archive_records_total", ())] == 5
    assert samples[("edge_archive_bytes", ())] == 3900
    assert samples[("edge_archive_failures_total", ())] == 1


def test_two_instances_in_one_process_keep_separate_counts(metrics):
    other = make_metrics()
    other.start()
    try:
        metrics.frame()
        assert scrape(metrics)[("edge_frames_total", ())] == 1
        assert scrape(other)[("edge_frames_total", ())] == 0
        assert other.port != metrics.port
    finally:
        other.close()


def test_disabled_metrics_count_but_serve_nothing():
    quiet = Metrics(MetricsConfig.model_validate({}))
    quiet.start()
    quiet.frame()
    assert quiet.port is None
    families = {f.name: f for f in text_string_to_metric_families(quiet.render().decode("utf-8"))}
    assert families["edge_frames"].samples[0].value == 1
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
        assert scrape(second)[("edge_frames_total", ())] == 0
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

