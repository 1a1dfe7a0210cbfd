"""The view's web server: the pages, part images, and one WebSocket per page, latest-only per client.

A page opens one WebSocket (``/ws?station=NAME``, or ``/ws`` for the overview) and receives
binary updates (:meth:`edge.view.state.StationState.packed`) plus a JSON ``hello`` naming the
endpoints and stations. Each client has a set of stations with an update waiting and one sender
task: a new verdict only marks the station pending, and the sender sends the state as it is when
the socket is free again, so a slow client skips updates (counted) instead of queueing them, and
the memory per client is one flag per station. An update is built once per state version and
shared by every client. A client whose socket takes longer than ``SEND_TIMEOUT_S`` for one update
is closed. Older parts' images are plain HTTP (``/img/...``), cacheable by the browser.

Access: with a token (required by the command when listening beyond loopback) every request needs
it, as ``?token=`` (then remembered in an HttpOnly, SameSite=Strict cookie), the cookie, or an
``Authorization: Bearer`` header; the access log is off so the token never lands in a log. The
page is read-only: what a browser sends on the WebSocket is read and ignored, and no route
reaches the daemon. WebSocket requests from another origin are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from edge.view.source import Endpoint, Feed
from edge.view.state import Hub

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
TOKEN_COOKIE = "edge_view_token"
TICK_S = 0.1
OVERVIEW_MIN_INTERVAL_S = 0.2
SEND_TIMEOUT_S = 30.0  # a page that takes no update for this long (a frozen tab) is closed
WS_HEARTBEAT_S = 10.0
HELLO = ""  # the pending key of the hello message (no station has an empty name)
IMAGE_KINDS = {"frame.jpg": ("frame_jpeg", "image/jpeg"), "map.png": ("map_png", "image/png")}


class ViewError(Exception):
    """The server cannot start (address in use, bad endpoint or key); one line for the operator."""


class Client:
    """One page's WebSocket: which stations it watches, which have an update waiting, what it was sent."""

    def __init__(self, ws: web.WebSocketResponse, station: str | None, peer: str) -> None:
        self.ws = ws
        self.station = station
        self.peer = peer
        self.min_interval = OVERVIEW_MIN_INTERVAL_S if station is None else 0.0
        self.pending: set[str] = set()
        self.wake = asyncio.Event()
        self.sent = 0
        self.skipped = 0
        self.since = time.time()

    def notify(self, station: str) -> None:
        """Mark ``station`` (or HELLO) as having an update; an update already waiting is replaced."""
        if station != HELLO and self.station is not None and station != self.station:
            return
        if station in self.pending:
            self.skipped += 1
        self.pending.add(station)
        self.wake.set()

    async def send_loop(self, build: Callable[[str], str | bytes | None]) -> None:
        """Send what is pending whenever the socket is free, until it closes or is too slow."""
        while not self.ws.closed:
            await self.wake.wait()
            self.wake.clear()
            while self.pending and not self.ws.closed:
                key = HELLO if HELLO in self.pending else next(iter(self.pending))
                self.pending.discard(key)
                data = build(key)
                if data is None:
                    continue
                send = self.ws.send_str(data) if isinstance(data, str) else self.ws.send_bytes(data)
                try:
                    await asyncio.wait_for(send, SEND_TIMEOUT_S)
                except (TimeoutError, ConnectionError):
                    log.info("closing the view of %s: it did not take an update within %.0f s", self.peer,
                             SEND_TIMEOUT_S)
                    await self.ws.close()
                    return
                self.sent += 1
            if self.min_interval:
                await asyncio.sleep(self.min_interval)

    def describe(self) -> dict[str, Any]:
        return {"station": self.station, "peer": self.peer, "sent": self.sent, "skipped": self.skipped,
                "since": self.since}


