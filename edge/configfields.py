"""Rules shared by several config sections: paths relative to the config file, the state folder, endpoints.

Each section's model lives beside the code it configures (camera, archive, control, ...), but a
path or an endpoint must mean the same in every section: a relative path is taken from the
config file's folder (never the working directory, which under systemd can be ``/``), the state
folder systemd gives a service is read the same way by whoever needs one, and a socket the
daemon binds must be reachable by another process.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationInfo

MAX_PORT = 65535


def resolve_path(value: str | Path | None, info: ValidationInfo) -> Path | None:
    """``value`` made absolute against the config file's folder (``info.context["base_dir"]``), if relative."""
    if value is None:
        return None
    value = Path(value).expanduser()
    base_dir = (info.context or {}).get("base_dir")
    if base_dir is not None and not value.is_absolute():
        value = Path(base_dir) / value
    return Path(os.path.normpath(value))


def systemd_state_directory() -> Path | None:
    """The first entry of systemd's ``$STATE_DIRECTORY`` (``StateDirectory=`` of the unit), None outside systemd."""
    first = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(first) if first else None


def check_bind_endpoint(value: str) -> str:
    """Accept only ZeroMQ transports another process can reach: ``tcp://HOST:PORT`` or ``ipc://PATH``.

    ZeroMQ itself takes ``tcp://127.0.0.1:99999`` and binds another port (the number modulo
    65536), and ``-5`` as 65531, so a subscriber configured with the number written would never
    connect: the port must be a number from 1 to 65535. ``0`` and ``*`` (the OS picks a free
    port, which the daemon logs) are accepted for tests and benches.
    """
    transport, sep, address = value.partition("://")
    if not sep or transport not in ("tcp", "ipc") or not address:
        raise ValueError("must be tcp://HOST:PORT or ipc://PATH")
    if transport == "tcp":
        host, colon, port = address.rpartition(":")
        if not colon or not host:
            raise ValueError(f"{value}: must be tcp://HOST:PORT (no port given)")
        if port != "*" and not (port.isdigit() and int(port) <= MAX_PORT):
            raise ValueError(f"{value}: port {port!r} is not a number from 1 to {MAX_PORT}")
    return value
