"""The verdict subscriber counts verdicts, spots lost ones from seq, and gives up after its timeout."""

from __future__ import annotations

import io
import json
import threading

import zmq

from edge.cameras import Frame
from edge.wire.publisher import Publisher
from edge.wire.subscriber import SequenceTracker, format_line, subscribe
from edge.wire.verdict import build_verdict, encode_verdict, parse_verdict


def error_verdict(seq: int, station: str = "line3") -> list[bytes]:
    frame = Frame(image=None, frame_id=seq, source=f"/imgs/{seq}.png", t_capture=0.0, error="x")
    message = build_verdict(station=station, seq=seq, frame=frame, bundle_id="b",
                            counters={"frames": seq, "errors": seq}, error="decode: x")
    return encode_verdict(message)


def test_tracker_reports_a_gap_with_the_number_of_lost_verdicts():
    tracker = SequenceTracker()
    warnings = [tracker.add(parse_verdict(error_verdict(seq)).message) for seq in (1, 2, 5, 6)]
    assert warnings[:2] == [None, None] and warnings[3] is None
    assert "2 -> 5 (2 verdict(s) lost)" in warnings[2]
    assert (tracker.received, tracker.gaps, tracker.missing) == (4, 1, 2)
    assert "received=4 gaps=1 missing=2 OK=0 NG=4" in tracker.summary()


def test_tracker_treats_seq_going_back_as_a_restart_not_a_gap():
    tracker = SequenceTracker()
    for seq in (7, 8, 1):
        tracker.add(parse_verdict(error_verdict(seq)).message)
    assert (tracker.gaps, tracker.restarts) == (0, 1)


def test_human_line_shows_seq_verdict_score_source_and_error():
    line = format_line(parse_verdict(error_verdict(3)))
    assert line.startswith("seq=3 NG score=- thr=-")
    assert "source=/imgs/3.png" in line and "error=decode: x" in line


def test_subscribe_receives_count_verdicts_as_json_and_exits_0():
    publisher = Publisher("tcp://127.0.0.1:0", linger_ms=0)
    out, err = io.StringIO(), io.StringIO()
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(subscribe(publisher.bound_endpoint, count=3, timeout_s=10, as_json=True,
                                               station="line3", out=out, err=err)))
    thread.start()
    try:
        assert publisher.wait_for_subscriber(10)
        for seq in (1, 2, 4):
            publisher.send(error_verdict(seq))
        thread.join(15)
    finally:
        publisher.close()
    assert result == [0]
    assert [json.loads(line)["seq"] for line in out.getvalue().splitlines()] == [1, 2, 4]
    assert "gap: line3 seq 2 -> 4" in err.getvalue()
    assert "received=3 gaps=1 missing=1" in err.getvalue()


def test_subscribe_exits_1_when_nothing_arrives_before_the_timeout():
    context = zmq.Context()
    probe = context.socket(zmq.PUB)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(0)
    context.term()
    err = io.StringIO()
    assert subscribe(f"tcp://127.0.0.1:{port}", count=1, timeout_s=0.4, out=io.StringIO(), err=err) == 1
    assert "timeout" in err.getvalue() and "received=0" in err.getvalue()


def test_a_seq_jump_at_a_restart_marker_is_a_restart_not_lost_verdicts():
    from edge.wire.subscriber import SequenceTracker

    tracker = SequenceTracker()
    base = {"station": "s", "verdict": "OK", "error": None}
    tracker.add({**base, "seq": 41, "restart": False})
    warning = tracker.add({**base, "seq": 1041, "restart": True, "run_id": "ab12"})
    assert warning is not None and warning.startswith("restart:") and tracker.restarts == 1
    assert tracker.gaps == 0 and tracker.missing == 0
    assert tracker.add({**base, "seq": 1043, "restart": False}).startswith("gap:") and tracker.missing == 1
