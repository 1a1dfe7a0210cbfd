"""Publishing verdicts on a ZeroMQ XPUB socket.

An XPUB socket is a PUB socket that also hands us the subscriptions it receives. That lets the
daemon wait for the PLC/MES bridge to subscribe before it sends the first verdict (ZeroMQ's "slow
joiner": anything published before a subscription has arrived is silently lost), and log when
subscribers come and go. Sending never blocks the line: a subscriber that falls ``sndhwm``
messages behind loses verdicts (it sees a ``seq`` gap) rather than stalling inspection.
"""

from __future__ import annotations

import logging
import threading
import time

import zmq
from zmq.auth.thread import ThreadAuthenticator

from edge.control.curve import BindError, CurveServerConfig, bind_server, reload_allowed_clients

log = logging.getLogger(__name__)

POLL_SLICE_S = 0.2
# ZeroMQ subscribers retry a refused connect every 100 ms (ZMQ_RECONNECT_IVL's default): one that was
# waiting before the daemon bound needs up to that long, plus its handshake, to be connected. The
# daemon gives them this long after the bind before its first verdict (see Publisher.settle).
SUBSCRIBER_SETTLE_S = 0.5


class PublishError(Exception):
    """The publisher cannot bind or send (address in use, bad endpoint, socket closed)."""


class Publisher:
    """Binds an XPUB socket on ``endpoint``; ``send`` multipart verdicts; ``close`` with linger."""

    def __init__(
        self, endpoint: str, sndhwm: int = 1000, linger_ms: int = 1000, *, curve: CurveServerConfig | None = None
    ) -> None:
        self.endpoint = endpoint
        self.linger_ms = linger_ms
        self.subscriptions = 0
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.XPUB)
        self._socket.setsockopt(zmq.SNDHWM, sndhwm)
        self._socket.setsockopt(zmq.LINGER, linger_ms)
        self._socket.setsockopt(zmq.XPUB_VERBOSE, 1)  # report every subscribe, not only the first per topic
        self._socket.setsockopt(zmq.XPUB_VERBOSER, 1)  # ... and every unsubscribe, so the count stays right
        self._socket.setsockopt(zmq.TCP_KEEPALIVE, 1)  # notice a bridge whose cable was pulled
        self._curve = curve  # with it, only subscribers whose key is in curve.allowed_clients get verdicts
        self._authenticator: ThreadAuthenticator | None = None
        try:
            self._authenticator = bind_server(self._socket, self._context, endpoint, curve, "verdict socket")
        except BindError as exc:
            self._release(0)
            raise PublishError(str(exc)) from None
        self.bound_endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.bound_at = time.monotonic()
        self._closed = False
        log.info("publishing verdicts on %s", self.bound_endpoint)

    def reload_allowed_clients(self) -> int | None:
        """Re-read the Curve allow-list (the daemon's reload); None without Curve. KeyFileError keeps the old list.

        Touches only the authenticator, never the socket, so any thread may call it.
        """
        if self._authenticator is None or self._curve is None:
            return None
        return reload_allowed_clients(self._authenticator, self._curve)

    def wait_for_subscriber(self, timeout_s: float, stop: threading.Event | None = None) -> bool:
        """Wait up to ``timeout_s`` for a subscription; True at once if one was already seen."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._drain()
            if self.subscriptions > 0:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop is not None and stop.is_set()):
                return False
            self._socket.poll(int(min(remaining, POLL_SLICE_S) * 1000), zmq.POLLIN)

    def settle(self, seconds: float = SUBSCRIBER_SETTLE_S, stop: threading.Event | None = None) -> None:
        """Until ``seconds`` after the bind, take in subscriptions: subscribers already retrying get connected.

        Costs nothing when the bundle took longer than that to load (the usual case); without it a
        subscriber started before the daemon could miss seq 1 of a small, fast-loading bundle.
        """
        deadline = self.bound_at + seconds
        while (remaining := deadline - time.monotonic()) > 0 and not (stop is not None and stop.is_set()):
            self._socket.poll(int(min(remaining, POLL_SLICE_S) * 1000), zmq.POLLIN)
            self._drain()

    def send(self, parts: list[bytes]) -> None:
        """Queue one multipart message for every current subscriber; never blocks."""
        if self._closed:
            raise PublishError("publisher is closed")
        self._drain()
        try:
            self._socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            # XPUB drops for slow subscribers instead of raising; this is only a belt for odd transports.
            log.warning("verdict dropped: send queue full")

    def _drain(self) -> None:
        """Read pending (un)subscription messages so they neither pile up nor go unnoticed."""
        while True:
            try:
                event = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not event:
                continue
            topic = event[1:].decode("utf-8", "replace")
            if event[0] == 1:
                self.subscriptions += 1
                log.info("subscriber joined (topic %r)", topic)
            elif event[0] == 0:
                self.subscriptions = max(0, self.subscriptions - 1)
                log.info("subscriber left (topic %r)", topic)

    def close(self, linger_ms: int | None = None) -> None:
        """Close the socket, flushing queued verdicts for up to ``linger_ms``; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._release(self.linger_ms if linger_ms is None else linger_ms)

    def _release(self, linger_ms: int) -> None:
        self._socket.close(linger=linger_ms)
        if self._authenticator is not None:
            self._authenticator.stop()  # before term(): its ZAP socket lives in this context
        self._context.term()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
