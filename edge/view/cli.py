"""``edge-inspect view``: serve the live view of one or more stations (click only at import time).

The command checks what the operator gave (endpoints, listen address, token, key files) before
anything starts, so a mistake is one line and exit 2; the web server (aiohttp, the ``view``
extra) is imported only when it runs, so registering the command costs the other commands
nothing and a plain edge install says which extra to install instead of a traceback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import sys
from pathlib import Path

import click

EXIT_USAGE = 2
INSTALL_HINT = "pip install 'edge-inspect[view]'"


def fail(message: str) -> None:
    click.echo(f"edge-inspect view: {message}", err=True)
    sys.exit(EXIT_USAGE)


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` into (host, port); ValueError with the reason."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {value!r}: give HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host:
        raise ValueError(f"--listen {value!r}: give the address, e.g. 0.0.0.0:8080 for every interface")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def read_token(token: str | None, token_file: Path | None) -> str | None:
    if token is not None and token_file is not None:
        raise ValueError("give --token or --token-file, not both")
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"--token-file {token_file}: {exc.strerror or exc}") from None
    if token is not None and len(token) < 8:
        raise ValueError("the token must have at least 8 characters")
    return token


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--connect", "connects", multiple=True, required=True, metavar="ENDPOINT",
              help="A station's verdict socket (its publish.endpoint), e.g. tcp://10.0.0.5:5556; repeat for more.")
@click.option("--listen", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
              help="Where the pages are served; beyond loopback a token is required.")
@click.option("--token", envvar="EDGE_VIEW_TOKEN", metavar="TEXT",
              help="Every request must carry it (open http://HOST:PORT/?token=TEXT once; a cookie keeps it). "
                   "Also read from $EDGE_VIEW_TOKEN.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Read the token from FILE instead (keeps it out of the process list).")
@click.option("--server-key", "server_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE", help="For CurveZMQ streams: the daemon's public key (NAME.key); once for every "
                                   "--connect, or once per --connect in the same order.")
@click.option("--client-key", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="For CurveZMQ streams: this view's secret key (NAME.key_secret), allowed by the daemons.")
@click.option("--history", default=24, show_default=True, type=click.IntRange(1, 200),
              help="Recent parts kept per station for the thumbnail strip.")
@click.option("--heartbeat-s", default=1.0, show_default=True, type=click.FloatRange(min=0.05),
              help="The stations' publish.heartbeat_s, until heartbeats show the real period; a station "
                   "silent for 1.5 periods is shown stale.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def view(connects: tuple[str, ...], listen: str, token: str | None, token_file: Path | None,
         server_keys: tuple[Path, ...], client_key: Path | None, history: int, heartbeat_s: float,
         log_level: str) -> None:
    """Serve a live web page per station: frame and heatmap, verdict, history, counts, health.

    Subscribes to each --connect endpoint like any verdict consumer (inspection never waits for
    it) and serves http://HOST:PORT/ (overview) and /station/NAME. Read-only: no command reaches
    the daemon. The daemon sends frames only with publish.send_image (maps with publish.send_map).
    """
    try:
        import aiohttp  # noqa: F401 - only to say which extra is missing
    except ImportError:
        fail(f"the web server is not installed: {INSTALL_HINT}")
    from edge.view.server import ViewError, serve
    from edge.view.source import Endpoint

    try:
        host, port = parse_listen(listen)
        token = read_token(token, token_file)
    except ValueError as exc:
        fail(str(exc))
        return
    if token is None and not is_loopback(host):
        fail(f"listening on {host} (beyond this machine) needs --token or --token-file")
    if server_keys and client_key is None or client_key is not None and not server_keys:
        fail("give both --server-key and --client-key for an encrypted stream, or neither")
    if len(server_keys) not in (0, 1, len(connects)):
        fail(f"{len(server_keys)} --server-key for {len(connects)} --connect: give one for all, or one each")
    keys: list[Path | None] = [server_keys[0] if len(server_keys) == 1 else server_keys[i] if server_keys else None
                               for i in range(len(connects))]
    endpoints = [Endpoint(address, key, client_key if key is not None else None) for address, key in zip(
        connects, keys, strict=True)]
    _setup_logging(log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(endpoints, host, port, token=token, history=history, heartbeat_s=heartbeat_s, stop=stop,
                    ready=lambda url: click.echo(f"edge-inspect view: serving {url} for "
                                                 f"{', '.join(connects)}", err=True))

    try:
        asyncio.run(main())
    except ViewError as exc:
        fail(str(exc))


def _setup_logging(level: str) -> None:
    """The daemon's log formats, without :func:`edge.ops.logs.setup_logging` (it loads OpenCV to silence it)."""
    from edge.ops.logs import JsonFormatter, TextFormatter, use_json

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json(sys.stderr) else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").disabled = True  # request lines could carry the token
