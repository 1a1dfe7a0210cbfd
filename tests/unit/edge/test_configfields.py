"""Endpoints another process can reach: a port ZeroMQ would silently change is refused."""

from __future__ import annotations

import pytest

from edge.configfields import check_bind_endpoint


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:5556", "tcp://0.0.0.0:65535", "tcp://127.0.0.1:1",
                                      "tcp://[::1]:5556", "tcp://127.0.0.1:0", "tcp://127.0.0.1:*",
                                      "ipc:///run/edge-inspect/verdicts"])
def test_endpoints_that_bind_where_they_say_pass(endpoint):
    assert check_bind_endpoint(endpoint) == endpoint


@pytest.mark.parametrize(("endpoint", "message"), [
    ("tcp://127.0.0.1:99999", "port '99999' is not a number from 1 to 65535"),  # ZeroMQ binds 34463
    ("tcp://127.0.0.1:-5", "port '-5' is not a number from 1 to 65535"),  # ZeroMQ binds 65531
    ("tcp://127.0.0.1:abc", "port 'abc' is not a number from 1 to 65535"),
    ("tcp://127.0.0.1", "no port given"),
    ("udp://127.0.0.1:5", "must be tcp://HOST:PORT or ipc://PATH"),
])
def test_endpoints_with_a_port_zeromq_would_change_or_refuse_are_refused(endpoint, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_bind_endpoint(endpoint)
