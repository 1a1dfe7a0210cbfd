"""The daemon's control socket: ``status``, ``trigger``, ``reload``, ``pause``, ``resume`` over ZeroMQ.

A technician or the MES needs to ask a running line what it is doing and to pause it, without
ssh and without restarting the service. Whoever can reach this socket can stop a production
line, so it is off by default and, when on, only speaks CurveZMQ with an allow-list of client
keys (:mod:`edge.control.curve`): a config that enables it without keys is refused. The wire protocol is
one JSON frame each way, ``{"command": NAME, "args": {...}}`` and ``{"ok": true, "result": {...}}``
or ``{"ok": false, "error": "..."}``, so any ZeroMQ REQ client in any language can use it.
Commands are whatever handlers the daemon passes in; they run in the control thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import zmq
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from zmq.auth.thread import ThreadAuthenticator

from edge.configfields import check_bind_endpoint
from edge.control.curve import BindError, CurveServerConfig, bind_server, make_client, reload_allowed_clients
from edge.control.keys import KeyFileError

log = logging.getLogger(__name__)

POLL_MS = 200
JOIN_TIMEOUT_S = 2.0
MAX_REQUEST_BYTES = 64 * 1024  # a control request is a command name and a few arguments

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlError(Exception):
    """The control socket cannot be opened, or a request got no (valid) reply."""


class ControlConfig(BaseModel):
    """``control:`` an authenticated socket to query and steer the running daemon (off by default)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Open the control socket. Requires curve (client keys).")
    endpoint: str = Field(
        "tcp://127.0.0.1:5557",
        description="ZeroMQ endpoint to bind, e.g. tcp://0.0.0.0:5557 or ipc:///run/edge-inspect/control.",
    )
    curve: CurveServerConfig | None = Field(
        None, description="Server key and allowed client keys; required when enabled."
    )

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        """Accept only transports another process can reach."""
        return check_bind_endpoint(value)

    @model_validator(mode="after")
    def _require_curve(self) -> ControlConfig:
        """An unauthenticated socket that can pause a production line must not exist."""
        if self.enabled and self.curve is None:
            raise ValueError(
                "enabled needs curve (secret_key, allowed_clients): without keys anyone who can reach the port "
                "could pause the line; make keys with `edge-inspect keygen`"
            )
        return self


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


