"""The fault table of an unattended daemon, each row a real daemon subprocess on a real socket.

Rows here: SIGTERM with a full frame queue, ``kill -9`` then restart (sequence and archive), a
bundle replaced by a corrupt one on reload, a subscriber joining late, a slow subscriber past its
high-water mark, incomplete camera buffers, and the overload policies. Camera loss and corrupt
images are in ``test_camera_faults_and_gentl.py`` and ``test_inspect_daemon.py``; control-socket
keys in ``test_daemon_control.py``. Where a row needs inference slower than the camera, the
daemon runs under ``stalled_inference.py``, which holds inference on its first frame until SIGUSR1,
so the row holds on any machine instead of on one fast enough.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import yaml
import zmq

from edge.tools.harness import DEMO_BUNDLE, DEMO_IMAGES, REPO, RunningDaemon, daemon_env

STALLED_INFERENCE = [sys.executable, str(Path(__file__).with_name("stalled_inference.py"))]


def sim(**extra) -> dict:
    return {"type": "sim", "source": str(DEMO_IMAGES), "loop": True, **extra}


def seqs(daemon: RunningDaemon) -> list[int]:
    return [m["seq"] for m in daemon.of("verdict")]


def last_counters(daemon: RunningDaemon) -> dict:
    """The counters of the latest heartbeat (heartbeats flow while inference is held: nothing else is sent)."""
    beats = daemon.of("heartbeat")
    return beats[-1]["counters"] if beats else {}


def stalled(tmp_path: Path, pipeline: dict, camera: dict) -> RunningDaemon:
    """A daemon whose inference holds its first frame until SIGUSR1 (see stalled_inference.py)."""
    config = {"camera": camera, "publish": {"heartbeat_s": 0.1},
              "pipeline": {"shutdown_timeout_s": 120, **pipeline}}  # the drain waits for our SIGUSR1
    return RunningDaemon(tmp_path, config, command=STALLED_INFERENCE)


def test_sigterm_with_a_full_queue_publishes_every_queued_frame_and_counts_the_one_blocked_behind_it(tmp_path):
    daemon = stalled(tmp_path, {"overload": "block", "queue_size": 4}, sim())
    try:
        # Frame 1 held by inference, frames 2-5 in the full queue, frame 6 grabbed and waiting for room.
        daemon.wait_for(lambda d: last_counters(d).get("frames") == 6, what="a full frame queue")
        assert not daemon.of("verdict")
        daemon.signal(signal.SIGTERM)
        # Acquisition stops; the frame it could not queue is counted, not lost (inference is still held).
        daemon.wait_for(lambda d: last_counters(d).get("drops") == {"shutdown": 1}, what="the shutdown drop")
        daemon.signal(signal.SIGUSR1)
        assert daemon.wait() == 0, daemon.log_tail()
    finally:
        daemon.close()
    detail = daemon.stopped()
    # The frame in inference and the four queued at SIGTERM were all inspected and published.
    assert detail["counters"] == {"frames": 6, "verdicts": 5, "errors": 0, "dropped": 1, "drops": {"shutdown": 1}}
    assert seqs(daemon) == [1, 2, 3, 4, 5] and detail["last_seq"] == 5
    assert detail["balanced"] and detail["failure"] is None


def test_kill_9_then_restart_continues_the_sequence_with_a_restart_marker_and_no_partial_archive(tmp_path):
    config = {"camera": sim(), "state_dir": str(tmp_path / "state"), "publish": {"wait_subscriber_s": 10},
              "archive": {"enabled": True, "directory": str(tmp_path / "archive"), "ok_sample_every": 1}}
    first = RunningDaemon(tmp_path, dict(config), name="first")
    try:
        first.wait_for(lambda d: len(d.of("verdict")) >= 30, what="30 verdicts")
        first.kill()  # SIGKILL: no clean-up at all, mid-stream, archive writes in flight
    finally:
        first.close()
    seen = seqs(first)
    assert seen == list(range(1, len(seen) + 1)) and first.of("verdict")[0]["restart"] is True

    second = RunningDaemon(tmp_path, dict(config), name="second")
    try:
        second.wait_for(lambda d: len(d.of("verdict")) >= 3, what="3 verdicts")
        assert second.terminate() == 0, second.log_tail()
    finally:
        second.close()
    assert second.events("started")[0]["previous_stop_clean"] is False
    verdicts = second.of("verdict")
    assert verdicts[0]["restart"] is True and all(m["restart"] is False for m in verdicts[1:])
    assert verdicts[0]["seq"] > max(seen)  # never reuses a number the killed run may have published
    assert verdicts[0]["run_id"] != first.of("verdict")[0]["run_id"]
    assert [m["seq"] for m in verdicts] == list(range(verdicts[0]["seq"], verdicts[0]["seq"] + len(verdicts)))

    # After a clean stop the next run continues exactly where it ended.
    third = RunningDaemon(tmp_path, dict(config), name="third")
    try:
        third.wait_for(lambda d: len(d.of("verdict")) >= 1, what="a verdict")
        assert third.terminate() == 0, third.log_tail()
    finally:
        third.close()
    assert third.of("verdict")[0]["seq"] == second.stopped()["last_seq"] + 1
    assert third.events("started")[0]["previous_stop_clean"] is True

    # The archive the killed run was writing holds only whole records.
    files = [p for p in (tmp_path / "archive").rglob("*") if p.is_file()]
    records = [p for p in files if p.suffix == ".json"]
    assert records and not [p for p in files if p.name.startswith(".")]
    for record in records:
        message = json.loads(record.read_text())
        for name in (message["archive"]["image"], message["archive"]["map"], message["archive"]["overlay"]):
            if name is not None:
                assert cv2.imread(str(record.parent / name), cv2.IMREAD_UNCHANGED) is not None, name
    stems = {p.name.split(".")[0].removesuffix("-map").removesuffix("-overlay") for p in files}
    assert stems == {p.stem for p in records}  # no image, map or overlay without its JSON


def test_reload_refuses_a_corrupt_bundle_keeps_the_old_one_and_accepts_a_good_one(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, bundle, ignore=shutil.ignore_patterns(".cache"))
    daemon = RunningDaemon(tmp_path, {"camera": sim(fps=20), "bundle": str(bundle),
                                      "publish": {"wait_subscriber_s": 10}})
    try:
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 3, what="3 verdicts")
        original = daemon.of("verdict")[0]["bundle_id"]
        model = bundle / "model.onnx"
        good_bytes = model.read_bytes()
        model.write_bytes(good_bytes[: len(good_bytes) // 2])  # truncated, as by a failed copy
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(lambda d: len(d.events("reload_refused")) == 1, what="the first refusal")
        refused = daemon.events("reload_refused")[0]
        assert "model.onnx" in refused["reason"] and refused["bundle_id"] == original
        count = len(daemon.of("verdict"))
        daemon.wait_for(lambda d: len(d.of("verdict")) >= count + 3, what="3 more verdicts")  # the old bundle decides

        model.write_bytes(good_bytes)
        meta = yaml.safe_load((bundle / "bundle.yaml").read_text())
        meta["selftest"]["score"] *= 1.5  # hashes fine, but the graph no longer scores its probe as recorded
        (bundle / "bundle.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(lambda d: len(d.events("reload_refused")) == 2, what="the second refusal")
        assert "self-test failed" in daemon.events("reload_refused")[-1]["reason"]

        meta["selftest"]["score"] /= 1.5
        (bundle / "bundle.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(lambda d: bool(d.events("reload")), what="the reload")
        count = len(daemon.of("verdict"))
        daemon.wait_for(lambda d: len(d.of("verdict")) >= count + 3, what="3 verdicts after the reload")
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        daemon.close()
    (reload,) = daemon.events("reload")
    assert reload["bundle_id"] == original and reload["selftest"]["abs_diff"] <= reload["selftest"]["limit"]
    assert [r["source"] for r in daemon.events("reload_refused")] == ["SIGHUP", "SIGHUP"]
    # One socket, one unbroken sequence through two refusals and a reload.
    assert seqs(daemon) == list(range(1, len(seqs(daemon)) + 1))
    assert all(m["bundle_id"] == original and m["error"] is None for m in daemon.of("verdict"))


def test_a_subscriber_joining_late_learns_what_it_missed_from_its_first_verdicts_seq_and_counters(tmp_path):
    daemon = RunningDaemon(tmp_path, {"camera": sim(fps=10), "pipeline": {"acquisition": "continuous"}})
    context = zmq.Context()
    try:
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 5, what="5 verdicts")
        late = context.socket(zmq.SUB)
        late.setsockopt(zmq.SUBSCRIBE, b"verdict.")
        late.connect(daemon.endpoint)
        assert late.poll(5000)
        first_seen = json.loads(late.recv_multipart()[1])
        assert daemon.terminate() == 0, daemon.log_tail()
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
        daemon.wait_for(lambda d: len(d.of("heartbeat")) >= 5, what="5 heartbeats")
        assert daemon.terminate() == 0, daemon.log_tail()
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
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 1, what="a verdict")  # the collecting subscriber was first
        slow.connect(daemon.endpoint)
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 300, 120, "300 verdicts")  # not reading meanwhile
        while daemon.proc.poll() is None or slow.poll(500):
            if slow.poll(100):
                received.append(json.loads(slow.recv_multipart()[1])["seq"])
        code = daemon.wait()
    finally:
        context.destroy(linger=0)
        daemon.close()
    assert code == 0
    counters = daemon.stopped()["counters"]
    assert counters["frames"] == counters["verdicts"] == 400 and counters["dropped"] == 0
    # The slow subscriber lost verdicts and sees it as a seq gap ...
    assert received and any(b - a > 1 for a, b in zip(received, received[1:], strict=False))
    # ... while the line went on at its pace and a subscriber that keeps up got them all.
    assert seqs(daemon) == list(range(1, 401))


def test_incomplete_buffers_of_a_free_running_camera_are_counted_as_drops(tmp_path):
    daemon = RunningDaemon(tmp_path, {"camera": sim(max_frames=40, faults={"incomplete_every": 5}),
                                      "publish": {"wait_subscriber_s": 10}})
    try:
        assert daemon.wait(timeout_s=120) == 0, daemon.log_tail()
    finally:
        daemon.close()
    counters = daemon.stopped()["counters"]
    # Every 5th grab is incomplete: 40 delivered frames took 49 grabs, 9 of them discarded by the camera.
    assert counters["verdicts"] == 40 and counters["drops"] == {"incomplete_buffer": 9}
    assert counters["frames"] == 49 and daemon.stopped()["balanced"]
    assert daemon.of("verdict")[-1]["counters"]["drops"] == {"incomplete_buffer": 9}


# 20 frames, queue_size 2, inference holding frame 1 until all were grabbed (or, for block, until
# acquisition waits): the frames each policy inspects, and the drops it counts.
POLICY_OUTCOMES = {
    "drop_newest": ([1, 2, 3], {"queue_full": 17}),  # the queue keeps the first arrivals
    "drop_oldest": ([1, 19, 20], {"queue_full": 17}),  # the queue keeps the newest frames
    "block": (list(range(1, 21)), {}),  # acquisition waits for room: nothing dropped
}


@pytest.mark.parametrize("policy", list(POLICY_OUTCOMES))
def test_with_inference_stalled_each_overload_policy_inspects_and_drops_exactly_the_frames_it_promises(
    tmp_path, policy,
):
    daemon = stalled(tmp_path, {"overload": policy, "queue_size": 2}, sim(max_frames=20))
    try:
        if policy == "block":
            # Frame 1 held, 2 and 3 queued, 4 grabbed and waiting for room: then nothing more is grabbed.
            daemon.wait_for(lambda d: last_counters(d).get("frames") == 4, what="a full queue")
            seen = len(daemon.of("heartbeat"))
            daemon.wait_for(lambda d: len(d.of("heartbeat")) >= seen + 3, what="3 more heartbeats")
            frames_seen = [b["counters"]["frames"] for b in daemon.of("heartbeat")[seen - 1:]]
            assert len(frames_seen) >= 4 and set(frames_seen) == {4}
        else:
            daemon.wait_for(lambda d: last_counters(d).get("frames") == 20, what="all 20 frames grabbed")
        assert not daemon.of("verdict") and not last_counters(daemon)["verdicts"]
        daemon.signal(signal.SIGUSR1)
        assert daemon.wait() == 0, daemon.log_tail()
    finally:
        daemon.close()
    frame_ids, drops = POLICY_OUTCOMES[policy]
    assert [m["frame_id"] for m in daemon.of("verdict")] == frame_ids
    assert seqs(daemon) == list(range(1, len(frame_ids) + 1))
    detail = daemon.stopped()
    assert detail["counters"] == {"frames": 20, "verdicts": len(frame_ids), "errors": 0,
                                  "dropped": sum(drops.values()), "drops": drops}
    assert detail["balanced"] and detail["failure"] is None


@pytest.mark.parametrize("policy", list(POLICY_OUTCOMES))
def test_soak_under_each_overload_policy_accounts_for_every_frame_and_loses_no_verdict(tmp_path, policy):
    """``edge-inspect soak`` end to end; which frames drop is the stalled test's job, not this one's."""
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, "-m", "edge", "soak", "--frames", "150", "--policy", policy,
                           "--threads", "1", "--json", str(out)], cwd=REPO, env=daemon_env(),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (result,) = json.loads(out.read_text())
    assert result["balanced"] and result["frames"] == 150 and result["subscriber"]["seq_gaps"] == 0
    assert result["verdicts"] + result["dropped"] == 150 and result["subscriber"]["received"] == result["verdicts"]
    # Only the policy may drop, and only a dropping policy: block never does.
    assert result["drops"] == ({"queue_full": result["dropped"]} if result["dropped"] else {})
    if policy == "block":
        assert result["dropped"] == 0
    assert result["rss_mb"]["samples"] >= 1


def test_sequence_survives_a_reload_through_the_same_socket(tmp_path):
    """Covered above for SIGHUP; here the timing: verdicts straddle the reload with no gap."""
    daemon = RunningDaemon(tmp_path, {"camera": sim(fps=30)})
    try:
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 3, what="3 verdicts")
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(lambda d: bool(d.events("reload")), what="the reload")
        reload_t = next(m for m in daemon.of("event") if m["event"] == "reload")["t"]
        daemon.wait_for(lambda d: sum(m["t_publish"] > reload_t for m in d.of("verdict")) >= 3,
                        what="3 verdicts after the reload")
        assert daemon.terminate() == 0, daemon.log_tail()
    finally:
        daemon.close()
    assert seqs(daemon) == list(range(1, len(seqs(daemon)) + 1))
