"""What a station's page shows follows the station's messages: counts, yield, history, freshness, camera, bundle.

The messages are the real ones: verdicts built by the wire module from the demo bundle's own
inspections of the demo images, heartbeats, status and events from their builders, encoded as
they go on the wire. Time is driven by the test through the state's injectable clocks.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from edge.cameras.base import Frame
from edge.model.bundle import load_bundle
from edge.model.imageio import encode_jpeg, list_images, read_image
from edge.model.inspector import Inspector
from edge.view.state import STALE_PERIODS, Hub
from edge.wire.messages import (
    EVENT_TOPIC_PREFIX,
    HEARTBEAT_TOPIC_PREFIX,
    STATUS_TOPIC_PREFIX,
    build_event,
    build_heartbeat,
    build_status,
    encode_message,
)
from edge.wire.verdict import build_verdict, encode_verdict

DEMO = Path(__file__).resolve().parents[4] / "edge" / "demo"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def inspected() -> list[tuple[Frame, object]]:
    """Every demo image with the demo bundle's inspection of it (6 good, 9 defective)."""
    inspector = Inspector(load_bundle(DEMO / "bundle"), threads=1)
    out = []
    for index, path in enumerate(list_images(DEMO / "images")):
        image = read_image(path)
        out.append((Frame(image=image, frame_id=index + 1, source=str(path)), inspector.inspect(image)))
    return out


class Station:
    """Publishes like a daemon would, straight into a hub: seq numbering, counters, attachments."""

    def __init__(self, hub: Hub, name: str = "st1", run_id: str = "run-a") -> None:
        self.hub, self.name, self.run_id = hub, name, run_id
        self.seq = 0
        self.counters = {"frames": 0, "verdicts": 0, "errors": 0, "drops": {}}

    def verdict(self, frame: Frame, inspection=None, error: str | None = None, skip_seq: int = 0,
                dropped: int = 0, restart: bool = False) -> dict:
        self.seq += 1 + skip_seq
        self.counters["frames"] += 1 + dropped
        self.counters["verdicts"] += 1
        self.counters["errors"] += error is not None
        if dropped:
            self.counters["drops"]["queue_full"] = self.counters["drops"].get("queue_full", 0) + dropped
        message = build_verdict(station=self.name, seq=self.seq, frame=frame, bundle_id="demo-a",
                                counters=self.counters, inspection=inspection, error=error,
                                has_map=inspection is not None, has_image=True, run_id=self.run_id, restart=restart)
        jpeg = encode_jpeg(frame.image, 128, 80)
        parts = encode_verdict(message, inspection.map_png() if inspection is not None else None, image_jpeg=jpeg)
        assert self.hub.handle(parts) == self.name
        return json.loads(parts[1])

    def heartbeat(self) -> None:
        message = build_heartbeat(station=self.name, run_id=self.run_id, restart=False, last_seq=self.seq,
                                  paused=False, camera_up=True, bundle_id="demo-a",
                                  counters={**self.counters, "dropped": sum(self.counters["drops"].values())})
        assert self.hub.handle(encode_message(HEARTBEAT_TOPIC_PREFIX, message)) == self.name

    def status(self, camera: str, attempt: int, reason: str | None = None, next_retry_s: float | None = None,
               subject: str = "camera") -> None:
        message = build_status(station=self.name, camera=camera, reason=reason, attempt=attempt,
                               next_retry_s=next_retry_s, stats={"frames": 1}, verdicts=self.seq, subject=subject)
        assert self.hub.handle(encode_message(STATUS_TOPIC_PREFIX, message)) == self.name

    def event(self, event: str, detail: dict) -> dict:
        message = build_event(station=self.name, run_id=self.run_id, event=event, detail=detail)
        assert self.hub.handle(encode_message(EVENT_TOPIC_PREFIX, message)) == self.name
        return message


def test_counts_yield_and_history_follow_the_verdicts(inspected):
    hub = Hub(history=4)
    station = Station(hub)
    sent = [station.verdict(frame, inspection) for frame, inspection in inspected]
    station.verdict(inspected[0][0], error="decode: unreadable")
    state = hub.stations["st1"].snapshot()
    ok = sum(m["verdict"] == "OK" for m in sent)
    ng = sum(m["verdict"] == "NG" for m in sent) + 1
    assert 0 < ok < len(sent)  # the demo has both
    assert (state["total"]["ok"], state["total"]["ng"], state["total"]["errors"]) == (ok, ng, 1)
    assert state["total"]["yield"] == pytest.approx(ok / (ok + ng), abs=1e-4)
    assert sum(h["ok"] + h["ng"] for h in state["hours"]) == ok + ng
    assert [p["seq"] for p in state["history"]] == [13, 14, 15, 16]  # the last 4, oldest first
    assert state["latest"]["seq"] == 16 and state["latest"]["error"] == "decode: unreadable"
    last_ng = max(m["seq"] for m in sent if m["verdict"] == "NG")
    assert state["last_ng"]["seq"] == 16 and state["latest"]["has_map"] is False
    regions = next(m for m in sent if m["seq"] == last_ng)["regions"]
    kept = hub.stations["st1"].part(last_ng)  # a part's view number is its seq here (one run from 1)
    assert kept is not None and kept.message["regions"] == regions and kept.map_png.startswith(b"\x89PNG")


