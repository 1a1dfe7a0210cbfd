"""CurveZMQ on our sockets: the server side with an allow-list of client keys, and the client side.

A server socket (the control socket, optionally the verdict stream) encrypts with its own key
pair and lets in only clients whose public key file lies in the configured ``allowed_clients``
folder. ZeroMQ asks a ZAP handler about each new connection; pyzmq's ``ThreadAuthenticator``
answers from that folder in a thread of the socket's own context, and re-reads it on the
daemon's reload, so admitting a new client needs no restart. We log every refusal at WARNING
with the client's key and address (pyzmq's own logger says so only at DEBUG), because a bridge
that silently gets nothing is the first thing a commissioning engineer will ask about. Both
server sockets bind through :func:`bind_server`, so a taken address or a bad key reads the same
whichever socket it is.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from pathlib import Path

import zmq
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from edge.configfields import resolve_path
from edge.control.keys import KeyFileError, load_allowed_keys, load_public_key, load_secret_keypair

log = logging.getLogger(__name__)

class BindError(Exception):
    """A server socket cannot be bound: its keys are unusable, the address is taken, or the endpoint is bad."""


# pyzmq's authenticator matches the socket's ZAP domain exactly; its "*" is only used for an empty domain.
ZAP_DOMAIN = "edge-inspect"


class CurveServerConfig(BaseModel):
    """``curve:`` encrypt a server socket and admit only clients whose public key is in an allow-list."""

    model_config = ConfigDict(extra="forbid")

    secret_key: Path = Field(
        description="This server's NAME.key_secret (from `edge-inspect keygen`); stays on this PC, mode 600. "
        "Relative to the config file's folder."
    )
    allowed_clients: Path = Field(
        description="Folder of client public NAME.key files; only these clients may connect. Relative to the "
        "config file's folder. A key added or removed counts from the next reload (SIGHUP or the reload command)."
    )

    @field_validator("secret_key", "allowed_clients")
    @classmethod
    def _resolve_path(cls, value: Path, info: ValidationInfo) -> Path | None:
        """Make a relative key path relative to the config file, not the working directory."""
        return resolve_path(value, info)


@dataclass(frozen=True)
class ServerKeys:
    """The server's own key pair and the client keys it admits, read and checked."""

    public: bytes
    secret: bytes
    allowed: dict[str, bytes]


def load_server_keys(config: CurveServerConfig) -> ServerKeys:
    """Read the server key pair and the allow-list (KeyFileError on a problem); also a config check."""
    public, secret = load_secret_keypair(config.secret_key)
    return ServerKeys(public=public, secret=secret, allowed=load_allowed_keys(config.allowed_clients))


class RefusalLoggingAuthenticator(ThreadAuthenticator):
    """pyzmq's thread authenticator, plus one WARNING line for each client key it refuses."""

    allowed_clients: Path | None = None
    _peer_address = "?"

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        # ZAP request frames: version, request id, domain, address, identity, mechanism, credentials...
        self._peer_address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        await super().handle_zap_message(msg)

    async def _authenticate_curve(self, domain: str, client_key: bytes) -> tuple[bool, bytes]:
        allowed, reason = await super()._authenticate_curve(domain, client_key)
        if not allowed:
            log.warning(
                "refused a client with an unknown key %s from %s (%s); to admit it, put its public .key file in %s",
                z85.encode(client_key).decode("ascii"), self._peer_address, reason.decode("utf-8", "replace"),
                self.allowed_clients,
            )
        return allowed, reason


def make_server(socket: zmq.Socket, context: zmq.Context, config: CurveServerConfig) -> ThreadAuthenticator:
    """Make ``socket`` (not yet bound) a CURVE server admitting only the allow-list; return the authenticator.

    The authenticator runs a thread and holds a socket in ``context``: whoever owns the socket
    must ``stop()`` it after closing the socket and before terminating the context, or the
    context's ``term()`` waits forever. Raises KeyFileError before starting anything.
    """
    keys = load_server_keys(config)
    authenticator = RefusalLoggingAuthenticator(context)
    authenticator.allowed_clients = config.allowed_clients
    authenticator.start()
    try:
        authenticator.configure_curve(domain=ZAP_DOMAIN, location=str(config.allowed_clients))
        socket.zap_domain = ZAP_DOMAIN.encode("ascii")
        socket.curve_secretkey = keys.secret
        socket.curve_publickey = keys.public
        socket.curve_server = True
    except BaseException:
        authenticator.stop()
        raise
    log.info("CURVE on: %d allowed client key(s) in %s", len(keys.allowed), config.allowed_clients)
    return authenticator


def bind_server(socket: zmq.Socket, context: zmq.Context, endpoint: str, curve: CurveServerConfig | None,
                what: str) -> ThreadAuthenticator | None:
    """Bind ``socket`` to ``endpoint``, first making it a CURVE server of ``curve``'s allow-list when given.

    Returns the authenticator (None without ``curve``), which the owner stops as :func:`make_server`
    says. Every failure is a :class:`BindError` whose one line names ``what`` (``"control socket"``,
    ``"verdict socket"``) and, for the address, the endpoint; no authenticator is left running then,
    and the caller still closes its socket and context.
    """
    authenticator = None
    try:
        if curve is not None:
            authenticator = make_server(socket, context, curve)
        socket.bind(endpoint)
    except KeyFileError as exc:  # raised by make_server before it starts anything
        raise BindError(f"{what}: {exc}") from None
    except zmq.ZMQError as exc:
        if authenticator is not None:
            authenticator.stop()
        if exc.errno == errno.EADDRINUSE:
            raise BindError(f"cannot bind {what} {endpoint}: address already in use "
                            "(another edge-inspect running?)") from None
        raise BindError(f"cannot bind {what} {endpoint}: {exc.strerror}") from None
    return authenticator


def reload_allowed_clients(authenticator: ThreadAuthenticator, config: CurveServerConfig) -> int:
    """Re-read the allow-list so keys added or removed count from the next connection; return how many.

    The folder is read and checked first: a damaged key file raises KeyFileError and the allow-list
    in use stays as it was. Connections already admitted stay open: ZeroMQ authenticates a peer
    only when it connects. Safe from any thread (the authenticator swaps its key table in one step).
    """
    count = len(load_allowed_keys(config.allowed_clients))
    authenticator.configure_curve(domain=ZAP_DOMAIN, location=str(config.allowed_clients))
    log.info("reloaded %d allowed client key(s) from %s", count, config.allowed_clients)
    return count


def make_client(socket: zmq.Socket, server_public_key_file: str | Path, client_secret_file: str | Path) -> None:
    """Make ``socket`` (not yet connected) a CURVE client of the server whose public key file is given."""
    server_public = load_public_key(server_public_key_file)
    client_public, client_secret = load_secret_keypair(client_secret_file)
    socket.curve_serverkey = server_public
    socket.curve_publickey = client_public
    socket.curve_secretkey = client_secret
