"""What the subscriber says about each message: mid-stream joins, restart markers, the stopped event, --save."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np

from edge.cameras import Frame
from edge.wire.messages import build_event, encode_message
from edge.wire.subscriber import SequenceTracker, Session
from edge.wire.verdict import build_verdict, encode_verdict


def verdict(seq: int, verdicts: int, restart: bool = False, station: str = "line3", map_png: bytes | None = None):
    frame = Frame(image=None, frame_id=seq, source=f"/imgs/{seq}.png", t_capture=0.0, error="x")
    message = build_verdict(station=station, seq=seq, frame=frame, bundle_id="b", restart=restart,
                            counters={"frames": verdicts, "verdicts": verdicts, "errors": verdicts},
                            error="decode: x")
    message["has_map"] = map_png is not None  # as for an inspected frame with publish.send_map on
    return encode_verdict(message, map_png)


def session(**kwargs) -> tuple[Session, io.StringIO]:
    err = io.StringIO()
    return Session(out=io.StringIO(), err=err, **kwargs), err


def test_a_first_verdict_that_is_not_the_runs_first_says_it_joined_and_how_many_it_missed():
    s, err = session()
    s.handle(verdict(1041, verdicts=41))
    s.handle(verdict(1042, verdicts=42))
    assert err.getvalue().splitlines() == [
        ("joined mid-stream: line3 at seq 1041; missed the 40 verdict(s) this run published before this subscriber "
         "was connected")]
    assert s.tracker.missed_before_join == 40 and s.tracker.gaps == 0
    assert "missed_before_join=40" in s.tracker.summary()


def test_a_run_seen_from_its_first_verdict_is_no_join_and_its_restart_marker_is_counted():
    s, err = session()
    for seq, count, restart in ((1001, 1, True), (1002, 2, False), (2001, 1, True)):
        s.handle(verdict(seq, count, restart))
    assert s.tracker.restarts == 2 and s.tracker.missed_before_join == 0 and s.tracker.gaps == 0
    assert err.getvalue().startswith("restart: line3 seq 1002 -> 2001")


def test_the_stopped_event_ends_an_until_stopped_session_and_other_events_do_not():
    s, err = session(until_stopped=True)
    started = build_event(station="line3", run_id="r", event="started",
                          detail={"bundle_id": "b", "previous_stop_clean": None})
    s.handle(encode_message("event.", started))
    assert not s.stopped
    stopped = build_event(station="line3", run_id="r", event="stopped", detail={
        "counters": {"frames": 1, "verdicts": 1, "errors": 0, "dropped": 0, "drops": {}}, "last_seq": 7,
        "balanced": True, "failure": None, "latency_ms": {}, "camera": {"reconnects": 0, "stats": {}}})
    s.handle(encode_message("event.", stopped))
    assert s.stopped and "stopped: line3 last_seq=7" in err.getvalue()


def test_save_writes_each_verdicts_json_and_the_images_sent_with_it(tmp_path):
    _, png = cv2.imencode(".png", np.zeros((8, 8), np.uint8))
    s, _ = session(save_dir=tmp_path / "saved")
    s.handle(verdict(1, 1, restart=True, map_png=png.tobytes()))
    s.handle(verdict(2, 2))
    _, jpeg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    with_image = verdict(3, 3)
    message = json.loads(with_image[1])
    message["has_image"] = True
    s.handle([with_image[0], json.dumps(message).encode(), jpeg.tobytes()])
    names = sorted(p.name for p in (tmp_path / "saved").iterdir())
    assert names == ["line3-0000000001-map.png", "line3-0000000001.json", "line3-0000000002.json",
                     "line3-0000000003-image.jpg", "line3-0000000003.json"]
    assert json.loads((tmp_path / "saved" / "line3-0000000002.json").read_text())["seq"] == 2
    assert cv2.imread(str(tmp_path / "saved" / "line3-0000000001-map.png")).shape[:2] == (8, 8)


def test_malformed_messages_are_counted_not_raised():
    s, err = session(until_stopped=True)
    for parts in ([b"verdict.x"], [b"verdict.x", b"{"], [b"event.x", b"\xff"], [b"event.x"], [b"junk", b"{}"]):
        s.handle(parts)
    assert s.tracker.invalid == 5 and err.getvalue().count("invalid message") == 5
    assert isinstance(s.tracker, SequenceTracker) and s.tracker.received == 0
