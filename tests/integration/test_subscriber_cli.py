"""``edge-inspect subscribe`` against a real daemon: connected line, seq 1 without --wait-subscriber, --until-stopped."""

from __future__ import annotations

import json
import subprocess
import sys

from edge.tools.harness import DEMO_BUNDLE, DEMO_IMAGES, REPO, RunningDaemon, daemon_env, free_port


def test_a_subscriber_waiting_before_the_daemon_starts_gets_seq_1_without_wait_subscriber(tmp_path):
    # The harness connects its subscriber before it starts the process; wait_subscriber_s 0 = don't wait.
    config = {"camera": {"type": "sim", "source": str(DEMO_IMAGES), "max_frames": 3},
              "publish": {"wait_subscriber_s": 0}}
    with RunningDaemon(tmp_path, config) as daemon:
        assert daemon.wait() == 0, daemon.log_tail()
    assert [m["seq"] for m in daemon.of("verdict")] == [1, 2, 3]


def test_subscribe_says_when_connected_and_exits_on_the_stopped_event_with_everything_saved(tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    subscriber = subprocess.Popen(
        [sys.executable, "-m", "edge", "subscribe", endpoint, "--until-stopped", "--json", "--save",
         str(tmp_path / "saved"), "--timeout", "120"],
        cwd=REPO, env=daemon_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    daemon = subprocess.run(
        [sys.executable, "-m", "edge", "--camera", "sim", "--bundle", str(DEMO_BUNDLE), "--source",
         str(DEMO_IMAGES / "scratch"), "--publish", endpoint, "--send-map", "--wait-subscriber", "30",
         "--threads", "1"], cwd=REPO, env=daemon_env(), capture_output=True, text=True, timeout=120, check=False)
    out, err = subscriber.communicate(timeout=120)
    assert daemon.returncode == 0, daemon.stderr
    assert subscriber.returncode == 0, err
    lines = err.splitlines()
    assert lines[0] == f"connected to {endpoint}, waiting for verdicts"
    assert lines[-2].startswith("stopped: station1 last_seq=3")
    assert "received=3 gaps=0 missing=0" in lines[-1] and "restarts=1" in lines[-1] and "joined" not in err
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [1, 2, 3]
    saved = sorted(p.name for p in (tmp_path / "saved").iterdir())
    assert saved == [f"station1-000000000{n}{suffix}" for n in (1, 2, 3) for suffix in ("-map.png", ".json")]
