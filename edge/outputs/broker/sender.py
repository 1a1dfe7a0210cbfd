"""The sender: reads the outbox, sends to the broker, deletes what the broker acknowledged.

One loop serves MQTT and Kafka alike through a small :class:`Transport` interface (connect, send,
service the network and return the acknowledged outbox ids), so the replay rules are written once:

- when a connection comes up, everything still in the outbox up to that moment (the *watermark*)
  is the **replay lane**: sent oldest first, each marked ``"replay": true``, using at most
  ``window - live_reserve`` unacknowledged slots;
- what is appended after the watermark is the **live lane**: sent first at every turn of the
  loop, unmarked, so a backlog of ten minutes never delays a live verdict by more than one turn
  (a few ms) plus the replay messages already ahead of it on the connection (at most
  ``window - live_reserve``). Each lane goes out in outbox order; a consumer that needs one order
  sorts on ``seq`` (or the outbox's ``delivery.n``);
- the replay is paced at ``replay_max_per_s`` (0 = as fast as the broker acknowledges): past the
  sender, a broker delivers to each consumer in order, so a live message also waits behind every
  replayed one a slow consumer has not read yet; the pace keeps that queue short for consumers
  that read faster than it;
- a message is deleted only once acknowledged (MQTT PUBACK, Kafka delivery report); a lost
  connection, a delivery error or an acknowledgement that does not come within ``ack_timeout_s``
  drops the connection and the next one replays whatever is still there (at least once: the
  consumer de-duplicates on the key every message carries).

It runs as a thread in the daemon (``outputs.broker.run: thread``) or in the ``edge-inspect
bridge`` process (``run: bridge``); either way it never touches the inspection path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from edge.outputs.broker.outbox import Outbox, Row

log = logging.getLogger(__name__)

ACK_FLUSH_N = 200  # acknowledged ids deleted in one transaction at the latest after this many
ACK_FLUSH_S = 0.02  # ... or after this long
SERVICE_S = 0.002  # network wait per turn while messages are unacknowledged
IDLE_S = 0.5  # wait for new rows when nothing is in flight (thread mode is woken at once by an append)
MARK_EVERY_S = 1.0


class TransportDown(Exception):
    """The connection is gone or unusable; the message says why (it becomes ``last_error``)."""


class Transport(Protocol):
    """What the sender needs from a broker client (see :mod:`.mqtt` and :mod:`.kafka`)."""

    name: str
    window: int  # unacknowledged messages allowed at once

    def connect(self) -> None:
        """Open a new connection (blocking, bounded); TransportDown if the broker cannot be reached."""

    def send(self, row: Row, replay: bool) -> None:
        """Hand one message to the client (asynchronous); TransportDown if the connection is gone."""

    def service(self, timeout_s: float) -> list[int]:
        """Process network events for up to ``timeout_s``; the outbox ids acknowledged since the last call."""

    def disconnect(self) -> None:
        """Drop the connection and anything the client still holds (the outbox keeps the messages)."""

    def close(self, timeout_s: float) -> None:
        """A clean goodbye (MQTT: the offline status) within ``timeout_s``, then release everything."""


def mark_replay(body: bytes) -> bytes:
    """The body with its ``delivery.replay`` set to true (the flag is the first one in the body)."""
    return body.replace(b'"replay":false', b'"replay":true', 1)


class Sender:
    """Drains one outbox into one transport until ``stop`` is set."""

    def __init__(self, outbox: Outbox, transport: Transport, *, live_reserve: int = 16, ack_timeout_s: float = 30.0,
                 reconnect_delay_s: float = 0.5, reconnect_max_delay_s: float = 10.0, idle_s: float = IDLE_S,
                 replay_max_per_s: float = 0.0, drain_s: float = 0.5,
                 on_tick: Callable[[], None] | None = None) -> None:
        self.outbox = outbox
        self.drain_s = drain_s
        self.replay_max_per_s = replay_max_per_s
        self._replay_budget = 0.0
        self._budget_at = time.monotonic()
        self.transport = transport
        self.live_reserve = max(1, min(live_reserve, transport.window - 1))
        self.ack_timeout_s = ack_timeout_s
        self.reconnect_delay_s = reconnect_delay_s
        self.reconnect_max_delay_s = reconnect_max_delay_s
        self.idle_s = idle_s
        self.on_tick = on_tick
        self.wake = threading.Event()
        self.connected = False
        self.last_error: str | None = None
        self.sent = 0
        self.replayed = 0
        self.connections = 0
        self._in_flight: dict[int, float] = {}  # outbox id -> time sent (monotonic)
        self._acked: list[int] = []
        self._acked_since = 0.0
        self._watermark = 0
        self._replay_cursor = 0
        self._live_cursor = 0
        self._next_mark = 0.0

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        delay = self.reconnect_delay_s
        while not stop.is_set():
            self._tick()
            if not self.connected:
                try:
                    self._connect()
                    delay = self.reconnect_delay_s
                except TransportDown as exc:
                    self._note_error(str(exc))
                    stop.wait(delay)
                    delay = min(delay * 2, self.reconnect_max_delay_s)
                continue
            try:
                self._turn()
            except TransportDown as exc:
                self._lost(str(exc))
        self._drain()
        self._flush_acks(force=True)
        self._mark()

    def _drain(self) -> None:
        """At stop: send what is still waiting (the ``stopped`` event above all) and collect acknowledgements,
        within ``drain_s``; whatever is left stays in the outbox for the next start."""
        deadline = time.monotonic() + self.drain_s
        while self.connected and time.monotonic() < deadline:
            try:
                sent = self._fill()
                acked = self.transport.service(SERVICE_S)
            except TransportDown:
                return
            for row_id in acked:
                if self._in_flight.pop(row_id, None) is not None:
                    self._acked.append(row_id)
            if not sent and not self._in_flight:
                return

    def _turn(self) -> None:
        self.wake.clear()  # before reading: an append after this point wakes the next wait
        sent = self._fill()
        acked = self.transport.service(SERVICE_S if self._in_flight else 0.0)
        for row_id in acked:
            if self._in_flight.pop(row_id, None) is not None:
                if not self._acked:
                    self._acked_since = time.monotonic()
                self._acked.append(row_id)
        self._flush_acks()
        if self._in_flight and time.monotonic() - min(self._in_flight.values()) > self.ack_timeout_s:
            raise TransportDown(f"no acknowledgement within {self.ack_timeout_s:g} s")
        if not sent and not self._in_flight and not acked:
            self._flush_acks(force=True)
            replay_waits = self._replay_cursor < self._watermark  # held back by the replay pace only
            self.wake.wait(SERVICE_S if replay_waits else self.idle_s)

    def _fill(self) -> int:
        """Send live rows first, then replay rows into the slots left; how many were sent."""
        room = self.transport.window - len(self._in_flight)
        sent = 0
        for row in self.outbox.rows_after(self._live_cursor, room):
            self._send(row, replay=False)
            self._live_cursor = row.id
            sent += 1
        replay_room = min(room - sent, self.transport.window - self.live_reserve - len(self._in_flight))
        if self.replay_max_per_s > 0 and self._replay_cursor < self._watermark:
            now = time.monotonic()
            burst = max(1.0, self.replay_max_per_s * 0.02)  # at most 20 ms worth at once
            self._replay_budget = min(burst, self._replay_budget + (now - self._budget_at) * self.replay_max_per_s)
            self._budget_at = now
            replay_room = min(replay_room, int(self._replay_budget))
        if self._replay_cursor < self._watermark and replay_room > 0:
            rows = self.outbox.rows_after(self._replay_cursor, replay_room, up_to=self._watermark)
            for row in rows:
                self._send(row, replay=True)
                self._replay_cursor = row.id
                sent += 1
            self._replay_budget -= len(rows)
            if not rows:
                self._replay_cursor = self._watermark
                log.info("%s: replay done (%d message(s) this connection)", self.transport.name, self.replayed)
        return sent

    def _send(self, row: Row, replay: bool) -> None:
        self.transport.send(row, replay)
        self._in_flight[row.id] = time.monotonic()
        self.sent += 1
        if replay:
            self.replayed += 1

    # ------------------------------------------------------------------ connection state

    def _connect(self) -> None:
        self.transport.connect()
        self._flush_acks(force=True)
        self._in_flight.clear()
        self._watermark = self.outbox.max_id()
        self._replay_cursor = 0
        self._live_cursor = self._watermark
        self.replayed = 0
        self.connected = True
        self.connections += 1
        self._mark()
        backlog = self.outbox.counters().get("rows", 0)
        log.info("%s: connected; %d message(s) in the outbox to replay", self.transport.name, int(backlog))

    def _lost(self, reason: str) -> None:
        log.warning("%s: connection lost (%s); %d unacknowledged message(s) stay in the outbox",
                    self.transport.name, reason, len(self._in_flight))
        self._note_error(reason)
        self._flush_acks(force=True)
        self._in_flight.clear()
        self.connected = False
        self.transport.disconnect()
        self._mark()

    def _note_error(self, reason: str) -> None:
        if reason != self.last_error:
            log.warning("%s: %s", self.transport.name, reason)
        self.last_error = reason

    def _flush_acks(self, force: bool = False) -> None:
        if not self._acked:
            return
        if force or len(self._acked) >= ACK_FLUSH_N or time.monotonic() - self._acked_since >= ACK_FLUSH_S:
            self.outbox.acknowledge(self._acked)
            self._acked = []

    def _tick(self) -> None:
        now = time.monotonic()
        if now >= self._next_mark:
            self._next_mark = now + MARK_EVERY_S
            self._mark()
            if self.on_tick is not None:
                self.on_tick()

    def _mark(self) -> None:
        self.outbox.mark_sender(self.connected)

    def close(self, timeout_s: float) -> None:
        self.transport.close(timeout_s)