class ViewServer:
    """The aiohttp application around a :class:`Hub`: routes, clients, the freshness ticker."""

    def __init__(self, hub: Hub, endpoints: Sequence[Endpoint], token: str | None = None) -> None:
        self.hub = hub
        self.endpoints = list(endpoints)
        self.token = token
        self.clients: set[Client] = set()
        self.view_id = secrets.token_hex(4)  # in image URLs: a restarted view numbers its parts anew
        self._known: set[str] = set()
        self.app = web.Application(middlewares=[self._auth])
        self.app.add_routes([
            web.get("/", self._page("overview.html")),
            web.get("/station/{station}", self._page("station.html")),
            web.get("/ws", self._websocket),
            web.get("/img/{station}/{part:\\d+}/{kind}", self._image),
            web.get("/api/state", self._state),
            web.static("/static", STATIC),
        ])
        self.app.on_shutdown.append(self._close_clients)

    # ----------------------------------------------------------------- updates

    def on_change(self, station: str) -> None:
        """A message changed ``station``: every client watching it has an update waiting."""
        if station not in self._known:
            self._known.add(station)
            for client in self.clients:
                client.notify(HELLO)
        for client in self.clients:
            client.notify(station)

    async def ticker(self) -> None:
        """Freshness changes with time alone (a silent station turns stale): re-check it every tick."""
        while True:
            await asyncio.sleep(TICK_S)
            for station in self.hub.tick():
                self.on_change(station)

    def _build(self, key: str) -> str | bytes | None:
        if key == HELLO:
            return json.dumps(self.hello())
        state = self.hub.stations.get(key)
        return state.packed() if state is not None else None

    def hello(self) -> dict[str, Any]:
        return {"type": "hello", "view_id": self.view_id, "endpoints": [e.describe() for e in self.endpoints],
                "stations": sorted(self.hub.stations)}

    # ----------------------------------------------------------------- routes

    @web.middleware
    async def _auth(self, request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if self.token is None:
            return await handler(request)
        bearer = request.headers.get("Authorization", "")
        given = (request.query.get("token") or request.cookies.get(TOKEN_COOKIE)
                 or (bearer[7:] if bearer.startswith("Bearer ") else ""))
        if not hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8")):
            raise web.HTTPUnauthorized(text="edge-inspect view: this view needs its token: open "
                                            "http://HOST:PORT/?token=TOKEN\n")
        response = await handler(request)
        if "token" in request.query and not isinstance(response, web.WebSocketResponse):
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="Strict")
        return response

    def _page(self, name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def page(request: web.Request) -> web.StreamResponse:
            station = request.match_info.get("station")
            if station is not None and not station.replace("-", "").replace("_", "").isalnum():
                raise web.HTTPNotFound(text="no such station\n")
            return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})
        return page

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            raise web.HTTPForbidden(text="WebSocket from another origin\n")
        ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_S, max_msg_size=4096)
        await ws.prepare(request)
        client = Client(ws, request.query.get("station") or None, request.remote or "?")
        self.clients.add(client)
        log.info("page opened by %s (%s); %d open", client.peer, client.station or "overview", len(self.clients))
        client.notify(HELLO)
        for station in self.hub.stations:
            client.notify(station)
        sender = asyncio.ensure_future(client.send_loop(self._build))
        try:
            async for message in ws:  # read-only: whatever the page sends is ignored
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            self.clients.discard(client)
            log.info("page closed by %s (sent %d, skipped %d); %d open", client.peer, client.sent, client.skipped,
                     len(self.clients))
        return ws

    async def _image(self, request: web.Request) -> web.StreamResponse:
        state = self.hub.stations.get(request.match_info["station"])
        kind = IMAGE_KINDS.get(request.match_info["kind"])
        part = state.part(int(request.match_info["part"])) if state is not None else None
        data = getattr(part, kind[0]) if part is not None and kind is not None else None
        if data is None or kind is None:
            raise web.HTTPNotFound(text="no such image (parts leave the history as new ones arrive)\n")
        return web.Response(body=data, content_type=kind[1],
                            headers={"Cache-Control": "private, max-age=86400, immutable"})

    async def _state(self, _request: web.Request) -> web.StreamResponse:
        """Everything the pages show, as JSON, plus the clients: for scripts and health checks."""
        return web.json_response({
            **self.hello(), "pid": os.getpid(),
            "messages": {"received": self.hub.received, "invalid": self.hub.invalid},
            "clients": [c.describe() for c in self.clients],
            "states": {name: s.snapshot() for name, s in self.hub.stations.items()},
        })

    async def _close_clients(self, _app: web.Application) -> None:
        for client in list(self.clients):
            await client.ws.close(code=1001, message=b"view stopping")


async def serve(endpoints: Sequence[Endpoint], host: str, port: int, *, token: str | None, history: int,
                heartbeat_s: float, stop: asyncio.Event, ready: Callable[[str], None]) -> None:
    """Subscribe, serve until ``stop`` is set, close everything; ViewError if it cannot start."""
    from edge.view.source import FeedError

    hub = Hub(history=history, heartbeat_s=heartbeat_s)
    server = ViewServer(hub, endpoints, token)
    try:
        feed = Feed(endpoints, hub, server.on_change)
    except FeedError as exc:
        raise ViewError(str(exc)) from None
    runner = web.AppRunner(server.app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        feed.close()
        raise ViewError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = runner.addresses[0]
    shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
    ready(f"http://{shown}:{bound[1]}/")
    tasks = [asyncio.ensure_future(feed.run()), asyncio.ensure_future(server.ticker())]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
        feed.close()
