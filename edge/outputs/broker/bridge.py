"""``edge-inspect bridge``: the broker sender as a process of its own (``outputs.broker.run: bridge``).

With ``run: bridge`` the daemon only appends to the outbox; this process reads the same config
file, opens the same outbox files and runs one :class:`~.sender.Sender` per destination until
SIGTERM. A crash or ``kill -9`` here costs nothing but time: the outbox keeps every message and
the next start replays what was not acknowledged. Having no shared memory with the daemon, it
looks for new rows every ``poll_s`` (the only delay it adds to a live message) and tells the
daemon it is alive through the outbox's ``meta`` table, which is where the daemon's heartbeats
read ``connected`` from.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from edge.outputs.base import OutputError
from edge.outputs.broker import BrokerConfig, transports
from edge.outputs.broker.outbox import Outbox, OutboxError
from edge.outputs.broker.output import outbox_path
from edge.outputs.broker.sender import Sender

log = logging.getLogger(__name__)

POLL_S = 0.01
CLOSE_S = 2.0


class BridgeError(Exception):
    """The bridge cannot run with this config; one line for the user (exit 2)."""


def run_bridge(config: BrokerConfig, station: str, state_dir: Path | None, stop: threading.Event,
               poll_s: float = POLL_S) -> int:
    """Send every outbox of ``config`` until ``stop`` is set; BridgeError if it cannot start."""
    if not config.enabled:
        raise BridgeError("outputs.broker is not enabled in this config: nothing to send")
    if config.run != "bridge":
        raise BridgeError("outputs.broker.run is 'thread': the daemon sends by itself (set run: bridge to use "
                          "edge-inspect bridge; two senders on one outbox would only send everything twice)")
    senders: list[tuple[Sender, threading.Thread]] = []
    for name, make in transports(config, station).items():
        path = outbox_path(config, state_dir, name)
        if path is None:
            raise BridgeError("the outbox needs a folder: set outputs.broker.outbox.dir or state_dir (the daemon's)")
        try:
            transport = make()  # type: ignore[operator]
            transport.check()
            outbox = Outbox(path, role="send")
        except (OutputError, OutboxError) as exc:
            raise BridgeError(f"outputs.broker.{name}: {exc}") from None
        sender = Sender(outbox, transport, live_reserve=config.live_reserve, idle_s=poll_s,
                        reconnect_max_delay_s=config.reconnect_max_delay_s,
                        replay_max_per_s=config.replay_max_per_s)
        thread = threading.Thread(target=sender.run, args=(stop,), name=f"bridge-{name}", daemon=True)
        senders.append((sender, thread))
        log.info("bridge: %s from %s", transport.name, path)
    for _, thread in senders:
        thread.start()
    stop.wait()
    for sender, thread in senders:
        thread.join(CLOSE_S)
        if not thread.is_alive():
            sender.close(0.5)
            sender.outbox.close()
    log.info("bridge stopped: %s", ", ".join(f"{s.transport.name}: sent {s.sent}, connections {s.connections}"
                                              for s, _ in senders))
    return 0
