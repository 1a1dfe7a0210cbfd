"""Fuzzed control messages and subscriber input, through the real sockets: refused or answered, never a crash.

The control socket is reachable by anyone on the line network who holds an allowed key, and a
verdict subscriber reads whatever is published on its endpoint. Random frames, oversized ones
and wrong JSON go to a real CURVE-authenticated ``ControlServer`` (each answered with
``ok: false`` and its reason, or dropped when not shaped like a request) and the server must still
answer ``status`` afterwards; random multipart messages go to the subscriber's message handling
and through a real PUB socket into ``subscribe``, which must count them as invalid and still
report the valid verdict that follows.
"""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.cameras import Frame
from edge.control.curve import make_client
from edge.control.server import MAX_REQUEST_BYTES, ControlConfig, ControlServer, request
from edge.wire.publisher import Publisher
from edge.wire.subscriber import Session, subscribe
from edge.wire.verdict import build_verdict, encode_verdict
from tests.fuzz.conftest import examples
from tests.unit.edge.control.curve_keys import make_keys

SETTINGS = {"deadline": None, "database": None, "suppress_health_check": [HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow]}
JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
                       lambda inner: st.one_of(st.lists(inner, max_size=4),
                                               st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                       max_leaves=12)
REQUESTS = st.one_of(
    st.binary(max_size=256),
    JSONISH.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"command": st.one_of(st.sampled_from(["status", "pause", "explode", ""]), JSONISH)},
                          optional={"args": JSONISH}).map(lambda v: json.dumps(v).encode()),
    st.integers(MAX_REQUEST_BYTES - 8, MAX_REQUEST_BYTES + 4096).map(lambda n: b"x" * n),
)


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory):
    keys = make_keys(tmp_path_factory.mktemp("keys"))
    calls: list[str] = []
    handlers = {"status": lambda _a: (calls.append("status"), {"up": True})[1],
                "pause": lambda a: {"paused": True, "echo": a}}
    server = ControlServer(ControlConfig(enabled=True, endpoint="tcp://127.0.0.1:0", curve=keys.server_config()),
                           handlers, threading.Event())
    server.start()
    context = zmq.Context()  # one for every client of the module: a context per example made libzmq abort in term()
    yield server, keys, context
    context.destroy(linger=0)
    server.close()


@pytest.mark.fuzz_target("control messages")
@settings(max_examples=examples(300), **SETTINGS)
@given(body=REQUESTS)
def test_any_request_body_gets_a_json_reply_that_says_ok_or_why_not(control, recorder, body):
    server = control[0]
    try:
        reply = server.handle(body)
        json.dumps(reply)
    except Exception:
        recorder.crashed()
        raise
    assert isinstance(reply["ok"], bool)
    if reply["ok"]:
        recorder.accepted()
    else:
        assert "\n" not in reply["error"]
        recorder.refused(reply["error"])


@pytest.mark.fuzz_target("control messages")
@settings(max_examples=examples(40), **SETTINGS)
@given(frames=st.lists(st.one_of(st.binary(max_size=64), REQUESTS), min_size=1, max_size=4))
def test_random_frames_on_the_real_socket_leave_the_server_answering(control, recorder, frames):
    server, keys, context = control
    dealer = context.socket(zmq.DEALER)  # sends any multipart, unlike REQ
    dealer.setsockopt(zmq.LINGER, 0)
    make_client(dealer, keys.server_public, keys.client_secret)
    dealer.connect(server.bound_endpoint)
    try:
        dealer.send_multipart(frames)
        if len(frames) == 2 and frames[0] == b"" and dealer.poll(5000):  # REQ-shaped: a reply comes
            reply = json.loads(dealer.recv_multipart()[-1])
            if reply["ok"]:
                recorder.accepted()
            else:
                recorder.refused(reply["error"])
        else:
            recorder.refused(f"{len(frames)} frame(s) not shaped like a request: dropped")
    finally:
        dealer.close(0)
    answer = request(server.bound_endpoint, "status", server_key=keys.server_public, client_key=keys.client_secret,
                     timeout_s=30)
    assert answer == {"ok": True, "result": {"up": True}}


LAST_SEQ = 10**7  # above any seq the junk carries


def verdict_parts(seq: int) -> list[bytes]:
    frame = Frame(image=None, frame_id=seq, source="f", t_capture=0.0, error="x")
    return encode_verdict(build_verdict(station="fz", seq=seq, frame=frame, bundle_id="b", error="decode: x",
                                        counters={"frames": seq, "verdicts": seq}, restart=seq == 1))


@st.composite
def messages(draw: st.DrawFn) -> list[bytes]:
    kind = draw(st.sampled_from(["random", "mutated", "wrong json", "event"]))
    if kind == "random":
        return draw(st.lists(st.binary(max_size=64), min_size=0, max_size=4))
    topic = draw(st.sampled_from([b"verdict.fz", b"event.fz", b"verdict.", b"status.fz", b"verdict.other"]))
    if kind == "wrong json":
        return [topic, json.dumps(draw(JSONISH)).encode(), *draw(st.lists(st.binary(max_size=8), max_size=2))]
    if kind == "event":
        return [b"event.fz", json.dumps({"event": draw(st.text(max_size=8)), "station": "fz",
                                         "detail": draw(JSONISH)}).encode()]
    message: dict[str, Any] = json.loads(verdict_parts(draw(st.integers(1, 10**6)))[1])
    key = draw(st.sampled_from(sorted(message)))
    message[key] = draw(JSONISH)
    return [topic, json.dumps(message).encode()]


@pytest.mark.fuzz_target("subscriber input")
@settings(max_examples=examples(300), **SETTINGS)
@given(parts=messages())
def test_any_message_is_shown_or_counted_as_invalid(recorder, parts):
    err = io.StringIO()
    session = Session(out=io.StringIO(), err=err, until_stopped=True)
    try:
        session.handle(parts)
    except Exception:
        recorder.crashed()
        raise
    lines = err.getvalue().splitlines()
    if session.tracker.invalid:
        assert len(lines) == 1 and lines[0].startswith("invalid message:")
        recorder.refused(lines[0])
    else:
        recorder.accepted()


@pytest.mark.fuzz_target("subscriber input")
@settings(max_examples=examples(15), **SETTINGS)
@given(junk=st.lists(messages(), min_size=1, max_size=8))
def test_subscribe_on_a_real_socket_counts_junk_and_still_reports_the_verdict_after_it(recorder, junk):
    publisher = Publisher("tcp://127.0.0.1:0", linger_ms=0)
    out, err = io.StringIO(), io.StringIO()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(
        subscribe(publisher.bound_endpoint, until_stopped=True, timeout_s=60, as_json=True, station="fz", out=out,
                  err=err)))
    thread.start()
    try:
        assert publisher.wait_for_subscriber(30)
        for parts in junk:
            if parts and all(isinstance(p, bytes) for p in parts):
                publisher.send(parts)
        publisher.send(verdict_parts(LAST_SEQ))
        publisher.send([b"event.fz", json.dumps({"event": "stopped", "station": "fz", "detail": {}}).encode()])
        thread.join(60)
    finally:
        publisher.close()
    assert result == [0], err.getvalue()
    assert json.loads(out.getvalue().splitlines()[-1])["seq"] == LAST_SEQ
    for line in err.getvalue().splitlines():
        if line.startswith("invalid message:"):
            recorder.refused(line)
    recorder.accepted()
