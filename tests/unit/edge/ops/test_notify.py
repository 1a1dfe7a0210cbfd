"""SystemdNotifier speaks the sd_notify protocol to a real NOTIFY_SOCKET; the pinger pings only on progress.

A real ``AF_UNIX``/``SOCK_DGRAM`` socket stands in for systemd: it receives exactly the datagrams
systemd would. No assertion depends on timing: "no ping after the daemon went quiet for many
intervals" counts the pinger's own intervals (its stop event's waits, see :class:`TickingEvent`)
instead of sleeping for them, and holds on any machine because at most one ping can follow the
last alive().
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

import edge.ops.notify
from edge.ops.notify import SystemdNotifier, WatchdogPinger

REPO = Path(__file__).resolve().parents[4]
RECV_TIMEOUT_S = 10.0  # generous: only a bound on how long a broken test hangs, never asserted
PING_INTERVAL_S = 0.05


class FakeManager:
    """The service manager's end of NOTIFY_SOCKET: a bound datagram socket that records messages."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value  # what systemd would put in $NOTIFY_SOCKET

    def env(self, **extra: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.env_value, **extra}

    def recv(self) -> dict[str, str]:
        """The next message as a dict of its KEY=value lines."""
        self.sock.settimeout(RECV_TIMEOUT_S)
        return parse(self.sock.recv(4096))

    def drain(self) -> list[dict[str, str]]:
        """Every message queued right now, without waiting."""
        self.sock.setblocking(False)
        messages = []
        try:
            while True:
                messages.append(parse(self.sock.recv(4096)))
        except BlockingIOError:
            return messages


def parse(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().split("\n") if line)


class TickingEvent(threading.Event):
    """The pinger's stop event, counting how often its loop started waiting: one wait per ping interval.

    The loop checks for progress (and maybe pings) after each wait, then waits again, so after
    ``ticks`` reached n+1 the pinger has decided n intervals.
    """

    made: list[TickingEvent] = []

    def __init__(self) -> None:
        super().__init__()
        self.ticks = 0
        self._ticked = threading.Condition()
        TickingEvent.made.append(self)

    def wait(self, timeout: float | None = None) -> bool:
        with self._ticked:
            self.ticks += 1
            self._ticked.notify_all()
        return super().wait(timeout)

    def wait_for_ticks(self, count: int) -> None:
        with self._ticked:
            assert self._ticked.wait_for(lambda: self.ticks >= count, RECV_TIMEOUT_S * 3), "the pinger stopped ticking"


@pytest.fixture
def pinger_ticks(monkeypatch: pytest.MonkeyPatch) -> list[TickingEvent]:
    """Every WatchdogPinger made in the test gets a :class:`TickingEvent` as its stop event."""
    TickingEvent.made = []
    monkeypatch.setattr(edge.ops.notify, "threading", SimpleNamespace(Event=TickingEvent, Thread=threading.Thread))
    return TickingEvent.made


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[FakeManager]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    yield FakeManager(sock, str(path))
    sock.close()


@pytest.fixture
def abstract_manager() -> Iterator[FakeManager]:
    name = f"edge-inspect-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    yield FakeManager(sock, "@" + name)
    sock.close()


@pytest.fixture
def notifier(manager: FakeManager) -> Iterator[SystemdNotifier]:
    n = SystemdNotifier(manager.env())
    yield n
    n.close()


def test_ready_sends_ready_with_status(manager: FakeManager, notifier: SystemdNotifier) -> None:
    notifier.ready("inspecting station line1")
    assert manager.recv() == {"READY": "1", "STATUS": "inspecting station line1"}


def test_status_watchdog_and_stopping_each_send_their_field(manager: FakeManager, notifier: SystemdNotifier) -> None:
    notifier.status("camera down, reconnecting")
    notifier.watchdog()
    notifier.stopping()
    assert [manager.recv() for _ in range(3)] == [
        {"STATUS": "camera down, reconnecting"}, {"WATCHDOG": "1"}, {"STOPPING": "1"},
    ]


def test_reloading_carries_the_monotonic_clock(manager: FakeManager, notifier: SystemdNotifier) -> None:
    before = monotonic_usec()
    notifier.reloading("reloading bundle")
    message = manager.recv()
    after = monotonic_usec()
    assert message["RELOADING"] == "1"
    assert message["STATUS"] == "reloading bundle"
    assert before <= int(message["MONOTONIC_USEC"]) <= after


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds: the clock systemd compares MONOTONIC_USEC with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def test_status_with_newlines_stays_one_field(manager: FakeManager, notifier: SystemdNotifier) -> None:
    notifier.status("bundle rejected:\nscore threshold missing")
    assert manager.recv() == {"STATUS": "bundle rejected: score threshold missing"}


