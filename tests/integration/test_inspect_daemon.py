"""The inspection daemon as a real subprocess, watched through a real ZeroMQ subscriber.

Every frame gets exactly one verdict with consecutive ``seq``; an unreadable image is an NG
verdict with ``error`` set, not a crash; SIGTERM mid-stream exits 0 once every frame grabbed is
published, with the ``stopped`` event's ``last_seq`` equal to the last one received; stderr is
one JSON record per line when it is not a terminal; start-up problems exit 2 with one line; and
``edge-inspect subscribe`` receives ``--count`` verdicts.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edge.model.imageio import list_images
from edge.tools import harness
from edge.tools.harness import REPO, RunningDaemon, daemon_env, free_port

# Another bundle and image folder can be tried with these variables (default: the demo ones).
DEMO_BUNDLE = Path(os.environ.get("EDGE_TEST_BUNDLE", harness.DEMO_BUNDLE))
DEMO_IMAGES = Path(os.environ.get("EDGE_TEST_IMAGES", harness.DEMO_IMAGES))
needs_demo = pytest.mark.skipif(
    not (DEMO_BUNDLE / "bundle.yaml").is_file() or not DEMO_IMAGES.is_dir(),
    reason=f"no bundle at {DEMO_BUNDLE} (demo bundle not built yet)",
)
ENV = daemon_env()


def daemon_args(source: Path, endpoint: str, *extra: str) -> list[str]:
    return ["--camera", "sim", "--bundle", str(DEMO_BUNDLE), "--source", str(source), "--publish", endpoint,
            "--wait-subscriber", "10", "--threads", "1", *extra]


def daemon_cmd(source: Path, endpoint: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edge", *daemon_args(source, endpoint, *extra)]


def start(tmp_path: Path, source: Path, *extra: str) -> RunningDaemon:
    """The daemon on the command line only (no config file), with its collecting subscriber."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    return RunningDaemon(tmp_path, args=daemon_args(source, endpoint, *extra), endpoint=endpoint)


