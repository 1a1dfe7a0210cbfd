"""Receiving the stations' messages: one SUB socket per ``--connect`` endpoint, on the server's event loop.

The view is a subscriber like any PLC bridge: it connects (ZeroMQ reconnects by itself when a
daemon restarts, so the view can start first), subscribes to verdicts, heartbeats, status and
events, and hands each message to the :class:`~edge.view.state.Hub` on the same asyncio loop that
serves the pages, so the state needs no lock. A stream encrypted with CurveZMQ needs the
daemon's public key and this view's secret key, exactly as for ``edge-inspect subscribe``.

The receive queue is short (``RCVHWM``): should the view ever fall behind, ZeroMQ holds the
backlog on the daemon's side (up to its ``publish.sndhwm``) and then drops for this subscriber
only, never slowing inspection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.asyncio

from edge.control.curve import make_client
from edge.control.keys import KeyFileError
from edge.view.state import Hub

log = logging.getLogger(__name__)

TOPICS = (b"verdict.", b"heartbeat.", b"status.", b"event.")
RCVHWM = 100


class FeedError(Exception):
    """An endpoint or key file the view cannot use; one line for the operator."""


@dataclass
class Endpoint:
    """One ``--connect`` endpoint, its optional Curve keys, and what arrived from it."""

    address: str
    server_key: Path | None = None
    client_key: Path | None = None
    messages: int = 0
    stations: set[str] = field(default_factory=set)

    def describe(self) -> dict[str, object]:
        return {"address": self.address, "encrypted": self.server_key is not None, "messages": self.messages,
                "stations": sorted(self.stations)}


class Feed:
    """SUB sockets on every endpoint; :meth:`run` feeds the hub and calls ``on_change(station)``."""

    def __init__(self, endpoints: Sequence[Endpoint], hub: Hub, on_change: Callable[[str], None]) -> None:
        self.endpoints = list(endpoints)
        self.hub = hub
        self.on_change = on_change
        self._context = zmq.asyncio.Context()
        self._sockets: list[zmq.asyncio.Socket] = []
        try:
            for endpoint in self.endpoints:
                self._sockets.append(self._connect(endpoint))
        except FeedError:
            self.close()
            raise

    def _connect(self, endpoint: Endpoint) -> zmq.asyncio.Socket:
        socket = self._context.socket(zmq.SUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, RCVHWM)
        for topic in TOPICS:
            socket.setsockopt(zmq.SUBSCRIBE, topic)
        try:
            if endpoint.server_key is not None and endpoint.client_key is not None:
                make_client(socket, endpoint.server_key, endpoint.client_key)
            socket.connect(endpoint.address)
        except KeyFileError as exc:
            socket.close()
            raise FeedError(str(exc)) from None
        except zmq.ZMQError as exc:
            socket.close()
            raise FeedError(f"cannot connect to {endpoint.address}: {exc.strerror}") from None
        log.info("subscribed to %s%s", endpoint.address, " (CurveZMQ)" if endpoint.server_key else "")
        return socket

    async def run(self) -> None:
        """Receive until cancelled."""
        await asyncio.gather(*(self._receive(s, e) for s, e in zip(self._sockets, self.endpoints, strict=True)))

    async def _receive(self, socket: zmq.asyncio.Socket, endpoint: Endpoint) -> None:
        while True:
            parts = await socket.recv_multipart()
            endpoint.messages += 1
            station = self.hub.handle(parts)
            if station is not None:
                endpoint.stations.add(station)
                self.on_change(station)

    def close(self) -> None:
        for socket in self._sockets:
            socket.close(linger=0)
        self._sockets.clear()
        self._context.term()
