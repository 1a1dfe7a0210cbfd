"""The inspection daemon as a real subprocess, watched through a real ZeroMQ subscriber.

Every frame gets exactly one verdict with consecutive ``seq``; an unreadable image is an NG
verdict with ``error`` set, not a crash; SIGTERM mid-stream finishes the frame in flight and exits
0 with the last logged ``seq`` equal to the last one received; start-up problems exit 2 with one
line; and ``edge-inspect subscribe`` receives ``--count`` verdicts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from edge.model.imageio import list_images

REPO = Path(__file__).resolve().parents[2]
# Another bundle and image folder can be tried with these variables (default: the demo ones).
DEMO_BUNDLE = Path(os.environ.get("EDGE_TEST_BUNDLE", REPO / "edge" / "demo" / "bundle"))
DEMO_IMAGES = Path(os.environ.get("EDGE_TEST_IMAGES", REPO / "edge" / "demo" / "images"))
needs_demo = pytest.mark.skipif(
    not (DEMO_BUNDLE / "bundle.yaml").is_file() or not DEMO_IMAGES.is_dir(),
    reason=f"no bundle at {DEMO_BUNDLE} (demo bundle not built yet)",
)
ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daemon_cmd(source: Path, endpoint: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edge", "--camera", "sim", "--bundle", str(DEMO_BUNDLE), "--source", str(source),
            "--publish", endpoint, "--wait-subscriber", "10", "--threads", "1", *extra]


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    """Run with stderr in a file: a daemon logging into an unread pipe would block."""
    with open(log, "w") as handle:
        return subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=handle)


@pytest.fixture
def sub():
    context = zmq.Context()
    socket_ = context.socket(zmq.SUB)
    socket_.setsockopt(zmq.LINGER, 0)
    socket_.setsockopt(zmq.SUBSCRIBE, b"verdict.")
    yield socket_
    context.destroy(linger=0)


def receive_until_exit(sub: zmq.Socket, proc: subprocess.Popen, deadline_s: float = 90.0) -> list[dict]:
    """Every verdict until the process has exited and nothing more is queued."""
    messages: list[dict] = []
    deadline = time.monotonic() + deadline_s
    exited_at: float | None = None
    while time.monotonic() < deadline:
        if sub.poll(100):
            parts = sub.recv_multipart()
            assert len(parts) in (2, 3) and parts[0].startswith(b"verdict.")
            messages.append(json.loads(parts[1]))
            continue
        if proc.poll() is not None:
            exited_at = exited_at or time.monotonic()
            if time.monotonic() - exited_at > 0.5:
                return messages
    proc.kill()
    raise AssertionError(f"daemon still running after {deadline_s} s ({len(messages)} verdicts)")


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
def test_every_frame_gets_one_verdict_and_a_corrupt_image_an_error_verdict(tmp_path, source, sub):
    port = free_port()
    sub.connect(f"tcp://127.0.0.1:{port}")
    proc = start(daemon_cmd(source, f"tcp://127.0.0.1:{port}", "--station", "line7"), tmp_path / "daemon.log")
    messages = receive_until_exit(sub, proc)
    log = (tmp_path / "daemon.log").read_text()
    assert proc.returncode == 0, log
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
    assert messages[-1]["counters"] == {"frames": len(files), "errors": 1, "dropped": 0, "drops": {}}
    # stderr is not a terminal: one JSON object per line (journald-ready), one INFO line per verdict.
    records = [json.loads(line) for line in log.splitlines()]
    assert sum(r["level"] == "INFO" and r["msg"].startswith("seq=") for r in records) == len(files)


@needs_demo
def test_send_map_adds_the_anomaly_map_png_frame(tmp_path, source, sub):
    port = free_port()
    sub.connect(f"tcp://127.0.0.1:{port}")
    proc = start(daemon_cmd(source, f"tcp://127.0.0.1:{port}", "--send-map", "--max-frames", "2"), tmp_path / "d.log")
    maps = []
    deadline = time.monotonic() + 60
    while len(maps) < 2 and time.monotonic() < deadline:
        if sub.poll(200):
            parts = sub.recv_multipart()
            assert json.loads(parts[1])["has_map"] is True and len(parts) == 3
            maps.append(parts[2])
    assert proc.wait(timeout=30) == 0
    assert len(maps) == 2 and all(m.startswith(b"\x89PNG") for m in maps)


@needs_demo
def test_sigterm_mid_stream_publishes_the_frame_in_flight_and_exits_0(tmp_path, source, sub):
    port = free_port()
    sub.connect(f"tcp://127.0.0.1:{port}")
    proc = start(daemon_cmd(source, f"tcp://127.0.0.1:{port}", "--loop", "--fps", "10"), tmp_path / "daemon.log")
    messages: list[dict] = []
    deadline = time.monotonic() + 60
    while len(messages) < 4 and time.monotonic() < deadline:
        if sub.poll(200):
            messages.append(json.loads(sub.recv_multipart()[1]))
    assert len(messages) >= 4, (tmp_path / "daemon.log").read_text()
    proc.send_signal(signal.SIGTERM)
    messages += receive_until_exit(sub, proc, deadline_s=30)
    log = (tmp_path / "daemon.log").read_text()
    assert proc.returncode == 0, log
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(1, len(seqs) + 1))
    assert f"last_seq={seqs[-1]}" in log
    assert "received SIGTERM" in log


@needs_demo
def test_subscribe_command_receives_count_verdicts_and_exits_0(tmp_path, source):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    daemon = start(daemon_cmd(source, endpoint, "--loop", "--fps", "10", "--station", "line2"), tmp_path / "d.log")
    try:
        watcher = subprocess.run(
            [sys.executable, "-m", "edge", "subscribe", endpoint, "--count", "3", "--json", "--timeout", "30",
             "--station", "line2"],
            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=90,
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, (tmp_path / "d.log").read_text()
    assert watcher.returncode == 0, watcher.stderr
    lines = [json.loads(line) for line in watcher.stdout.splitlines()]
    assert len(lines) == 3 and all(m["station"] == "line2" for m in lines)
    assert [m["seq"] for m in lines] == list(range(lines[0]["seq"], lines[0]["seq"] + 3))
    assert "received=3 gaps=0" in watcher.stderr


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
    assert "address already in use" in busy.stderr
