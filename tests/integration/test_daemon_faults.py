"""The fault table of an unattended daemon, each row a real daemon subprocess on a real socket.

Rows here: SIGTERM mid-stream, ``kill -9`` then restart (sequence and archive), a bundle replaced
by a corrupt one on reload, a subscriber joining late, a slow subscriber past its high-water
mark, incomplete camera buffers, and the overload policies. Camera loss and corrupt images are in
``test_camera_faults_and_gentl.py`` and ``test_inspect_daemon.py``; control-socket keys in
``test_daemon_control.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import cv2
import pytest
import yaml
import zmq

from tests.integration.daemon_runner import DEMO_BUNDLE, DEMO_IMAGES, ENV, REPO, RunningDaemon


def sim(**extra) -> dict:
    return {"type": "sim", "source": str(DEMO_IMAGES), "loop": True, **extra}


def seqs(daemon: RunningDaemon) -> list[int]:
    return [m["seq"] for m in daemon.of("verdict")]


def stopped(daemon: RunningDaemon) -> dict:
    events = [m for m in daemon.of("event") if m["event"] == "stopped"]
    assert len(events) == 1, daemon.log()[-2000:]
    return events[0]["detail"]


def test_sigterm_mid_stream_publishes_every_frame_already_grabbed(tmp_path):
    daemon = RunningDaemon(tmp_path, {"camera": sim(), "pipeline": {"overload": "block", "queue_size": 4},
                                      "publish": {"wait_subscriber_s": 10}})
    try:
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 5)
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.log()
    finally:
        daemon.close()
    detail = stopped(daemon)
    counters = detail["counters"]
    # The queue was full when SIGTERM came (the camera outruns inference): those frames were still
    # inspected and published, none dropped.
    assert counters["drops"] == {} and counters["frames"] == counters["verdicts"] and detail["balanced"]
    assert seqs(daemon) == list(range(1, counters["verdicts"] + 1)) and detail["last_seq"] == counters["verdicts"]


def test_kill_9_then_restart_continues_the_sequence_with_a_restart_marker_and_no_partial_archive(tmp_path):
    config = {"camera": sim(), "state_dir": str(tmp_path / "state"), "publish": {"wait_subscriber_s": 10},
              "archive": {"enabled": True, "directory": str(tmp_path / "archive"), "ok_sample_every": 1}}
    first = RunningDaemon(tmp_path, dict(config), name="first")
    try:
        first.wait_for(lambda d: len(d.of("verdict")) >= 30)
        first.proc.kill()  # SIGKILL: no clean-up at all, mid-stream, archive writes in flight
        first.proc.wait(timeout=10)
    finally:
        first.close()
    seen = seqs(first)
    assert seen == list(range(1, len(seen) + 1)) and first.of("verdict")[0]["restart"] is True

    second = RunningDaemon(tmp_path, dict(config), name="second")
    try:
        second.wait_for(lambda d: len(d.of("verdict")) >= 3)
        second.proc.send_signal(signal.SIGTERM)
        assert second.wait() == 0, second.log()
    finally:
        second.close()
    started = next(m for m in second.of("event") if m["event"] == "started")
    assert started["detail"]["previous_stop_clean"] is False
    verdicts = second.of("verdict")
    assert verdicts[0]["restart"] is True and all(m["restart"] is False for m in verdicts[1:])
    assert verdicts[0]["seq"] > max(seen)  # never reuses a number the killed run may have published
    assert verdicts[0]["run_id"] != first.of("verdict")[0]["run_id"]
    assert [m["seq"] for m in verdicts] == list(range(verdicts[0]["seq"], verdicts[0]["seq"] + len(verdicts)))

    # After a clean stop the next run continues exactly where it ended.
    third = RunningDaemon(tmp_path, dict(config), name="third")
    try:
        third.wait_for(lambda d: len(d.of("verdict")) >= 1)
        third.proc.send_signal(signal.SIGTERM)
        assert third.wait() == 0
    finally:
        third.close()
    assert third.of("verdict")[0]["seq"] == stopped(second)["last_seq"] + 1
    assert next(m for m in third.of("event") if m["event"] == "started")["detail"]["previous_stop_clean"] is True

    # The archive the killed run was writing holds only whole records.
    files = [p for p in (tmp_path / "archive").rglob("*") if p.is_file()]
    records = [p for p in files if p.suffix == ".json"]
    assert records and not [p for p in files if p.name.startswith(".")]
    for record in records:
        message = json.loads(record.read_text())
        for name in (message["archive"]["image"], message["archive"]["map"]):
            if name is not None:
                assert cv2.imread(str(record.parent / name), cv2.IMREAD_UNCHANGED) is not None, name
    stems = {p.name.split(".")[0].removesuffix("-map") for p in files}
    assert stems == {p.stem for p in records}  # no image or map without its JSON


def test_reload_refuses_a_corrupt_bundle_keeps_the_old_one_and_accepts_a_good_one(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, bundle, ignore=shutil.ignore_patterns(".cache"))
    daemon = RunningDaemon(tmp_path, {"camera": sim(fps=20), "bundle": str(bundle),
                                      "publish": {"wait_subscriber_s": 10}})
    try:
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 3)
        original = daemon.of("verdict")[0]["bundle_id"]
        model = bundle / "model.onnx"
        good_bytes = model.read_bytes()
        model.write_bytes(good_bytes[: len(good_bytes) // 2])  # truncated, as by a failed copy
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda d: any(m["event"] == "reload_refused" for m in d.of("event")))
        refused = next(m for m in daemon.of("event") if m["event"] == "reload_refused")["detail"]
        assert "model.onnx" in refused["reason"] and refused["bundle_id"] == original
        count = len(daemon.of("verdict"))
        daemon.wait_for(lambda d: len(d.of("verdict")) >= count + 3)  # the old bundle goes on deciding

        model.write_bytes(good_bytes)
        meta = yaml.safe_load((bundle / "bundle.yaml").read_text())
        meta["selftest"]["score"] *= 1.5  # hashes fine, but the graph no longer scores its probe as recorded
        (bundle / "bundle.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda d: sum(m["event"] == "reload_refused" for m in d.of("event")) == 2)
        assert "self-test failed" in [m for m in daemon.of("event") if m["event"] == "reload_refused"][-1][
            "detail"]["reason"]

        meta["selftest"]["score"] /= 1.5
        (bundle / "bundle.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda d: any(m["event"] == "reload" for m in d.of("event")))
        count = len(daemon.of("verdict"))
        daemon.wait_for(lambda d: len(d.of("verdict")) >= count + 3)
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.log()
    finally:
        daemon.close()
    reload = next(m for m in daemon.of("event") if m["event"] == "reload")["detail"]
    assert reload["bundle_id"] == original and reload["selftest"]["abs_diff"] <= reload["selftest"]["limit"]
    # One socket, one unbroken sequence through two refusals and a reload.
    assert seqs(daemon) == list(range(1, len(seqs(daemon)) + 1))
    assert all(m["bundle_id"] == original and m["error"] is None for m in daemon.of("verdict"))
    records = [json.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]
    assert sum(r["level"] == "ERROR" and "reload (SIGHUP) refused" in r["msg"] for r in records) == 2


def test_a_subscriber_joining_late_learns_what_it_missed_from_heartbeats_and_seq(tmp_path):
    daemon = RunningDaemon(tmp_path, {"camera": sim(fps=10), "publish": {"heartbeat_s": 0.2},
                                      "pipeline": {"acquisition": "continuous"}})
    context = zmq.Context()
    try:
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 5)
        late = context.socket(zmq.SUB)
        late.setsockopt(zmq.SUBSCRIBE, b"verdict.")
        late.connect(daemon.endpoint)
        assert late.poll(5000)
        first_seen = json.loads(late.recv_multipart()[1])
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        context.destroy(linger=0)
        daemon.close()
    # It missed the first verdicts, and its first seq (> 1) and the counters tell it how many.
    assert first_seen["seq"] > 5 and first_seen["counters"]["frames"] >= first_seen["seq"]
    assert first_seen["restart"] is False


def test_an_idle_line_sends_heartbeats_so_silence_means_a_dead_daemon(tmp_path):
    daemon = RunningDaemon(tmp_path, {"camera": sim(trigger="software"), "publish": {"heartbeat_s": 0.1},
                                      "pipeline": {"acquisition": "on_demand"}})
    try:
        daemon.wait_for(lambda d: len(d.of("heartbeat")) >= 5)
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.close()
    beats = daemon.of("heartbeat")
    assert not daemon.of("verdict")
    assert beats[0]["restart"] is True and all(not b["restart"] for b in beats[1:])
    assert all(b["last_seq"] == 0 and b["state"] == "running" and b["camera"] == "up" for b in beats)
    assert len({b["run_id"] for b in beats}) == 1 and all(b["bundle_id"] for b in beats)


def test_a_slow_subscriber_loses_verdicts_past_its_high_water_mark_but_the_line_does_not_wait(tmp_path):
    # ipc (unix socket) buffers far less in the kernel than TCP, and anomaly maps make the messages
    # larger, so the backlog reaches ZeroMQ's high-water mark instead of hiding in kernel buffers.
    daemon = RunningDaemon(tmp_path, {"camera": sim(max_frames=400),
                                      "publish": {"endpoint": f"ipc://{tmp_path}/verdicts", "sndhwm": 10,
                                                  "heartbeat_s": 0, "send_map": True}})
    context = zmq.Context()
    slow = context.socket(zmq.SUB)
    slow.setsockopt(zmq.RCVHWM, 10)
    slow.setsockopt(zmq.RCVBUF, 4096)
    slow.setsockopt(zmq.SUBSCRIBE, b"verdict.")
    received: list[int] = []
    try:
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 1)  # the collecting subscriber was first
        slow.connect(daemon.endpoint)
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 300, timeout=120)  # not reading meanwhile
        while daemon.proc.poll() is None or slow.poll(500):
            if slow.poll(100):
                received.append(json.loads(slow.recv_multipart()[1])["seq"])
        code = daemon.wait()
    finally:
        context.destroy(linger=0)
        daemon.close()
    assert code == 0
    counters = stopped(daemon)["counters"]
    assert counters["frames"] == counters["verdicts"] == 400 and counters["dropped"] == 0
    # The slow subscriber lost verdicts and sees it as a seq gap ...
    assert received and any(b - a > 1 for a, b in zip(received, received[1:], strict=False))
    # ... while the line went on at its pace and a subscriber that keeps up got them all.
    assert seqs(daemon) == list(range(1, 401))


def test_incomplete_buffers_of_a_free_running_camera_are_counted_as_drops(tmp_path):
    daemon = RunningDaemon(tmp_path, {"camera": sim(max_frames=40, faults={"incomplete_every": 5}),
                                      "publish": {"wait_subscriber_s": 10}})
    try:
        assert daemon.wait(timeout=60) == 0, daemon.log()
    finally:
        daemon.close()
    counters = stopped(daemon)["counters"]
    # Every 5th grab is incomplete: 40 delivered frames took 49 grabs, 9 of them discarded by the camera.
    assert counters["verdicts"] == 40 and counters["drops"] == {"incomplete_buffer": 9}
    assert counters["frames"] == 49 and stopped(daemon)["balanced"]
    assert daemon.of("verdict")[-1]["counters"]["drops"] == {"incomplete_buffer": 9}


@pytest.mark.parametrize("policy", ["block", "drop_oldest", "drop_newest"])
def test_overload_policy_accounts_for_every_frame(tmp_path, policy):
    """The sim camera at full speed decodes faster than inference runs: a sustained overload."""
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, "-m", "edge", "soak", "--frames", "150", "--policy", policy,
                           "--threads", "1", "--json", str(out)], cwd=REPO, env={**ENV, **os.environ},
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (result,) = json.loads(out.read_text())
    assert result["balanced"] and result["frames"] == 150 and result["subscriber"]["seq_gaps"] == 0
    assert result["verdicts"] + result["dropped"] == 150 and result["subscriber"]["received"] == result["verdicts"]
    if policy == "block":
        assert result["dropped"] == 0
    else:
        assert result["drops"] == {"queue_full": result["dropped"]} and result["dropped"] > 0
    assert result["rss_mb"]["samples"] >= 1


def test_sequence_survives_a_reload_through_the_same_socket(tmp_path):
    """Covered above for SIGHUP; here the timing: verdicts straddle the reload with no gap."""
    daemon = RunningDaemon(tmp_path, {"camera": sim(fps=30)})
    try:
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 3)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda d: any(m["event"] == "reload" for m in d.of("event")))
        reload_t = next(m for m in daemon.of("event") if m["event"] == "reload")["t"]
        daemon.wait_for(lambda d: sum(m["t_publish"] > reload_t for m in d.of("verdict")) >= 3)
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.close()
    assert seqs(daemon) == list(range(1, len(seqs(daemon)) + 1))
