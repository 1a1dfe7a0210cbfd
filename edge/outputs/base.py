"""What every output beside the ZeroMQ publisher shares: a bounded queue, a sender thread, honest counts.

A PLC, a broker or a live view is slower and less reliable than inspection, and on a production
line it must never be in its way: the publishing thread hands each message to every output with
:meth:`QueuedOutput.submit`, which never blocks (a full queue drops the message and counts it),
and the output's own thread delivers it. Every message submitted ends in exactly one of three
counts, the same accounting as frames: ``delivered``, ``undelivered`` by reason (``queue_full``,
``shutdown``, or whatever the output's :meth:`QueuedOutput.deliver` raised as
:class:`DeliveryError`), or still ``queued``. :meth:`QueuedOutput.stats` is what heartbeats and
metrics carry, so a PLC that stopped reading is seen without a log parser.

An output that needs its own state machine (a handshake, a disk outbox) subclasses
:class:`QueuedOutput` and overrides :meth:`~QueuedOutput.deliver`, and optionally
:meth:`~QueuedOutput.open`, :meth:`~QueuedOutput.idle` and :meth:`~QueuedOutput.shutdown`.
When a message's fate is only known later (a PLC acknowledges a result, or its buffer overruns),
:meth:`~QueuedOutput.deliver` returns :data:`PENDING` and the output calls
:meth:`~QueuedOutput.settle_pending` once for that message when it knows; until then it counts as
``queued``, and what is still pending at the close deadline counts as ``shutdown``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

MessageKind = Literal["verdict", "heartbeat", "status", "event"]


class Pending:
    """The type of :data:`PENDING`."""

    def __repr__(self) -> str:
        return "PENDING"


PENDING = Pending()  # deliver() returns it for a message settled later with settle_pending()
ALL_KINDS: tuple[MessageKind, ...] = ("verdict", "heartbeat", "status", "event")
POLL_S = 0.2


class OutputError(Exception):
    """An output cannot start (bad address, missing dependency); the daemon reports it in one line, exit 2."""


class DeliveryError(Exception):
    """One message could not be delivered; ``reason`` is the short label it is counted under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class OutputContext:
    """What the daemon hands an output at start: who it is and what it may ask of the daemon.

    ``handlers`` are the control commands (``status``, ``trigger``, ``reload``, ``pause``, ``resume``;
    each takes a dict of arguments and returns a dict), so a PLC can trigger a frame without the
    output importing the daemon. ``state_dir`` is where it may keep files that survive a restart;
    ``run_id`` is this daemon run's id (as in verdicts and heartbeats), for keys that must stay unique
    across restarts.
    """

    station: str
    handlers: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]]
    stop: threading.Event
    state_dir: Path | None = None
    run_id: str = ""


@dataclass
class OutboundMessage:
    """A message the daemon published, as handed to the outputs (payload as on the wire, not copied)."""

    kind: MessageKind
    payload: dict[str, Any]
    attachments: dict[str, bytes] = field(default_factory=dict)  # e.g. "map_png", "image_jpeg"
    t_submitted: float = field(default_factory=time.monotonic)


