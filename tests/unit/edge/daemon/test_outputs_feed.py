"""The daemon hands every message it publishes to every output, and a stalled output costs it nothing.

The daemon runs in a thread of this process on the demo bundle with the sim camera replaying the
demo images once; its outputs are test outputs built on the real :class:`QueuedOutput` (the PLC and
broker outputs are built the same way). What the outputs received is compared with what the
daemon published on its real ZeroMQ socket.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import zmq

from edge.daemon.config import load_config
from edge.daemon.services import Services
from edge.daemon.supervisor import EXIT_OK, InspectionDaemon
from edge.outputs.base import OutboundMessage, QueuedOutput

DEMO = Path(__file__).resolve().parents[4] / "edge" / "demo"
N_IMAGES = len([p for p in (DEMO / "images").rglob("*.png")])


class Recording(QueuedOutput):
    name = "recording"

    def __init__(self) -> None:
        super().__init__(queue_size=64)
        self.received: list[OutboundMessage] = []

    def deliver(self, message: OutboundMessage) -> None:
        self.received.append(message)


class Stalled(QueuedOutput):
    """A peer that never answers: deliver() waits until the test ends it."""

    name = "stalled"

    def __init__(self) -> None:
        super().__init__(queue_size=2)
        self.release = threading.Event()

    def deliver(self, message: OutboundMessage) -> None:
        self.release.wait(60)


def run_daemon(tmp_path: Path, outputs: list[QueuedOutput]) -> tuple[int, list[tuple[str, dict]]]:
    config = load_config(None, {"bundle": str(DEMO / "bundle"), "camera.type": "sim",
                                "camera.source": str(DEMO / "images"), "camera.loop": False,
                                "publish.endpoint": f"ipc://{tmp_path}/verdicts", "publish.wait_subscriber_s": 30,
                                "publish.send_map": True, "publish.heartbeat_s": 0.05})
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"ipc://{tmp_path}/verdicts")
    daemon = InspectionDaemon(config, threading.Event(), services=Services(config, outputs=outputs))
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.run()))
    thread.start()
    published: list[tuple[str, dict]] = []
    try:
        while sub.poll(60_000):
            parts = sub.recv_multipart()
            kind, payload = parts[0].decode().split(".")[0], json.loads(parts[1])
            published.append((kind, payload))
            if kind == "event" and payload["event"] == "stopped":
                break
        thread.join(60)
    finally:
        context.destroy(linger=0)
    assert not thread.is_alive() and codes, "daemon did not stop"
    return codes[0], published


def test_every_published_message_reaches_the_output_in_order_with_its_map(tmp_path: Path) -> None:
    out = Recording()
    code, published = run_daemon(tmp_path, [out])
    assert code == EXIT_OK
    received = [(m.kind, m.payload) for m in out.received]
    assert received == published  # verdicts, heartbeats, events, in the order they went out
    verdicts = [m for m in out.received if m.kind == "verdict"]
    assert len(verdicts) == N_IMAGES and all(m.attachments["map_png"][:4] == b"\x89PNG" for m in verdicts)
    stopped = published[-1][1]
    assert stopped["event"] == "stopped"
    # the stopped event reports the output's accounting as it stood before the event itself was handed over
    assert stopped["detail"]["outputs"]["recording"]["delivered"] == len(published) - 1
    assert out.stats()["delivered"] == len(published) and out.stats()["undelivered"] == {}


def test_a_stalled_output_drops_and_counts_while_every_frame_still_gets_its_verdict(tmp_path: Path) -> None:
    stalled = Stalled()
    code, published = run_daemon(tmp_path, [stalled])
    stalled.release.set()
    assert code == EXIT_OK
    verdicts = [p for kind, p in published if kind == "verdict"]
    assert [v["seq"] for v in verdicts] == list(range(verdicts[0]["seq"], verdicts[0]["seq"] + N_IMAGES))
    stopped = published[-1][1]["detail"]
    assert stopped["balanced"] and stopped["counters"]["verdicts"] == N_IMAGES
    stats = stalled.stats()
    # one message held in deliver(), two queued, everything else dropped at once; what was held or queued at
    # the close deadline counts as shutdown: together exactly what the daemon published, none delivered
    assert stats["delivered"] == 0 and stats["queued"] == 0
    assert stats["undelivered"]["shutdown"] == 3
    assert stats["undelivered"]["shutdown"] + stats["undelivered"]["queue_full"] == len(published)
