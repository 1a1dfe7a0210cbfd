"""Tell systemd how the daemon is doing (sd_notify), with nothing but the standard library.

Under ``Type=notify`` systemd considers the daemon started only when it says ``READY=1``, shows
its ``STATUS=`` line in ``systemctl status``, and with ``WatchdogSec=`` kills and restarts it when
``WATCHDOG=1`` stops coming. The protocol is one datagram of ``KEY=value`` lines sent to the
AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` means an abstract name); python-systemd
would add a C dependency for that. Outside systemd (bench, tests) ``$NOTIFY_SOCKET`` is unset and
every call is a no-op. Sending never raises: a lost notification must not stop the line.

``WatchdogPinger`` sends ``WATCHDOG=1`` only if the daemon did real work (``alive()``) since the
last ping, so a wedged pipeline stops the pings and systemd's watchdog restarts the service.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 1.0  # a busy service manager must not block a daemon thread for long


class SystemdNotifier:
    """sd_notify client configured from ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = _watchdog_usec(env) if self._address else None
        self._warned = False
        self._sock: socket.socket | None = None
        if self._address:
            try:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            except OSError as exc:  # out of file descriptors: run on, unsupervised
                log.warning("cannot open a socket for sd_notify (%s); systemd notify disabled", exc)
                self._address, self._watchdog_usec = "", None
            else:
                self._sock.settimeout(SEND_TIMEOUT_S)

    @property
    def enabled(self) -> bool:
        """True when a service manager listens (``NOTIFY_SOCKET`` was set)."""
        return self._sock is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half of ``WatchdogSec=``, as sd_watchdog_enabled(3) advises; None = no watchdog."""
        return None if self._watchdog_usec is None else self._watchdog_usec / 2e6

    def ready(self, status: str) -> None:
        """Startup (or a reload) is complete: dependent units may start, the watchdog is armed."""
        self._send("READY=1", f"STATUS={_one_line(status)}")

    def status(self, text: str) -> None:
        """Free-form one-line state shown by ``systemctl status``."""
        self._send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> None:
        """Reset systemd's watchdog timer (normally sent by ``WatchdogPinger``)."""
        self._send("WATCHDOG=1")

    def stopping(self) -> None:
        """Shutdown has begun, so systemd does not mistake the exit for a crash in progress."""
        self._send("STOPPING=1")

    def reloading(self, status: str | None = None) -> None:
        """A reload began; call ``ready()`` when done. systemd >= 253 wants MONOTONIC_USEC with it, older ignore it."""
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        fields = ["RELOADING=1", f"MONOTONIC_USEC={now_usec}"]
        if status is not None:
            fields.append(f"STATUS={_one_line(status)}")
        self._send(*fields)

    def close(self) -> None:
        """Release the socket; later calls are no-ops."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _send(self, *fields: str) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:  # socket gone, manager busy (timeout), buffer full: go on without
            if not self._warned:
                self._warned = True
                log.warning("sd_notify to %s failed (%s); further failures are logged at DEBUG",
                            self._address.replace("\0", "@"), exc)
            else:
                log.debug("sd_notify %s failed: %s", fields[0], exc)


class WatchdogPinger:
    """Sends ``WATCHDOG=1`` every ``interval_s``, but only if ``alive()`` was called since the last ping.

    Call ``alive()`` where work really completes (a frame processed, a heartbeat published), never
    from a timer of its own: the point is that a wedged pipeline goes silent. ``start()`` does
    nothing when systemd runs no watchdog for this process.
    """

    def __init__(self, notifier: SystemdNotifier, interval_s: float | None = None) -> None:
        self._notifier = notifier
        self._interval_s = notifier.watchdog_interval_s if interval_s is None else interval_s
        self._beats = 0  # bumped by alive(); an int, so the hot path takes no lock
        self._pinged_at_beat = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def alive(self) -> None:
        """Real progress was made; cheap enough to call for every frame."""
        self._beats += 1

    def start(self) -> None:
        """Start the ping thread (idempotent; a no-op without a watchdog)."""
        if self._interval_s is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, args=(self._interval_s,), name="sd-watchdog", daemon=True)
        self._thread.start()
        log.info("systemd watchdog: pinging every %.1f s while the pipeline makes progress", self._interval_s)

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop pinging and wait for the thread to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            beats = self._beats
            if beats != self._pinged_at_beat:
                self._pinged_at_beat = beats
                self._notifier.watchdog()


def _socket_address(value: str) -> str:
    """``/path`` as is, ``@name`` as an abstract name (NUL + name); anything else disables notify."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value:
        log.warning("NOTIFY_SOCKET=%s is not an AF_UNIX path or @name; systemd notify disabled", value)
    return ""


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """``WATCHDOG_USEC`` if it is meant for this process (``WATCHDOG_PID`` unset or our pid)."""
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID", str(os.getpid())))
    except ValueError:
        log.warning("unparsable WATCHDOG_USEC/WATCHDOG_PID; systemd watchdog pings disabled")
        return None
    return usec if usec > 0 and pid == os.getpid() else None


def _one_line(text: str) -> str:
    """A newline would start a new KEY=value field in the datagram."""
    return " ".join(text.splitlines())