@pytest.fixture
def source(tmp_path) -> Path:
    """Two good and two defective demo images (copied, named <n>_<kind>_<file>) and a corrupt .png."""
    folder = tmp_path / "images"
    folder.mkdir()
    demo = list_images(DEMO_IMAGES) if DEMO_IMAGES.is_dir() else []
    good = [p for p in demo if p.parent.name == "good"]
    defective = [p for p in demo if p.parent.name != "good"]
    picks = good[:2] + defective[:1] + defective[-1:]
    for i, path in enumerate(picks):
        shutil.copy(path, folder / f"{i * 2:02d}_{path.parent.name}_{path.name}")
    (folder / "03_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    return folder


@needs_demo
def test_every_frame_gets_one_verdict_and_a_corrupt_image_an_error_verdict(tmp_path, source):
    with start(tmp_path, source, "--station", "line7") as daemon:
        assert daemon.wait() == 0, daemon.log_tail()
    messages = daemon.of("verdict")
    files = sorted(str(p) for p in list_images(source))
    assert [m["source"] for m in messages] == files
    assert [m["seq"] for m in messages] == list(range(1, len(files) + 1))
    assert [m["frame_id"] for m in messages] == list(range(1, len(files) + 1))
    for m in messages:
        assert m["schema"] == 1 and m["station"] == "line7" and m["verdict"] in ("OK", "NG")
        assert m["t_capture"] <= m["t_publish"] and m["latency_ms"]["total"] >= 0
        assert m["bundle_id"] and isinstance(m["regions"], list)
    corrupt = [m for m in messages if m["source"].endswith("03_corrupt.png")]
    assert len(corrupt) == 1
    assert corrupt[0]["verdict"] == "NG" and corrupt[0]["score"] is None
    assert corrupt[0]["error"].startswith("decode: ")
    inspected = [m for m in messages if m["error"] is None]
    assert len(inspected) == len(files) - 1
    assert all(isinstance(m["score"], float) and m["threshold"] > 0 for m in inspected)
    assert all(m["latency_ms"]["inference"] > 0 for m in inspected)
    defects = [m for m in inspected if "_good_" not in Path(m["source"]).name]
    assert len(defects) == 2 and all(m["verdict"] == "NG" and m["regions"] for m in defects)
    assert messages[-1]["counters"] == {"frames": len(files), "verdicts": len(files), "errors": 1, "dropped": 0,
                                       "drops": {}}
    stopped = daemon.stopped()
    assert stopped["counters"]["verdicts"] == len(files) and stopped["balanced"] and stopped["failure"] is None


@needs_demo
def test_daemon_stderr_is_one_json_record_per_line_when_it_is_not_a_terminal(tmp_path, source):
    """The log format itself (journald-ready), so reading the log is this test's subject."""
    with start(tmp_path, source, "--max-frames", "2") as daemon:
        assert daemon.wait() == 0, daemon.log_tail()
    records = [json.loads(line) for line in daemon.log_path.read_text().splitlines()]
    assert all({"level", "msg"} <= set(r) for r in records)
    verdict_lines = [r for r in records if r["level"] == "INFO" and r["msg"].startswith("seq=")]
    assert [r["msg"].split()[0] for r in verdict_lines] == [f"seq={m['seq']}" for m in daemon.of("verdict")]
    assert len(verdict_lines) == 2


@needs_demo
def test_send_map_adds_the_anomaly_map_png_frame(tmp_path, source):
    with start(tmp_path, source, "--send-map", "--max-frames", "2") as daemon:
        assert daemon.wait() == 0, daemon.log_tail()
    verdicts = [r for r in daemon.received if r.kind == "verdict"]
    assert len(verdicts) == 2 and all(r.payload["has_map"] is True for r in verdicts)
    assert all(r.attachment is not None and r.attachment.startswith(b"\x89PNG") for r in verdicts)


@needs_demo
def test_sigterm_mid_stream_exits_0_after_publishing_every_frame_it_grabbed(tmp_path, source):
    with start(tmp_path, source, "--loop", "--fps", "10") as daemon:
        daemon.wait_for(lambda d: len(d.of("verdict")) >= 4, what="4 verdicts")
        assert daemon.terminate() == 0, daemon.log_tail()
    seqs = [m["seq"] for m in daemon.of("verdict")]
    assert seqs == list(range(1, len(seqs) + 1))
    stopped = daemon.stopped()
    counters = stopped["counters"]
    assert stopped["last_seq"] == seqs[-1] == counters["verdicts"] and stopped["failure"] is None
    assert counters["frames"] == counters["verdicts"] and counters["drops"] == {} and stopped["balanced"]


@needs_demo
def test_subscribe_command_receives_count_verdicts_and_exits_0(tmp_path, source):
    with start(tmp_path, source, "--loop", "--fps", "10", "--station", "line2") as daemon:
        watcher = subprocess.run(
            [sys.executable, "-m", "edge", "subscribe", daemon.endpoint, "--count", "3", "--json", "--timeout", "30",
             "--station", "line2"],
            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=90,
        )
        assert daemon.terminate() == 0, daemon.log_tail()
    assert watcher.returncode == 0, watcher.stderr
    lines = [json.loads(line) for line in watcher.stdout.splitlines()]
    assert len(lines) == 3 and all(m["station"] == "line2" for m in lines)
    assert [m["seq"] for m in lines] == list(range(lines[0]["seq"], lines[0]["seq"] + 3))
    assert "received=3 gaps=0" in watcher.stderr  # the subscribe command's own summary line


def test_subscribe_command_exits_1_after_timeout_without_count():
    result = subprocess.run(
        [sys.executable, "-m", "edge", "subscribe", f"tcp://127.0.0.1:{free_port()}", "--count", "2",
         "--timeout", "0.5"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "timeout" in result.stderr and "received=0" in result.stderr


def test_missing_bundle_is_one_line_on_stderr_and_exit_2(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-m", "edge", "--camera", "sim", "--bundle", str(tmp_path / "no-bundle"),
         "--source", str(tmp_path), "--publish", f"tcp://127.0.0.1:{free_port()}"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "bundle" in result.stderr and "no-bundle" in result.stderr


@needs_demo
def test_missing_source_and_taken_port_exit_2_with_one_line(tmp_path):
    missing = subprocess.run(daemon_cmd(tmp_path / "nope", f"tcp://127.0.0.1:{free_port()}"),
                             cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2
    errors = [line for line in missing.stderr.splitlines() if line.startswith("edge-inspect: error:")]
    assert len(errors) == 1 and "sim camera" in errors[0] and str(tmp_path / "nope") in errors[0]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run(daemon_cmd(DEMO_IMAGES, f"tcp://127.0.0.1:{port}"),
                              cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60)
    assert busy.returncode == 2
    errors = [line for line in busy.stderr.splitlines() if line.startswith("edge-inspect: error:")]
    assert len(errors) == 1 and "address already in use" in errors[0]