def test_an_ng_that_left_the_history_stays_fetchable_as_the_last_ng(inspected):
    hub = Hub(history=2)
    station = Station(hub)
    bad = next((f, i) for f, i in inspected if i.verdict == "NG")
    good = [(f, i) for f, i in inspected if i.verdict == "OK"]
    station.verdict(*bad)
    for frame, inspection in good[:3]:
        station.verdict(frame, inspection)
    state = hub.stations["st1"]
    assert [p.part for p in state.history] == [3, 4] and state.part(1) is state.last_ng
    assert state.part(2) is None  # an OK part that left the history is gone
    assert state.last_ng.frame_jpeg is not None and state.last_ng.message["regions"]


def test_drops_and_lost_verdicts_are_counted_across_a_daemon_restart(inspected):
    hub = Hub()
    frame, inspection = inspected[0]
    first = Station(hub, run_id="run-a")
    first.verdict(frame, inspection, dropped=3)
    first.verdict(frame, inspection, skip_seq=2)  # two verdicts never reached the view
    second = Station(hub, run_id="run-b")  # restarted without a state directory: seq from 1, counters from 0
    second.verdict(frame, inspection, dropped=1, restart=True)
    second.verdict(frame, inspection, dropped=1)
    total = hub.stations["st1"].snapshot()["total"]
    assert total["drops"] == 3 + 2 and total["missed"] == 2 and total["parts"] == 4


def test_freshness_tells_no_parts_from_a_dead_station(inspected):
    mono, wall = Clock(), Clock()
    hub = Hub(heartbeat_s=1.0, clock=mono, wall=wall)
    station = Station(hub)
    state = hub.station("st1")
    assert state.freshness() == "waiting" and not state.tick()
    station.verdict(*inspected[0])
    assert state.freshness() == "live" and state.tick()
    for _ in range(3):  # the line stands still: heartbeats every 0.5 s and no verdict
        mono.now += 0.5
        station.heartbeat()
    assert state.heartbeat_period() == pytest.approx(0.5)
    assert state.freshness() == "idle" and state.tick()
    mono.now += STALE_PERIODS * 0.5 - 0.01
    assert state.freshness() == "idle" and not state.tick()
    mono.now += 0.02  # silent past 1.5 periods: the daemon is gone
    assert state.freshness() == "stale" and state.tick() and not state.tick()
    station.heartbeat()
    assert state.freshness() == "idle"
    station.event("stopped", {"counters": {"frames": 1, "verdicts": 1, "errors": 0}, "last_seq": 1,
                              "balanced": True, "failure": None, "latency_ms": {}})
    mono.now += 60
    assert state.freshness() == "stopped"  # a clean stop is not a dead station


def test_camera_states_and_the_bundle_come_from_status_and_events(inspected):
    wall = Clock()
    hub = Hub(wall=wall)
    station = Station(hub)
    started = station.event("started", {"bundle_id": "demo-a", "previous_stop_clean": True})
    state = hub.station("st1")
    assert (state.bundle.id, state.bundle.loaded_at, state.bundle.how) == ("demo-a", started["t"], "started")
    station.status("down", 0, reason="device lost", next_retry_s=1.0)
    assert (state.camera.state, state.camera.reason) == ("down", "device lost")
    station.status("down", 0, reason="output plc_modbus disconnected: timeout", subject="output")
    assert (state.camera.state, state.camera.reason) == ("down", "device lost")  # the PLC's news is not the camera's
    station.status("down", 2, reason="device lost", next_retry_s=4.0)
    assert (state.camera.state, state.camera.attempt, state.camera.next_retry_s) == ("reconnecting", 2, 4.0)
    station.status("up", 0)
    assert state.camera.state == "up"
    reload = station.event("reload", {"bundle_id": "demo-b", "previous_bundle_id": "demo-a", "source": "SIGHUP",
                                      "selftest": None, "needs_restart": []})
    assert (state.bundle.id, state.bundle.previous, state.bundle.loaded_at) == ("demo-b", "demo-a", reload["t"])
    station.event("reload_refused", {"reason": "bundle: model.onnx: sha256 mismatch", "source": "SIGHUP",
                                     "bundle_id": "demo-b"})
    snapshot = state.snapshot()
    assert snapshot["bundle"]["id"] == "demo-b" and snapshot["last_event"]["event"] == "reload_refused"


def test_an_update_is_packed_once_per_version_with_the_latest_images(inspected):
    hub = Hub()
    station = Station(hub)
    station.verdict(*inspected[5])
    state = hub.stations["st1"]
    packed = state.packed()
    assert state.packed() is packed  # shared by every client until the state changes
    chunks, offset = [], 0
    for _ in range(3):
        (length,) = struct.unpack_from(">I", packed, offset)
        chunks.append(packed[offset + 4: offset + 4 + length])
        offset += 4 + length
    assert offset == len(packed)
    header = json.loads(chunks[0])
    assert header["type"] == "station" and header["state"]["latest"]["seq"] == 1
    assert chunks[1] == state.latest.frame_jpeg and chunks[2] == state.latest.map_png
    station.heartbeat()
    assert state.packed() is not packed


def test_unreadable_messages_are_counted_and_ignored():
    hub = Hub()
    assert hub.handle([b"verdict.st1", b"{not json"]) is None
    assert hub.handle([b"heartbeat.st1", b'{"schema": 1}']) is None
    assert hub.handle([b"other.st1", b"{}"]) is None
    assert (hub.invalid, hub.received, hub.stations) == (3, 3, {})
