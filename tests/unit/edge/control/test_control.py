"""The control socket answers allowed clients, stays silent to everyone else, and survives bad requests."""

from __future__ import annotations

import json
import shutil
import threading

import pytest
import zmq
from pydantic import ValidationError

from edge.control.curve import make_client
from edge.control.keys import KeyFileError
from edge.control.server import ControlConfig, ControlError, ControlServer, request
from tests.unit.edge.control.curve_keys import CurveKeys, make_keys

COMMANDS = ("status", "trigger", "reload", "pause", "resume")
TIMEOUT_S = 1.0


class RecordingHandlers(dict):
    """One handler per command; each records its arguments and answers which command ran."""

    def __init__(self) -> None:
        super().__init__({name: self._handler(name) for name in COMMANDS})
        self.calls: list[tuple[str, dict]] = []

    def _handler(self, name: str):
        def handle(args: dict) -> dict:
            self.calls.append((name, args))
            return {"command": name, "args": args}

        return handle


@pytest.fixture
def keys(tmp_path) -> CurveKeys:
    return make_keys(tmp_path)


@pytest.fixture
def handlers() -> RecordingHandlers:
    return RecordingHandlers()


@pytest.fixture
def server(keys, handlers):
    config = ControlConfig(enabled=True, endpoint="tcp://127.0.0.1:0", curve=keys.server_config())
    control = ControlServer(config, handlers, threading.Event())
    control.start()
    yield control
    control.close()


def allowed_request(server: ControlServer, keys: CurveKeys, command: str, args: dict | None = None) -> dict:
    return request(server.bound_endpoint, command, args, server_key=keys.server_public,
                   client_key=keys.client_secret, timeout_s=TIMEOUT_S)


@pytest.mark.parametrize("command", COMMANDS)
def test_allowed_client_gets_a_reply_to_each_command(server, keys, handlers, command):
    reply = allowed_request(server, keys, command, {"n": 2})
    assert reply == {"ok": True, "result": {"command": command, "args": {"n": 2}}}
    assert handlers.calls == [(command, {"n": 2})]


def test_a_client_with_an_unknown_key_gets_nothing_and_is_logged(server, keys, handlers, caplog):
    with pytest.raises(ControlError, match="no reply .* key is not allowed"):
        request(server.bound_endpoint, "pause", server_key=keys.server_public, client_key=keys.stranger_secret,
                timeout_s=TIMEOUT_S)
    assert handlers.calls == []
    stranger = keys.stranger_public.read_text().split('public-key = "')[1].split('"')[0]
    refusals = [r.getMessage() for r in caplog.records if r.name == "edge.control.curve" and "refused" in r.getMessage()]
    assert len(refusals) == 1 and "unknown key" in refusals[0] and stranger in refusals[0]


def test_a_key_added_to_the_allow_list_is_answered_after_a_reload_without_a_restart(server, keys, handlers):
    def as_stranger() -> dict:
        return request(server.bound_endpoint, "status", server_key=keys.server_public,
                       client_key=keys.stranger_secret, timeout_s=TIMEOUT_S)

    with pytest.raises(ControlError, match="no reply"):
        as_stranger()
    shutil.copy(keys.stranger_public, keys.allowed_clients)
    assert server.reload_allowed_clients() == 2
    assert as_stranger() == {"ok": True, "result": {"command": "status", "args": {}}}
    assert allowed_request(server, keys, "status")["ok"] is True  # the client allowed before still is


def test_a_damaged_key_file_keeps_the_allow_list_in_use(server, keys):
    (keys.allowed_clients / "damaged.key").write_text("not a key\n")
    with pytest.raises(KeyFileError, match="damaged.key"):
        server.reload_allowed_clients()
    assert allowed_request(server, keys, "status")["ok"] is True


def test_a_client_without_curve_gets_nothing(server, handlers):
    with pytest.raises(ControlError, match="no reply"):
        request(server.bound_endpoint, "pause", timeout_s=TIMEOUT_S)
    assert handlers.calls == []


def test_a_failing_handler_answers_ok_false_and_the_server_keeps_serving(server, keys, handlers):
    def broken(_args: dict) -> dict:
        raise RuntimeError("camera busy")

    server.handlers["trigger"] = broken
    reply = allowed_request(server, keys, "trigger")
    assert reply["ok"] is False and "RuntimeError: camera busy" in reply["error"]
    assert allowed_request(server, keys, "status")["ok"] is True


def test_a_result_json_cannot_hold_answers_ok_false(server, keys):
    server.handlers["status"] = lambda _args: {"when": object()}
    reply = allowed_request(server, keys, "status")
    assert reply["ok"] is False and "not JSON-serialisable" in reply["error"]


def test_an_unknown_command_lists_the_known_ones(server, keys, handlers):
    reply = allowed_request(server, keys, "explode")
    assert reply == {"ok": False, "error": f"unknown command 'explode' (known: {', '.join(COMMANDS)})"}
    assert handlers.calls == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'["status"]', "must be a JSON object"),
        (b'{"args": {}}', "must be a JSON object"),
        (b'{"command": "status", "args": [1]}', "args must be a JSON object"),
    ],
)
def test_a_malformed_request_answers_ok_false(server, keys, handlers, body, message):
    """Raw REQ client (not :func:`request`), to send what a broken client would."""
    context = zmq.Context()
    client = context.socket(zmq.REQ)
    client.setsockopt(zmq.LINGER, 0)
    make_client(client, keys.server_public, keys.client_secret)
    client.connect(server.bound_endpoint)
    try:
        client.send(body)
        assert client.poll(int(TIMEOUT_S * 1000))
        reply = json.loads(client.recv())
    finally:
        client.close()
        context.term()
    assert reply["ok"] is False and message in reply["error"]
    assert handlers.calls == []


def test_serving_ends_when_the_stop_event_is_set(keys, handlers):
    stop = threading.Event()
    config = ControlConfig(enabled=True, endpoint="tcp://127.0.0.1:0", curve=keys.server_config())
    control = ControlServer(config, handlers, stop)
    control.start()
    try:
        thread = control._thread
        stop.set()
        thread.join(5.0)
        assert not thread.is_alive()
    finally:
        control.close()
        control.close()  # twice is harmless


def test_a_taken_address_fails_at_start(server, keys, handlers):
    config = ControlConfig(enabled=True, endpoint=server.bound_endpoint, curve=keys.server_config())
    with pytest.raises(ControlError, match="address already in use"):
        ControlServer(config, handlers, threading.Event()).start()


def test_a_missing_server_key_fails_at_start(keys, handlers, tmp_path):
    curve = keys.server_config().model_copy(update={"secret_key": tmp_path / "absent.key_secret"})
    config = ControlConfig(enabled=True, endpoint="tcp://127.0.0.1:0", curve=curve)
    with pytest.raises(ControlError, match="absent.key_secret: no such key file"):
        ControlServer(config, handlers, threading.Event()).start()


def test_enabled_without_curve_is_a_config_error():
    with pytest.raises(ValidationError, match="could pause the line"):
        ControlConfig(enabled=True)


def test_disabled_without_curve_is_the_default():
    config = ControlConfig()
    assert config.enabled is False and config.curve is None


def test_endpoint_must_be_tcp_or_ipc():
    with pytest.raises(ValidationError, match="tcp://HOST:PORT or ipc://PATH"):
        ControlConfig(endpoint="inproc://control")


def test_request_needs_both_keys_or_neither(keys):
    with pytest.raises(ControlError, match="give both"):
        request("tcp://127.0.0.1:1", "status", server_key=keys.server_public, timeout_s=TIMEOUT_S)
