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
from edge.tools.harness import DEMO_IMAGES, RunningDaemon, free_port
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

    def ctl(command: str, secret=keys.client_secret, timeout_s: float = 10.0, args: dict | None = None) -> dict:
        return request(endpoint, command, args, server_key=keys.server_public, client_key=secret,
                       timeout_s=timeout_s)

    return daemon, ctl, keys


def paused_and_still(daemon: RunningDaemon, since: int, beats: int = 3) -> bool:
    """The last ``beats`` heartbeats after message ``since`` say paused, with nothing left in the pipeline.

    Heartbeats go out only after ``heartbeat_s`` with nothing else published; a run of them with
    the same counters, in which every frame grabbed has its verdict, is the line standing still:
    another verdict would need another grab.
    """
    tail = [r.payload for r in daemon.received[since:] if r.kind == "heartbeat"][-beats:]
    return (len(tail) == beats and all(b["state"] == "paused" for b in tail)
            and len({(b["last_seq"], b["counters"]["frames"]) for b in tail}) == 1
            and all(b["counters"]["frames"] == b["counters"]["verdicts"] + b["counters"]["dropped"] for b in tail))


def test_allowed_key_controls_the_daemon_and_an_unknown_key_gets_nothing(tmp_path):
    daemon, ctl, keys = control_daemon(tmp_path, {}, {"fps": 20})
    try:
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 3, what="3 verdicts")
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

        since = len(daemon.received)
        assert ctl("pause")["result"] == {"state": "paused"}
        # Frames already in the pipeline may still come out; then the line stands still, heartbeats say why.
        daemon.wait_for(lambda d: paused_and_still(d, since), what="three paused heartbeats with one last_seq")
        still = [r.payload for r in daemon.received[since:] if r.kind == "heartbeat"][-1]
        assert max(m["seq"] for m in daemon.of("verdict")) == still["last_seq"]  # no verdict after them
        paused = ctl("status")["result"]
        assert paused["state"] == "paused" and paused["last_seq"] == still["last_seq"]
        assert paused["counters"]["frames"] == still["counters"]["frames"]
        assert ctl("resume")["result"] == {"state": "running"}
        daemon.wait_for(lambda d: max(m["seq"] for m in d.of("verdict")) >= still["last_seq"] + 2,
                        what="verdicts after resume")

        reply = ctl("trigger")
        assert reply["ok"] is False and "on_demand" in reply["error"]  # a free-running camera needs no trigger
        reply = ctl("reload")
        assert reply["ok"] and reply["result"]["bundle_id"] == result["bundle"]["id"]
        assert ctl("status")["ok"]  # the refused clients left the control socket serving the allowed one
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        daemon.close()
    seqs = [m["seq"] for m in daemon.of("verdict")]
    assert seqs == list(range(1, len(seqs) + 1))


def daemon_endpoint(daemon: RunningDaemon) -> str:
    import yaml

    return yaml.safe_load(daemon.config_path.read_text())["control"]["endpoint"]


def test_software_trigger_command_gives_one_verdict_per_trigger(tmp_path):
    daemon, ctl, _ = control_daemon(tmp_path, {"acquisition": "on_demand"}, {"trigger": "software"})
    try:
        daemon.wait_for(lambda d: len(d.of("heartbeat")) >= 2, what="2 heartbeats")
        assert not daemon.of("verdict")
        assert ctl("trigger")["ok"]
        assert ctl("trigger", args={"part_id": 4711})["ok"]
        assert ctl("trigger", args={"part_id": 2**32 - 1})["ok"]
        refused = ctl("trigger", args={"part_id": -1})
        assert refused["ok"] is False and "part_id" in refused["error"]
        daemon.wait_for(lambda d: len(d.of("verdict")) == 3, what="3 verdicts")
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        daemon.close()
    assert [m["seq"] for m in daemon.of("verdict")] == [1, 2, 3]
    assert [m["part_id"] for m in daemon.of("verdict")] == [None, 4711, 2**32 - 1]  # each trigger's part id
    # Three triggers grabbed three frames, and no more were grabbed until the stop.
    assert daemon.stopped()["counters"] == {"frames": 3, "verdicts": 3, "errors": 0, "dropped": 0, "drops": {}}


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
        daemon.signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any("STOPPING=1" in d for d in datagrams):
            try:
                datagrams.append(server.recv(4096).decode())
            except TimeoutError:
                continue
        assert daemon.wait() == 0, daemon.log_tail()
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
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 20, what="20 verdicts")
        last = daemon.of("verdict")[-1]  # received before the scrape: counted by then (bar the one in flight)
        text = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        daemon.close()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    verdicts = sum(v for (name, _), v in samples.items() if name == "edge_verdicts_total")
    assert verdicts >= last["seq"] - 1 >= 19  # the metric is counted just after the send
    assert samples[("edge_frames_total", ())] >= verdicts + samples[("edge_drops_total",
                                                                       (("reason", "incomplete_buffer"),))]
    # like the verdict counter, each stage is observed just after the send: seq N seen means N-1 observed
    assert samples[("edge_stage_latency_seconds_count", (("stage", "inference"),))] >= last["seq"] - 1
    assert samples[("edge_camera_up", ())] == 1
    assert samples[("edge_bundle_info", (("bundle_id", last["bundle_id"]),))] == 1
