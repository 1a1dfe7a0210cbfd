"""The daemon's side of a broker output: append to the outbox on the publishing thread, nothing more.

:meth:`OutboxOutput.submit` overrides the queue of :class:`~edge.outputs.base.QueuedOutput`: a
message counts as handed over only once it is in the outbox file, so the append (an SQLite insert
and, with ``outbox.sync: full``, one fsync) happens on the publishing thread and is the only cost
the broker adds to inspection. Everything else runs elsewhere: the base class's thread keeps the
outbox within its bounds and checkpoints its WAL, and the :class:`~.sender.Sender` runs in a thread
of its own here (``run: thread``) or in the ``edge-inspect bridge`` process (``run: bridge``).

Accounting (heartbeats, ``stopped``, metrics) comes from the outbox file itself, so it is the same
whichever process sends: ``delivered`` (acknowledged since this start, backlog of earlier runs
included), ``undelivered`` (``outbox_full``, ``expired``: dropped past a bound; ``outbox_error``:
an append failed), ``queued`` (in the outbox now), plus ``backlog_at_start`` and ``handover_ms``
(inference to durable in the outbox, per verdict, p50/p95).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.ops.latency import percentiles
from edge.outputs.base import OutboundMessage, OutputContext, OutputError, QueuedOutput
from edge.outputs.broker.outbox import Outbox, OutboxError
from edge.outputs.broker.sender import Sender, Transport

if TYPE_CHECKING:
    from edge.outputs.broker.config import BrokerConfig

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 1.0
CHECKPOINT_S = 5.0
SENDER_FRESH_S = 5.0  # bridge mode: a sender not heard of for this long counts as not connected
ERROR_LOG_EVERY_S = 60.0


def encode_body(payload: dict[str, Any], run_id: str, n: int) -> bytes:
    """The broker payload: the wire message with a leading ``delivery`` object (run_id, n, replay false)."""
    prefix = f'{{"delivery":{{"run_id":{json.dumps(run_id)},"n":{int(n)},"replay":false}}'
    body = json.dumps(payload, allow_nan=False, separators=(",", ":"))
    return (prefix + ("," + body[1:] if body != "{}" else "}")).encode("utf-8")


def outbox_path(config: BrokerConfig, state_dir: Path | None, transport: str) -> Path | None:
    """Where the outbox of ``transport`` (``mqtt``, ``kafka``) lives; None when no folder is known."""
    folder = config.outbox.dir if config.outbox.dir is not None else (state_dir / "outbox" if state_dir else None)
    return folder / f"{transport}.sqlite" if folder is not None else None


class OutboxOutput(QueuedOutput):
    """One broker destination: its outbox file, its housekeeping, and (``run: thread``) its sender."""

    def __init__(self, config: BrokerConfig, transport_name: str, make_transport: Callable[[], Transport],
                 context: OutputContext) -> None:
        self.name = f"broker.{transport_name}"
        super().__init__(queue_size=1, kinds=tuple(config.kinds))
        self.config = config
        self.transport_name = transport_name
        self.make_transport = make_transport
        self.context = context
        self.path = outbox_path(config, context.state_dir, transport_name)
        self.appender: Outbox | None = None
        self.house: Outbox | None = None
        self.sender: Sender | None = None
        self._sender_stop = threading.Event()
        self._sender_thread: threading.Thread | None = None
        self._at_open: dict[str, float] = {}
        self._final: dict[str, float] = {}  # the counters as they stood at shutdown
        self._n = 0
        self._handover: deque[float] = deque(maxlen=2048)
        self._next_house = 0.0
        self._next_checkpoint = 0.0
        self._next_error_log = 0.0

    # ------------------------------------------------------------------ start / stop

    def open(self) -> None:
        if self.path is None:
            raise OutputError("the outbox needs a folder: set outbox.dir, or state_dir (or run under systemd "
                              "with StateDirectory=)")
        transport = self.make_transport()
        check = getattr(transport, "check", None)
        if check is not None:
            check()
        sync = self.config.outbox.sync
        try:
            self.appender = Outbox(self.path, sync=sync, role="append")
            self.house = Outbox(self.path, role="send")
            sender_outbox = Outbox(self.path, role="send") if self.config.run == "thread" else None
        except OutboxError as exc:
            raise OutputError(str(exc)) from None
        self._at_open = self.house.counters()
        if self.appender.moved_aside is not None:
            self.last_error = f"corrupt outbox moved aside to {self.appender.moved_aside.name}"
        if sender_outbox is not None:
            self.sender = Sender(sender_outbox, transport, live_reserve=self.config.live_reserve,
                                 reconnect_max_delay_s=self.config.reconnect_max_delay_s,
                                 replay_max_per_s=self.config.replay_max_per_s)
            self._sender_thread = threading.Thread(target=self._run_sender, name=f"sender-{self.name}", daemon=True)
        log.info("%s: outbox %s (%d message(s) waiting), sender %s", self.name, self.path,
                 int(self._at_open.get("rows", 0)), "in this process" if self.sender else "in edge-inspect bridge")

    def start(self) -> None:
        super().start()
        if self._sender_thread is not None:
            self._sender_thread.start()

    def _run_sender(self) -> None:
        assert self.sender is not None
        try:
            self.sender.run(self._sender_stop)
        except Exception as exc:
            self.failure = f"{self.name} sender crashed: {type(exc).__name__}: {exc}"
            self.last_error = self.failure
            log.exception("%s: sender crashed; messages stay in the outbox for the next start", self.name)

    def close(self, timeout: float) -> int:
        """Stop the sender within ``timeout``; nothing is lost: what is unacknowledged stays in the outbox."""
        deadline = time.monotonic() + timeout
        self._sender_stop.set()
        if self.sender is not None:
            self.sender.wake.set()
        thread = self._sender_thread
        if thread is not None and thread.is_alive():
            thread.join(max(0.0, deadline - time.monotonic() - 0.2))
        if self.sender is not None and (thread is None or not thread.is_alive()):
            self.sender.close(max(0.0, deadline - time.monotonic() - 0.1))
            self.sender.outbox.close()
        return super().close(max(0.0, deadline - time.monotonic()))

    def shutdown(self) -> None:
        self._housekeeping(force=True)
        if self.house is not None:
            self._final = self.house.counters()
        for outbox in (self.appender, self.house):
            if outbox is not None:
                outbox.close()
        self.appender = self.house = None

    # ------------------------------------------------------------------ the publishing thread

    def submit(self, message: OutboundMessage) -> bool:
        """Append ``message`` to the outbox (durable when this returns); False, counted, if the append failed."""
        if message.kind not in self.kinds or self.appender is None:
            return True
        self._n += 1
        body = encode_body(message.payload, self.context.run_id, self._n)
        try:
            self.appender.append(message.kind, body)
        except OutboxError as exc:
            self._count_undelivered("outbox_error")
            self.last_error = str(exc)
            if time.monotonic() >= self._next_error_log:
                self._next_error_log = time.monotonic() + ERROR_LOG_EVERY_S
                log.error("%s: %s (counted as undelivered: outbox_error)", self.name, exc)
            return False
        if message.kind == "verdict":
            payload = message.payload
            self._handover.append(float(payload["latency_ms"]["publish"])
                                  + (time.time() - float(payload["t_publish"])) * 1000.0)
        if self.sender is not None:
            self.sender.wake.set()
        return True

    # ------------------------------------------------------------------ the output's own thread

    def deliver(self, message: OutboundMessage) -> None:  # never called: submit() does not queue
        raise NotImplementedError

    def idle(self) -> None:
        self._housekeeping()

    def _housekeeping(self, force: bool = False) -> None:
        house = self.house
        if house is None:
            return
        now = time.monotonic()
        if not force and now < self._next_house:
            return
        self._next_house = now + HOUSEKEEPING_S
        try:
            house.enforce_bounds(int(self.config.outbox.max_mb * 1024 * 1024), self.config.outbox.max_age_h * 3600.0)
            if force or now >= self._next_checkpoint:
                self._next_checkpoint = now + CHECKPOINT_S
                house.checkpoint()
        except Exception as exc:  # noqa: BLE001 - sqlite3.Error and OSError alike: logged, retried next time
            self.last_error = f"outbox housekeeping: {exc}"
            log.warning("%s: outbox housekeeping failed (%s); retried in %.0f s", self.name, exc, HOUSEKEEPING_S)

    # ------------------------------------------------------------------ figures

    def stats(self) -> dict[str, Any]:
        """The base shape from the outbox's own counters (valid whichever process sends), plus handover_ms."""
        with self._lock:
            local = dict(self._undelivered)
        house = self.house
        counters = house.counters() if house is not None else self._final
        start = self._at_open
        undelivered = {reason: int(counters.get(f"dropped:{reason}", 0) - start.get(f"dropped:{reason}", 0))
                       for reason in ("outbox_full", "expired")}
        undelivered = {reason: n for reason, n in undelivered.items() if n > 0}
        undelivered.update(local)
        if self.sender is not None:
            connected, last_error = self.sender.connected, self.sender.last_error or self.last_error
        else:
            fresh = time.time() - counters.get("sender_seen", 0.0) < SENDER_FRESH_S
            connected, last_error = fresh and bool(counters.get("sender_connected")), self.last_error
        handover = percentiles(list(self._handover))
        return {"delivered": int(counters.get("delivered", 0) - start.get("delivered", 0)),
                "undelivered": undelivered, "queued": int(counters.get("rows", 0)), "connected": connected,
                "last_error": last_error, "backlog_at_start": int(start.get("rows", 0)),
                "handover_ms": {"p50": handover["p50"], "p95": handover["p95"], "n": len(self._handover)}}