class ControlServer:
    """Serves control requests on a CURVE-authenticated ROUTER socket in a daemon thread."""

    def __init__(self, config: ControlConfig, handlers: Mapping[str, Handler], stop: threading.Event) -> None:
        self.config = config
        self.handlers = dict(handlers)
        self.stop = stop
        self.bound_endpoint: str | None = None
        self._closing = threading.Event()
        self._context: zmq.Context | None = None
        self._socket: zmq.Socket | None = None
        self._authenticator: ThreadAuthenticator | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and start serving; ControlError (keys, address in use, bad endpoint) before any thread runs."""
        if self.config.curve is None:
            raise ControlError("control socket needs curve keys (refusing to open it unauthenticated)")
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        try:
            self._authenticator = bind_server(self._socket, self._context, self.config.endpoint, self.config.curve,
                                              "control socket")
        except BindError as exc:
            self._release()
            raise ControlError(str(exc)) from None
        self.bound_endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()
        log.info("control socket on %s (commands: %s)", self.bound_endpoint, ", ".join(self.handlers))

    def reload_allowed_clients(self) -> int:
        """Re-read the allowed_clients folder (the daemon's reload); KeyFileError keeps the list in use."""
        if self._authenticator is None or self.config.curve is None:
            raise ControlError("control socket is not serving")
        return reload_allowed_clients(self._authenticator, self.config.curve)

    def _serve(self) -> None:
        assert self._socket is not None
        while not (self.stop.is_set() or self._closing.is_set()):
            if not self._socket.poll(POLL_MS, zmq.POLLIN):
                continue
            frames = self._socket.recv_multipart(copy=False)
            # From a REQ client: [routing id, empty delimiter, request]; anything else gets no reply.
            if len(frames) != 3 or frames[1].bytes:
                log.warning("ignored a control message of %d frame(s) (not from a REQ client)", len(frames))
                continue
            body = frames[2]
            reply = self.handle(body.bytes, peer=_peer(body))
            self._socket.send_multipart([frames[0].bytes, b"", _encode(reply)])

    def handle(self, body: bytes, peer: str = "?") -> dict[str, Any]:
        """The reply to one request frame; never raises (a failing handler answers ok=false)."""
        try:
            request = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _error(f"request is not JSON ({exc})")
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return _error('request must be a JSON object {"command": NAME, "args": {...}}')
        command, args = request["command"], request.get("args") or {}
        if not isinstance(args, dict):
            return _error("args must be a JSON object")
        handler = self.handlers.get(command)
        if handler is None:
            return _error(f"unknown command {command!r} (known: {', '.join(self.handlers)})")
        log.info("control command %r from %s", command, peer)
        try:
            result = handler(args)
        except Exception as exc:  # noqa: BLE001 - a failing command must answer the client, not end the thread
            log.exception("control command %r failed", command)
            return _error(f"{command} failed: {type(exc).__name__}: {exc}")
        return {"ok": True, "result": result}

    def close(self) -> None:
        """Stop serving, close the socket, stop the authenticator; safe to call twice."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                # Closing a socket another thread is using is undefined in ZeroMQ: leave it to process exit.
                log.error("control thread did not stop within %.1f s (a command handler hung?)", JOIN_TIMEOUT_S)
                return
            self._thread = None
        self._release()

    def _release(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        if self._authenticator is not None:
            self._authenticator.stop()  # before term(): its ZAP socket lives in this context
            self._authenticator = None
        if self._context is not None:
            self._context.term()
            self._context = None


def _peer(frame: zmq.Frame) -> str:
    """Who sent ``frame``: address and (with CURVE) public key, for the audit line of each command."""
    try:
        return f"{frame.get('Peer-Address')} (key {frame.get('User-Id')})"
    except zmq.ZMQError:
        return "?"


def _encode(reply: dict[str, Any]) -> bytes:
    """The reply as JSON; a handler result that JSON cannot hold becomes an ok=false reply."""
    try:
        return json.dumps(reply).encode("utf-8")
    except (TypeError, ValueError) as exc:
        log.error("control reply not JSON-serialisable: %s", exc)
        return json.dumps(_error(f"reply not JSON-serialisable: {exc}")).encode("utf-8")


def request(
    endpoint: str,
    command: str,
    args: Mapping[str, Any] | None = None,
    *,
    server_key: str | Path | None = None,
    client_key: str | Path | None = None,
    timeout_s: float = 5.0,
) -> dict[str, Any]:
    """Send one command and return the reply ``{"ok": ..., ...}``; ControlError if none comes.

    ``server_key`` is the daemon's public NAME.key, ``client_key`` this client's NAME.key_secret.
    A refused key gets no answer at all (ZeroMQ drops the connection), so it looks like a timeout.
    """
    if (server_key is None) != (client_key is None):
        raise ControlError("give both the server's public key and this client's secret key, or neither")
    context = zmq.Context()
    socket = context.socket(zmq.REQ)
    socket.setsockopt(zmq.LINGER, 0)
    try:
        if server_key is not None and client_key is not None:
            try:
                make_client(socket, server_key, client_key)
            except KeyFileError as exc:
                raise ControlError(str(exc)) from None
        try:
            socket.connect(endpoint)
        except zmq.ZMQError as exc:
            raise ControlError(f"cannot connect to {endpoint}: {exc.strerror}") from None
        no_reply = ControlError(f"no reply from {endpoint} within {float(timeout_s)} s (daemon not running, control "
                                "disabled, or this client's key is not allowed)")
        deadline = time.monotonic() + timeout_s
        # A REQ socket whose handshake was refused (a key not allowed) has no peer left and would block
        # in send forever: the send shares the deadline with the reply.
        socket.setsockopt(zmq.SNDTIMEO, max(1, int(timeout_s * 1000)))
        try:
            socket.send(json.dumps({"command": command, "args": dict(args or {})}).encode("utf-8"))
        except zmq.Again:
            raise no_reply from None
        if not socket.poll(max(1, int((deadline - time.monotonic()) * 1000)), zmq.POLLIN):
            raise no_reply
        raw = socket.recv()
    finally:
        socket.close(linger=0)
        context.term()
    try:
        reply = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ControlError(f"{endpoint} answered something that is not JSON: {raw[:80]!r}") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ControlError(f"{endpoint} answered without an 'ok' field: {raw[:80]!r}")
    return reply
