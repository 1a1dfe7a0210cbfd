"""The control socket and the systemd notify protocol of a real daemon subprocess.

Control: an allowed CurveZMQ key can ask for status, pause, resume, trigger and reload; a key that
is not in the allow-list gets nothing at all. systemd: READY, STATUS, WATCHDOG and STOPPING go
to a real ``NOTIFY_SOCKET`` datagram socket, and the watchdog is pinged only while messages flow.
"""

from __future__ import annotations

import signal
import socket
import time

import pytest

from edge.control.server import ControlError, request
from tests.integration.daemon_runner import DEMO_IMAGES, RunningDaemon, free_port
from tests.unit.edge.control.curve_keys import make_keys


def control_daemon(tmp_path, pipeline: dict, camera: dict):
    (tmp_path / "keys").mkdir()
    keys = make_keys(tmp_path / "keys")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = {"camera": {"type": "sim", "source": str(DEMO_IMAGES), "loop": True, **camera}, "pipeline": pipeline,
              "publish": {"heartbeat_s": 0.2},
              "control": {"enabled": True, "endpoint": endpoint,
                          "curve": {"secret_key": str(keys.server_secret),
                                    "allowed_clients": str(keys.allowed_clients)}}}
    daemon = RunningDaemon(tmp_path, config)

    def ctl(command: str, secret=keys.client_secret, timeout_s: float = 10.0) -> dict:
        return request(endpoint, command, server_key=keys.server_public, client_key=secret, timeout_s=timeout_s)

    return daemon, ctl, keys


def test_allowed_key_controls_the_daemon_and_an_unknown_key_gets_nothing(tmp_path):
    daemon, ctl, keys = control_daemon(tmp_path, {}, {"fps": 20})
    try:
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 3)
        status = ctl("status")
        assert status["ok"], status
        result = status["result"]
        assert result["bundle"]["id"] == daemon.of("verdict")[0]["bundle_id"] and result["camera"]["up"] is True
        assert result["counters"]["verdicts"] >= 3 and result["latency_ms"]["inference"]["p50"] > 0
        assert result["state"] == "running" and result["queues"]["policy"] == "block"

        with pytest.raises(ControlError, match="no reply"):
            ctl("status", secret=keys.stranger_secret, timeout_s=1.5)
        with pytest.raises(ControlError, match="no reply"):
            request(daemon_endpoint(daemon), "pause", timeout_s=1.5)  # no Curve at all

        assert ctl("pause")["result"] == {"state": "paused"}
        time.sleep(0.3)  # a verdict already in the pipeline may still come out
        paused_at = len(daemon.of("verdict"))
        daemon.wait_for(lambda d: sum(b["state"] == "paused" for b in d.of("heartbeat")) >= 3)
        assert len(daemon.of("verdict")) == paused_at  # nothing grabbed while paused; heartbeats say why
        assert ctl("resume")["result"] == {"state": "running"}
        daemon.wait_for(lambda d: len(d.of("verdict")) >= paused_at + 2)

        reply = ctl("trigger")
        assert reply["ok"] is False and "on_demand" in reply["error"]  # a free-running camera needs no trigger
        reply = ctl("reload")
        assert reply["ok"] and reply["result"]["bundle_id"] == result["bundle"]["id"]
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.log()
    finally:
        daemon.close()
    log = daemon.log()
    assert "refused a client with an unknown key" in log
    seqs = [m["seq"] for m in daemon.of("verdict")]
    assert seqs == list(range(1, len(seqs) + 1))


def daemon_endpoint(daemon: RunningDaemon) -> str:
    import yaml

    return yaml.safe_load(daemon.config_path.read_text())["control"]["endpoint"]


def test_software_trigger_command_gives_one_verdict_per_trigger(tmp_path):
    daemon, ctl, _ = control_daemon(tmp_path, {"acquisition": "on_demand"}, {"trigger": "software"})
    try:
        daemon.wait_for(lambda d: len(d.of("heartbeat")) >= 2)
        assert not daemon.of("verdict")
        for _ in range(3):
            assert ctl("trigger")["ok"]
        daemon.wait_for(lambda d: len(d.of("verdict")) == 3)
        time.sleep(0.5)
        assert len(daemon.of("verdict")) == 3
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.close()
    assert [m["seq"] for m in daemon.of("verdict")] == [1, 2, 3]


def test_notify_protocol_ready_status_watchdog_stopping(tmp_path):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    server.bind(str(path))
    server.settimeout(0.2)
    env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"}  # ping every 0.1 s
    # An idle, triggered line: no verdicts at all, but heartbeats flow, so the watchdog is fed.
    daemon = RunningDaemon(tmp_path, {"camera": {"type": "sim", "source": str(DEMO_IMAGES), "trigger": "software"},
                                      "pipeline": {"acquisition": "on_demand"}, "publish": {"heartbeat_s": 0.1}},
                           env=env)
    datagrams: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(d == "WATCHDOG=1" for d in datagrams) < 5:
            try:
                datagrams.append(server.recv(4096).decode())
            except TimeoutError:
                continue
        daemon.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any("STOPPING=1" in d for d in datagrams):
            try:
                datagrams.append(server.recv(4096).decode())
            except TimeoutError:
                continue
        assert daemon.wait() == 0, daemon.log()
    finally:
        daemon.close()
        server.close()
    ready = next(d for d in datagrams if d.startswith("READY=1"))
    assert "STATUS=inspecting: 0 verdicts" in ready
    assert sum(d == "WATCHDOG=1" for d in datagrams) >= 5
    assert datagrams.index(ready) < datagrams.index("WATCHDOG=1") and datagrams[-1] == "STOPPING=1"


def test_metrics_endpoint_counts_frames_verdicts_drops_and_latency(tmp_path):
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    daemon = RunningDaemon(tmp_path, {"camera": {"type": "sim", "source": str(DEMO_IMAGES), "loop": True,
                                                 "faults": {"incomplete_every": 4}},
                                      "metrics": {"enabled": True, "port": port},
                                      "publish": {"heartbeat_s": 0.1}})
    try:
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 20)
        last = daemon.of("verdict")[-1]  # received before the scrape: counted by then (bar the one in flight)
        text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.close()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    verdicts = sum(v for (name, _), v in samples.items() if name == "edge_verdicts_total")
    assert verdicts >= last["seq"] - 1 >= 19  # the metric is counted just after the send
    assert samples[("edge_frames_total", ())] >= verdicts + samples[("edge_drops_total",
                                                                       (("reason", "incomplete_buffer"),))]
    assert samples[("edge_stage_latency_seconds_count", (("stage", "inference"),))] >= 20
    assert samples[("edge_camera_up", ())] == 1
    assert samples[("edge_bundle_info", (("bundle_id", last["bundle_id"]),))] == 1