def test_abstract_socket_name_is_reached(abstract_manager: FakeManager) -> None:
    notifier = SystemdNotifier(abstract_manager.env())
    notifier.ready("up")
    notifier.close()
    assert abstract_manager.recv() == {"READY": "1", "STATUS": "up"}


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    notifier = SystemdNotifier({"WATCHDOG_USEC": "30000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None  # no manager, so no watchdog to feed
    notifier.ready("up")
    notifier.status("x")
    notifier.watchdog()
    notifier.reloading()
    notifier.stopping()
    assert not notifier.enabled


def test_reads_os_environ_by_default(manager: FakeManager, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", manager.env_value)
    notifier = SystemdNotifier()
    notifier.stopping()
    notifier.close()
    assert manager.recv() == {"STOPPING": "1"}


def test_watchdog_interval_is_half_of_watchdog_usec(manager: FakeManager) -> None:
    usec = 30_000_000
    notifier = SystemdNotifier(manager.env(WATCHDOG_USEC=str(usec), WATCHDOG_PID=str(os.getpid())))
    assert notifier.watchdog_interval_s == pytest.approx(usec / 2 / 1e6)
    notifier.close()


def test_watchdog_meant_for_another_pid_is_ignored(manager: FakeManager) -> None:
    notifier = SystemdNotifier(manager.env(WATCHDOG_USEC="30000000", WATCHDOG_PID=str(os.getpid() + 1)))
    assert notifier.enabled
    assert notifier.watchdog_interval_s is None
    notifier.close()


def test_no_watchdog_without_watchdog_usec(manager: FakeManager) -> None:
    notifier = SystemdNotifier(manager.env())
    assert notifier.watchdog_interval_s is None
    notifier.close()


def test_send_failure_is_logged_once_and_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A NOTIFY_SOCKET whose listener is gone: the real fault after the manager's socket vanished.
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.DEBUG, logger="edge.ops.notify"):
        notifier.ready("up")
        notifier.watchdog()
        notifier.stopping()
    notifier.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "sd_notify" in warnings[0].getMessage()


def test_pinger_pings_while_alive_and_goes_silent_when_progress_stops(
    manager: FakeManager, pinger_ticks: list[TickingEvent],
) -> None:
    notifier = SystemdNotifier(manager.env())
    pinger = WatchdogPinger(notifier, interval_s=PING_INTERVAL_S)
    (ticks,) = pinger_ticks
    pinger.start()
    stop_feeding = threading.Event()

    def pipeline() -> None:  # a frame loop that makes progress until it "wedges"
        while not stop_feeding.wait(PING_INTERVAL_S / 5):
            pinger.alive()

    feeder = threading.Thread(target=pipeline)
    feeder.start()
    try:
        pings_while_alive = [manager.recv() for _ in range(3)]
    finally:
        stop_feeding.set()
        feeder.join()
    # At most one ping can follow the last alive(); then nothing, for twenty more of its intervals.
    ticks.wait_for_ticks(ticks.ticks + 21)
    pings_after_wedge = manager.drain()
    pinger.close()
    notifier.close()
    assert pings_while_alive == [{"WATCHDOG": "1"}] * 3
    assert len(pings_after_wedge) <= 1


def test_pinger_never_pings_without_progress(manager: FakeManager, pinger_ticks: list[TickingEvent]) -> None:
    notifier = SystemdNotifier(manager.env())
    pinger = WatchdogPinger(notifier, interval_s=PING_INTERVAL_S)
    (ticks,) = pinger_ticks
    pinger.start()
    ticks.wait_for_ticks(11)  # ten intervals decided
    pinger.close()
    notifier.close()
    assert manager.drain() == []


def test_pinger_without_watchdog_starts_no_thread(manager: FakeManager) -> None:
    notifier = SystemdNotifier(manager.env())  # no WATCHDOG_USEC: systemd runs no watchdog
    pinger = WatchdogPinger(notifier)
    pinger.start()
    pinger.alive()
    assert "sd-watchdog" not in {t.name for t in threading.enumerate()}
    pinger.close()
    notifier.close()


def test_pinger_close_ends_its_thread(manager: FakeManager) -> None:
    notifier = SystemdNotifier(manager.env(WATCHDOG_USEC="100000"))
    pinger = WatchdogPinger(notifier)
    pinger.start()
    assert "sd-watchdog" in {t.name for t in threading.enumerate()}
    pinger.close()
    notifier.close()
    assert "sd-watchdog" not in {t.name for t in threading.enumerate()}


CHILD = """
import sys
from edge.ops.notify import SystemdNotifier
n = SystemdNotifier()
n.ready("child up")
n.stopping()
sys.exit(0 if n.enabled else 3)
"""


def test_datagrams_come_from_the_notifying_process_itself(manager: FakeManager) -> None:
    # NotifyAccess=main: systemd accepts a message only if the kernel says it came from the main pid.
    manager.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    env = {**os.environ, **manager.env()}
    env.pop("WATCHDOG_USEC", None)
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, cwd=REPO)
    assert child.wait(timeout=60) == 0
    senders, messages = [], []
    manager.sock.settimeout(RECV_TIMEOUT_S)
    for _ in range(2):
        data, ancdata, _flags, _addr = manager.sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
        messages.append(parse(data))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                senders.append(struct.unpack("3i", payload)[0])
    assert messages == [{"READY": "1", "STATUS": "child up"}, {"STOPPING": "1"}]
    assert senders == [child.pid, child.pid]
