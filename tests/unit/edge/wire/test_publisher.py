"""The XPUB publisher sees subscribers arrive, delivers to them, and refuses a taken address clearly."""

from __future__ import annotations

import time

import pytest
import zmq

from edge.wire.publisher import Publisher, PublishError


@pytest.fixture
def publisher():
    pub = Publisher("tcp://127.0.0.1:0", linger_ms=0)  # port 0: the OS picks a free port
    yield pub
    pub.close()


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def connect_sub(context: zmq.Context, endpoint: str, topic: bytes = b"verdict.") -> zmq.Socket:
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(endpoint)
    return sub


def test_binds_to_an_os_chosen_port_on_loopback(publisher):
    assert publisher.bound_endpoint.startswith("tcp://127.0.0.1:")
    assert int(publisher.bound_endpoint.rsplit(":", 1)[1]) > 0


def test_wait_for_subscriber_is_false_when_nobody_subscribes(publisher):
    start = time.monotonic()
    assert publisher.wait_for_subscriber(0.3) is False
    assert time.monotonic() - start >= 0.3  # it waited the whole timeout (monotonic clock: a lower bound only)


def test_wait_for_subscriber_is_true_once_a_subscriber_connects_and_it_receives(publisher, context):
    sub = connect_sub(context, publisher.bound_endpoint)
    assert publisher.wait_for_subscriber(5.0) is True
    assert publisher.subscriptions >= 1
    publisher.send([b"verdict.line3", b'{"seq": 1}'])
    assert sub.poll(5000)
    assert sub.recv_multipart() == [b"verdict.line3", b'{"seq": 1}']


def test_subscriber_of_another_topic_does_not_receive(publisher, context):
    other = connect_sub(context, publisher.bound_endpoint, b"verdict.line9")
    assert publisher.wait_for_subscriber(5.0) is True
    publisher.send([b"verdict.line3", b"{}"])
    assert other.poll(300) == 0


def test_address_in_use_is_a_publish_error_naming_the_endpoint(publisher):
    with pytest.raises(PublishError, match="address already in use") as info:
        Publisher(publisher.bound_endpoint)
    assert publisher.bound_endpoint in str(info.value)


def test_send_after_close_is_an_error_and_close_twice_is_fine(publisher):
    publisher.close()
    publisher.close()
    with pytest.raises(PublishError, match="closed"):
        publisher.send([b"verdict.x", b"{}"])
