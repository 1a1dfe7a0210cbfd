"""A Curve-encrypted verdict stream reaches allowed subscribers only; key paths follow the config file."""

from __future__ import annotations

import io
import shutil
import textwrap
import threading

import pytest
import zmq

from edge.control.curve import CurveServerConfig, make_client
from edge.control.server import ControlConfig
from edge.daemon.config import load_config
from edge.wire.publisher import Publisher, PublishError
from edge.wire.subscriber import subscribe
from tests.unit.edge.control.curve_keys import CurveKeys, make_keys
from tests.unit.edge.wire.test_subscriber import error_verdict

TIMEOUT_S = 1.0
VERDICT = [b"verdict.line3", b'{"seq": 1}']


@pytest.fixture
def keys(tmp_path) -> CurveKeys:
    return make_keys(tmp_path)


@pytest.fixture
def publisher(keys):
    pub = Publisher("tcp://127.0.0.1:0", linger_ms=0, curve=keys.server_config())
    yield pub
    pub.close()


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def curve_sub(context: zmq.Context, endpoint: str, keys: CurveKeys, client_secret) -> zmq.Socket:
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"verdict.")
    make_client(sub, keys.server_public, client_secret)
    sub.connect(endpoint)
    return sub


def test_allowed_subscriber_receives_verdicts_and_an_unknown_key_none(publisher, context, keys):
    stranger = curve_sub(context, publisher.bound_endpoint, keys, keys.stranger_secret)
    assert publisher.wait_for_subscriber(TIMEOUT_S) is False  # the stranger's subscription never arrives
    allowed = curve_sub(context, publisher.bound_endpoint, keys, keys.client_secret)
    assert publisher.wait_for_subscriber(5.0) is True
    publisher.send(VERDICT)
    assert allowed.poll(5000)
    assert allowed.recv_multipart() == VERDICT
    assert stranger.poll(int(TIMEOUT_S * 1000)) == 0


def test_a_plain_subscriber_gets_nothing_from_a_curve_stream(publisher, context, keys):
    plain = context.socket(zmq.SUB)
    plain.setsockopt(zmq.LINGER, 0)
    plain.setsockopt(zmq.SUBSCRIBE, b"verdict.")
    plain.connect(publisher.bound_endpoint)
    assert publisher.wait_for_subscriber(TIMEOUT_S) is False
    publisher.send(VERDICT)
    assert plain.poll(int(TIMEOUT_S * 1000)) == 0


def test_subscribe_command_receives_over_curve_with_both_keys(publisher, keys):
    out, err = io.StringIO(), io.StringIO()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(subscribe(
        publisher.bound_endpoint, count=1, timeout_s=10, as_json=True, out=out, err=err,
        server_key=keys.server_public, client_key=keys.client_secret)))
    thread.start()
    try:
        assert publisher.wait_for_subscriber(10)
        publisher.send(error_verdict(1))
        thread.join(15)
    finally:
        publisher.close()
    assert result == [0]
    assert '"seq": 1' in out.getvalue()


def test_subscribe_with_an_unusable_key_file_exits_2(keys, tmp_path):
    err = io.StringIO()
    code = subscribe("tcp://127.0.0.1:1", count=1, timeout_s=TIMEOUT_S, out=io.StringIO(), err=err,
                     server_key=keys.server_public, client_key=tmp_path / "absent.key_secret")
    assert code == 2 and "absent.key_secret: no such key file" in err.getvalue()


def test_subscribe_with_only_one_key_exits_2(keys):
    err = io.StringIO()
    code = subscribe("tcp://127.0.0.1:1", count=1, out=io.StringIO(), err=err, server_key=keys.server_public)
    assert code == 2 and "give both" in err.getvalue()


def test_a_plain_publisher_has_no_allow_list_to_reload():
    with Publisher("tcp://127.0.0.1:0", linger_ms=0) as plain:
        assert plain.reload_allowed_clients() is None


def test_publisher_with_a_missing_allow_list_fails_clearly(keys, tmp_path):
    curve = keys.server_config().model_copy(update={"allowed_clients": tmp_path / "absent"})
    with pytest.raises(PublishError, match="allowed-clients folder not found"):
        Publisher("tcp://127.0.0.1:0", linger_ms=0, curve=curve)


def test_reload_admits_a_key_added_to_the_allow_list(publisher, context, keys):
    shutil.copy(keys.stranger_public, keys.allowed_clients)
    assert publisher.reload_allowed_clients() == 2
    newcomer = curve_sub(context, publisher.bound_endpoint, keys, keys.stranger_secret)
    assert publisher.wait_for_subscriber(5.0) is True
    publisher.send(VERDICT)
    assert newcomer.poll(5000)
    assert newcomer.recv_multipart() == VERDICT


def test_relative_key_paths_are_taken_from_the_config_files_folder(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent("""\
        bundle: bundle
        camera: {type: sim, source: images}
        publish:
          curve: {secret_key: keys/line3.key_secret, allowed_clients: keys/allowed}
        """))
    curve = load_config(path).publish.curve
    assert curve == CurveServerConfig(secret_key=tmp_path.resolve() / "keys" / "line3.key_secret",
                                      allowed_clients=tmp_path.resolve() / "keys" / "allowed")


def test_every_curve_and_control_field_has_a_description():
    for model in (CurveServerConfig, ControlConfig):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
