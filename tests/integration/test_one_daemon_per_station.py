"""One daemon per state directory: a second one is refused naming the first's pid; kill -9 leaves no stale lock.

Two real daemon processes on the same ``state_dir`` and station, as a copied unit file or a
manual run beside the service would start them. Before the lock, the second continued the
first's reserved numbers and seqs were published twice; now it exits 2 at once and the first's
sequence runs on unbroken.
"""

from __future__ import annotations

import json
import subprocess
import sys

from edge.daemon.statelock import LOCK_FILE
from edge.tools.harness import DEMO_IMAGES, REPO, RunningDaemon, daemon_env, seq_gaps, with_defaults


def station(tmp_path) -> dict:
    return {"station": "line1", "state_dir": str(tmp_path / "state"),
            "camera": {"type": "sim", "source": str(DEMO_IMAGES), "loop": True, "fps": 50}}


def test_a_second_daemon_on_the_same_state_dir_is_refused_and_the_first_runs_on(tmp_path):
    with RunningDaemon(tmp_path, station(tmp_path), name="first") as first:
        first.wait_for(lambda d: len(d.of("verdict")) >= 5, what="the first daemon's verdicts")
        second_config = tmp_path / "second.yaml"
        second_config.write_text(json.dumps(with_defaults({**station(tmp_path), "publish": {"wait_subscriber_s": 0}})))
        for extra in (["--validate-config"], []):
            second = subprocess.run([sys.executable, "-m", "edge", "--config", str(second_config), *extra],
                                    cwd=REPO, env=daemon_env(), capture_output=True, text=True, timeout=120,
                                    check=False)
            assert second.returncode == 2, second.stderr
            assert second.stderr.strip().splitlines()[-1] == (
                f"edge-inspect: error: state_dir {tmp_path / 'state'} is in use by another edge-inspect "
                f"(pid {first.pid}): one daemon per station and state directory")
        seen = len(first.of("verdict"))
        first.wait_for(lambda d: len(d.of("verdict")) >= seen + 5, what="verdicts after the refusal")
        assert first.terminate() == 0
    verdicts = first.of("verdict")
    assert verdicts[0]["seq"] == 1 and seq_gaps(verdicts) == []
    state = json.loads((tmp_path / "state" / "sequence.json").read_text())
    assert state == {**state, "next_seq": verdicts[-1]["seq"] + 1, "clean": True}


def test_after_kill_9_the_next_daemon_takes_the_lock_and_continues_above_the_killed_run(tmp_path):
    with RunningDaemon(tmp_path, station(tmp_path), name="killed") as killed:
        killed.wait_for(lambda d: len(d.of("verdict")) >= 3, what="verdicts before kill -9")
        assert killed.kill() == -9
    assert (tmp_path / "state" / LOCK_FILE).read_text().strip() == str(killed.pid)  # stale pid, no lock
    with RunningDaemon(tmp_path, station(tmp_path), name="next") as following:
        following.wait_for(lambda d: len(d.of("verdict")) >= 3, what="the next daemon's verdicts")
        assert following.terminate() == 0
    first = following.of("verdict")[0]
    assert first["restart"] is True and first["seq"] > killed.of("verdict")[-1]["seq"]
