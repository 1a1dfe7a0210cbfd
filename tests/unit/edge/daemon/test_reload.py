"""A reload applies what it reports as applied: runtime settings reach the running inference, and a
client key added to the allow-list folder is admitted without a restart.

The daemon runs in a thread of this process, publishing on a real ZeroMQ socket that the test
subscribes to; the test waits for the ``started`` event before it reloads. Where inference has to
fail, the camera is a fake: no real camera delivers an image with no pixels on demand.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

import edge.daemon.supervisor
from edge.cameras.base import Frame
from edge.control.server import ControlError, request
from edge.daemon.config import EdgeConfig, load_config
from edge.daemon.supervisor import EXIT_FAILURE, EXIT_OK, InspectionDaemon
from tests.unit.edge.control.curve_keys import make_keys

DEMO = Path(__file__).resolve().parents[4] / "edge" / "demo"
DEADLINE_S = 60.0


class EmptyImageCamera:
    """Each grab delivers an image with no pixels: nothing to decode wrongly, but inference fails on it."""

    def __init__(self) -> None:
        self.grabs = 0

    def open(self) -> None:
        pass

    def grab(self, timeout: float) -> Frame | None:
        self.grabs += 1
        return Frame(image=np.zeros((0, 0, 3), np.uint8), frame_id=self.grabs, source="empty")

    def close(self) -> None:
        pass

    def stats(self) -> dict[str, int]:
        return {"frames": self.grabs}


def demo_config(tmp_path: Path, **overrides: Any) -> EdgeConfig:
    return load_config(None, {"bundle": str(DEMO / "bundle"), "camera.type": "sim",
                              "camera.source": str(DEMO / "images"), "pipeline.acquisition": "on_demand",
                              "publish.endpoint": f"ipc://{tmp_path}/verdicts", "publish.wait_subscriber_s": 30,
                              "publish.heartbeat_s": 0.2, **overrides})


def next_message(sub: zmq.Socket, topic: str, deadline_s: float = DEADLINE_S) -> dict[str, Any]:
    """The next message whose topic starts with ``topic``, waiting up to the deadline."""
    poller_ms = int(deadline_s * 1000)
    while sub.poll(poller_ms):
        parts = sub.recv_multipart()
        if parts[0].decode().startswith(topic):
            return json.loads(parts[1])
    raise AssertionError(f"no {topic} message within {deadline_s} s")


@contextmanager
def running(config: EdgeConfig, reload_config=None) -> Iterator[tuple[InspectionDaemon, threading.Event, list[int]]]:
    """The daemon running in a thread, once it has published ``started``; stopped and joined afterwards."""
    stop = threading.Event()
    daemon = InspectionDaemon(config, stop, reload_config)
    exit_codes: list[int] = []
    thread = threading.Thread(target=lambda: exit_codes.append(daemon.run()), name="daemon-under-test")
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"event.")
    sub.connect(config.publish.endpoint)
    thread.start()
    try:
        assert next_message(sub, "event.")["event"] == "started"
        yield daemon, stop, exit_codes
    finally:
        stop.set()
        thread.join(DEADLINE_S)
        sub.close()
        context.term()
    assert not thread.is_alive()


def test_a_reload_applies_max_consecutive_failures_to_the_running_inference(monkeypatch, tmp_path):
    monkeypatch.setattr(edge.daemon.supervisor, "create_camera", lambda _config: EmptyImageCamera())
    config = demo_config(tmp_path)
    assert config.runtime.max_consecutive_failures == 10
    stricter = demo_config(tmp_path, **{"runtime.max_consecutive_failures": 2})
    with running(config, lambda: stricter) as (daemon, stop, exit_codes):
        detail = daemon.reload("control")
        assert detail["needs_restart"] == []  # runtime is applied, so not reported as waiting for a restart
        for _ in range(2):
            daemon.trigger()
        assert stop.wait(DEADLINE_S), "two failures in a row did not stop the daemon"
    assert exit_codes == [EXIT_FAILURE]
    assert daemon.inference is not None and daemon.inference.failure == "inference failed on 2 frames in a row"
    counts = daemon.accounting.snapshot()
    assert counts["errors"] == counts["verdicts"] == 2 and daemon.accounting.balanced()


def test_a_reload_reports_a_changed_section_it_cannot_apply_as_needing_a_restart(tmp_path):
    config = demo_config(tmp_path)
    changed = demo_config(tmp_path, **{"pipeline.queue_size": 5, "runtime.max_consecutive_failures": 3})
    with running(config, lambda: changed) as (daemon, _stop, exit_codes):
        assert daemon.reload("SIGHUP")["needs_restart"] == ["pipeline"]
        assert daemon.config.runtime.max_consecutive_failures == 3
        assert daemon.config.pipeline.queue_size == 2  # still the running one
    assert exit_codes == [EXIT_OK]


def test_a_client_key_added_to_the_folder_is_admitted_by_the_reload_command(tmp_path):
    keys = make_keys(tmp_path)
    endpoint = f"ipc://{tmp_path}/control"
    config = demo_config(tmp_path, **{"control.enabled": True, "control.endpoint": endpoint,
                                      "control.curve": {"secret_key": str(keys.server_secret),
                                                        "allowed_clients": str(keys.allowed_clients)}})

    def ctl(command: str, secret: Path, timeout_s: float = 10.0) -> dict[str, Any]:
        return request(endpoint, command, server_key=keys.server_public, client_key=secret, timeout_s=timeout_s)

    with running(config) as (_daemon, _stop, exit_codes):
        with pytest.raises(ControlError, match="no reply"):
            ctl("status", keys.stranger_secret, timeout_s=1.0)
        shutil.copy(keys.stranger_public, keys.allowed_clients)
        assert ctl("reload", keys.client_secret)["ok"] is True
        status = ctl("status", keys.stranger_secret)
        assert status["ok"] is True and status["result"]["bundle"]["id"]
    assert exit_codes == [EXIT_OK]