class QueuedOutput:
    """An output with a bounded queue and one sender thread; subclasses implement :meth:`deliver`."""

    name = "output"

    def __init__(self, queue_size: int = 64, kinds: tuple[MessageKind, ...] = ALL_KINDS) -> None:
        self.kinds = frozenset(kinds)
        self._queue: queue.Queue[OutboundMessage] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._delivered = 0
        self._undelivered: Counter[str] = Counter()
        self._in_flight = 0  # taken from the queue, inside deliver()
        self._pending = 0  # deliver() returned PENDING; settle_pending() not yet called for them
        self._abandoned = False  # close() gave up on the sender thread: it counts nothing more
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"output-{self.name}", daemon=True)
        self.connected = False
        self.last_error: str | None = None
        self.failure: str | None = None

    # ---------------------------------------------------------------- for the daemon

    def start(self) -> None:
        """Open the output (OutputError if it cannot) and start its sender thread."""
        self.open()
        self._thread.start()

    def submit(self, message: OutboundMessage) -> bool:
        """Queue ``message`` without waiting; False (and counted as ``queue_full``) when there is no room."""
        if message.kind not in self.kinds:
            return True
        try:
            self._queue.put_nowait(message)
            return True
        except queue.Full:
            self._count_undelivered("queue_full")
            return False

    def close(self, timeout: float) -> int:
        """Deliver what is queued for up to ``timeout`` s, then stop; returns the messages counted as ``shutdown``.

        A message still inside :meth:`deliver` at the deadline (a peer that never answers) is
        counted as ``shutdown`` too, and whatever that call does later is no longer counted.
        """
        deadline = time.monotonic() + timeout
        done = self._queue.all_tasks_done  # notified by task_done() on the sender thread
        with done:
            while ((self._queue.unfinished_tasks or self._pending) and self._thread.is_alive()
                   and time.monotonic() < deadline):
                done.wait(min(POLL_S, max(0.0, deadline - time.monotonic())))
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()) + POLL_S)
        with self._lock:
            self._abandoned = True
            lost = self._in_flight + max(0, self._pending)
            self._in_flight = 0
            self._pending = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            self._queue.task_done()
            lost += 1
        if lost:
            with self._lock:
                self._undelivered["shutdown"] += lost
        self.shutdown()
        return lost

    def stats(self) -> dict[str, Any]:
        """``delivered``, ``undelivered`` {reason: n}, ``queued``, ``connected``, ``last_error``."""
        with self._lock:
            undelivered = dict(self._undelivered)
            delivered = self._delivered
            queued = self._queue.qsize() + self._in_flight + max(0, self._pending)
        return {"delivered": delivered, "undelivered": undelivered, "queued": queued,
                "connected": bool(self.connected), "last_error": self.last_error}

    # ---------------------------------------------------------------- for subclasses

    def open(self) -> None:
        """Validate and bind/connect what can be checked at start-up; raise OutputError with one line."""

    def deliver(self, message: OutboundMessage) -> Pending | None:
        """Deliver one message, or raise DeliveryError(reason). Runs on the output's own thread.

        Return :data:`PENDING` when the outcome is known only later; then call
        :meth:`settle_pending` exactly once for this message (from any thread).
        """
        raise NotImplementedError

    def settle_pending(self, reason: str | None) -> None:
        """A message that :meth:`deliver` left :data:`PENDING` is done: delivered (None) or undelivered for ``reason``."""
        with self._lock:
            if self._abandoned:
                return
            self._pending -= 1  # may dip below 0 for a moment: settled before deliver() returned
            if reason is None:
                self._delivered += 1
            else:
                self._undelivered[reason] += 1
        with self._queue.all_tasks_done:  # close() may be waiting for the pending ones
            self._queue.all_tasks_done.notify_all()

    def idle(self) -> None:
        """Called on the sender thread at least every ``POLL_S`` when no message waits (reconnects, timers)."""

    def shutdown(self) -> None:
        """Release sockets and servers after the sender thread has stopped."""

    def _count_undelivered(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._undelivered[reason] += n

    def _settle(self, reason: str | None, pending: bool = False) -> None:
        """The message in :meth:`deliver` is done: delivered (``reason`` None) or undelivered for ``reason``."""
        with self._lock:
            if self._abandoned:
                return
            self._in_flight = 0
            if pending:
                self._pending += 1
            elif reason is None:
                self._delivered += 1
            else:
                self._undelivered[reason] += 1

    # ---------------------------------------------------------------- the sender thread

    def _main(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    message = self._queue.get(timeout=POLL_S)
                except queue.Empty:
                    self.idle()
                    continue
                with self._lock:
                    self._in_flight = 1
                try:
                    outcome = self.deliver(message)
                except DeliveryError as exc:
                    self.last_error = str(exc)
                    self._settle(exc.reason)
                else:
                    self._settle(None, pending=outcome is PENDING)
                finally:
                    self._queue.task_done()
        except Exception as exc:  # noqa: BLE001 - an output bug must be visible, never kill inspection
            self._settle("crashed")  # the message in hand
            self.failure = f"output {self.name} crashed: {type(exc).__name__}: {exc}"
            self.last_error = self.failure
            log.exception("output %s crashed; its messages are counted as undelivered from now on", self.name)
            self._drain_after_crash()

    def _drain_after_crash(self) -> None:
        while not self._stop.is_set():
            try:
                self._queue.get(timeout=POLL_S)
            except queue.Empty:
                continue
            self._count_undelivered("crashed")
            self._queue.task_done()
