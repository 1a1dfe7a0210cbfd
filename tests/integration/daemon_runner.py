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


class RunningDaemon:
    """A daemon subprocess on a config, with a subscriber thread collecting every message it publishes.

    For tests that act on a daemon while it runs (signals, reloads, control commands, kill -9):
    ``messages`` fills with ``(kind, payload)`` where kind is the topic's first word (verdict,
    status, heartbeat, event).
    """

    def __init__(self, tmp_path: Path, config: dict, env: dict | None = None, name: str = "edge") -> None:
        import threading

        publish = config.setdefault("publish", {})
        self.endpoint = publish.setdefault("endpoint", f"tcp://127.0.0.1:{free_port()}")
        publish.setdefault("wait_subscriber_s", 10)  # the collecting subscriber connects first
        config.setdefault("station", "t1")
        config.setdefault("bundle", str(DEMO_BUNDLE))
        config.setdefault("runtime", {"threads": 1})
        self.config_path = tmp_path / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = tmp_path / f"{name}.log"
        self.messages: list[tuple[str, dict]] = []
        self._stop = threading.Event()
        self._context = zmq.Context()
        self._sub = self._context.socket(zmq.SUB)
        self._sub.setsockopt(zmq.LINGER, 0)
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._sub.connect(self.endpoint)
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "edge", "--config", str(self.config_path)],
                                         cwd=REPO, env={**ENV, **(env or {})}, stdout=subprocess.DEVNULL, stderr=log)
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            if self._sub.poll(50):
                topic, payload = self._sub.recv_multipart()[:2]
                self.messages.append((topic.decode().split(".")[0], json.loads(payload)))

    def of(self, kind: str) -> list[dict]:
        return [m for k, m in list(self.messages) if k == kind]

    def wait_for(self, predicate, timeout: float = 30.0) -> None:
        """Wait until ``predicate(self)`` is true; AssertionError with the log if it never is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            if self.proc.poll() is not None and not predicate(self):
                time.sleep(0.5)  # let the last messages arrive
                if predicate(self):
                    return
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.log()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"condition not met within {timeout} s: {self.log()[-3000:]}")

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout=timeout)
        time.sleep(0.5)  # the subscriber drains what was flushed at close
        return code

    def log(self) -> str:
        return self.log_path.read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._stop.set()
        self._thread.join(timeout=5)
        self._context.destroy(linger=0)
