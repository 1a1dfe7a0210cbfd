"""``edge-inspect keygen`` and ``edge-inspect ctl``: make CurveZMQ keys and talk to a running daemon.

The control socket and an encrypted verdict stream only admit clients whose keys were
exchanged beforehand, so commissioning needs a way to make keys that also says which file goes
where, and a client to send ``status``/``pause``/... from a shell or a script (exit 0 = done,
1 = the daemon refused the command, 2 = no answer). Only click is imported at start-up; ZeroMQ and
pydantic come in when a command runs.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import click

from edge.control import COMMANDS

EXIT_REFUSED = 1
EXIT_ERROR = 2  # no reply, or a key file cannot be used


def _parse_arg(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    """``--arg k=v`` pairs as a dict; a value that reads as JSON (3, true, "x") keeps that type."""
    args: dict[str, Any] = {}
    for item in values:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE")
        try:
            args[key] = json.loads(text)
        except json.JSONDecodeError:
            args[key] = text
    return args


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default=socket.gethostname(), show_default="this host's name",
              help="File name stem: writes NAME.key (public) and NAME.key_secret (secret).")
@click.option("--force", is_flag=True, help="Replace existing key files (peers holding the old public key lose access).")
def keygen(directory: Path, name: str, force: bool) -> None:
    """Make a CurveZMQ key pair in DIRECTORY for the daemon or for one client.

    Run it once on the line PC (the daemon's pair) and once on each client machine (PLC/MES
    bridge, technician laptop). Secret files never leave the machine they were made on.
    """
    from edge.control.keys import KeyFileError, generate_keypair, load_public_key

    try:
        public_path, secret_path = generate_keypair(directory, name, force=force)
        public_key = load_public_key(public_path).decode("ascii")
    except KeyFileError as exc:
        click.echo(f"edge-inspect keygen: error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(f"public key: {public_key}")
    click.echo(f"wrote {public_path}\n"
               "    public: may be copied. If this is a client, copy it into the daemon's allowed_clients folder\n"
               "    (control.curve / publish.curve). If this is the daemon, give it to each client (--server-key).")
    click.echo(f"wrote {secret_path} (mode 600)\n"
               "    secret: stays on this machine, never copy it. On the daemon's PC it is curve.secret_key;\n"
               "    on a client it is --client-key.")


@click.command()
@click.argument("endpoint")
@click.argument("command")
@click.option("--server-key", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="The daemon's public key file (NAME.key).")
@click.option("--client-key", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="This client's secret key file (NAME.key_secret); its .key must be in the daemon's allow-list.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              metavar="S", help="Give up (exit 2) when no reply arrives within S seconds.")
@click.option("--arg", "args", multiple=True, callback=_parse_arg, metavar="KEY=VALUE",
              help="Command argument; repeatable. A JSON value (3, true, \"x\") keeps its type, else a string.")
def ctl(endpoint: str, command: str, server_key: Path | None, client_key: Path | None, timeout: float,
        args: dict[str, Any]) -> None:
    """Send COMMAND (status, trigger, reload, pause, resume) to the daemon's control socket at ENDPOINT.

    Prints the daemon's JSON reply. Exit 0 when it did the command, 1 when it answered with an
    error, 2 when no reply came (daemon not running, control disabled, key not allowed) or a key
    file is unusable.
    """
    if command not in COMMANDS:  # at once: a typo must not wait out the reply timeout
        click.echo(f"edge-inspect ctl: error: unknown command {command!r} (known: {', '.join(COMMANDS)})", err=True)
        sys.exit(EXIT_ERROR)
    from edge.control.server import ControlError, request

    try:
        reply = request(endpoint, command, args, server_key=server_key, client_key=client_key, timeout_s=timeout)
    except ControlError as exc:
        click.echo(f"edge-inspect ctl: error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(json.dumps(reply, indent=2, sort_keys=True))
    sys.exit(0 if reply["ok"] else EXIT_REFUSED)
