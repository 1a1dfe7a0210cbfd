"""Run the inspection daemon as a real subprocess and collect what it publishes on a real ZeroMQ socket.

Shared by the camera integration tests (faults, GenTL producers, a real camera): each writes a
config, starts ``python -m edge`` on it, and checks the verdict and status messages it published,
its exit code and its log.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml
import zmq

REPO = Path(__file__).resolve().parents[2]
DEMO_BUNDLE = REPO / "edge" / "demo" / "bundle"
DEMO_IMAGES = REPO / "edge" / "demo" / "images"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_daemon(tmp_path: Path, camera: dict, watchdog: dict | None = None, deadline_s: float = 60.0):
    """Run the daemon on a config until it exits; every verdict and status message it published, and its log."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = {"station": "t1", "bundle": str(DEMO_BUNDLE), "camera": camera, "log_level": "INFO",
              "publish": {"endpoint": endpoint, "wait_subscriber_s": 10}, "runtime": {"threads": 1}}
    if watchdog:
        config["watchdog"] = watchdog
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    for topic in (b"verdict.", b"status."):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(endpoint)
    log_path = tmp_path / "daemon.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edge", "--config", str(path)], cwd=REPO, env=ENV,
                                stdout=subprocess.DEVNULL, stderr=log)
    events: list[tuple[str, dict]] = []
    deadline, exited_at = time.monotonic() + deadline_s, None
    try:
        while time.monotonic() < deadline:
            if sub.poll(100):
                topic, payload = sub.recv_multipart()[:2]
                events.append((topic.decode().split(".")[0], json.loads(payload)))
            elif proc.poll() is not None:
                exited_at = exited_at or time.monotonic()
                if time.monotonic() - exited_at > 0.5:
                    break
        else:
            proc.kill()
            raise AssertionError(f"daemon still running after {deadline_s} s: {log_path.read_text()[-2000:]}")
    finally:
        context.destroy(linger=0)
    return proc.returncode, events, log_path.read_text()
