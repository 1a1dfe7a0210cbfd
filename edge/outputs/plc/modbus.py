"""The Modbus TCP output: the handshake's state on one event loop, moved by a server or a client role.

:class:`ModbusOutput` is what the daemon sees (a :class:`~edge.outputs.base.QueuedOutput`): its
sender thread posts each published message to the output's own loop and returns at once. A
verdict becomes a result in the :class:`~edge.outputs.plc.handshake.Handshake` and stays
``PENDING`` until the PLC acknowledges it (delivered) or the buffer overruns (undelivered,
``overrun``); heartbeats, camera status and the ``stopped`` event move the ``heartbeat`` counter
and the ``ready`` bit and count as delivered once applied. The role only moves words: the server
(:mod:`.modbus_server`) answers the PLC's requests from the handshake's image, the client
(:mod:`.modbus_client`) polls the PLC's words and writes the image into the PLC, reconnecting
with backoff. pymodbus is imported by those two modules only, when the output opens.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from edge.outputs.base import (
    PENDING,
    OutboundMessage,
    OutputContext,
    OutputError,
    Pending,
    QueuedOutput,
)
from edge.outputs.plc.config import ModbusConfig
from edge.outputs.plc.handshake import OK, Handshake, result_from_verdict
from edge.outputs.plc.loop import LoopThread
from edge.outputs.plc.registermap import RegisterMap

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
# pymodbus logs every failed request with a dump of its last frames; this output reports the same
# events itself, once per change of the connection state, with the reason.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
STOP_TIMEOUT_S = 3.0


class RoleIO(Protocol):
    """What a role does with the output's state: start, stop, and hear that the image changed."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def changed(self) -> None: ...


class ModbusOutput(QueuedOutput):
    """The trigger/result handshake over Modbus TCP, as server or client (``outputs.plc.modbus``)."""

    name = "plc_modbus"

    def __init__(self, config: ModbusConfig, context: OutputContext, queue_size: int = 256) -> None:
        super().__init__(queue_size=queue_size)
        self.config = config
        self.context = context
        self.map = RegisterMap.from_config(config)
        self.loop = LoopThread("plc-modbus")
        self.handshake = Handshake(config.buffer_size, None, self.settle_pending)
        self.reject = False
        self.camera_up = True
        self.paused = False
        self.running = True
        self.io: RoleIO | None = None
        self._reject_timer: asyncio.TimerHandle | None = None
        self._image_version = -1
        self._image: list[int] = [0] * self.map.station_size

    # ------------------------------------------------------------------ QueuedOutput

    def open(self) -> None:
        status = self._daemon_status()
        if status.get("acquisition") == "on_demand":
            self.handshake.fire = self._fire
        self.camera_up = bool((status.get("camera") or {}).get("up", True))
        self.paused = status.get("state") == "paused"
        if self.config.role == "server":
            from edge.outputs.plc.modbus_server import ModbusServerIO

            self.io = ModbusServerIO(self)
        else:
            from edge.outputs.plc.modbus_client import ModbusClientIO

            self.io = ModbusClientIO(self)
        self.loop.start()
        try:
            self.loop.run(self.io.start(), START_TIMEOUT_S)
        except (OSError, RuntimeError, TimeoutError) as exc:
            self.loop.stop(STOP_TIMEOUT_S)
            raise OutputError(f"modbus {self.config.role} on {self.config.host}:{self.config.resolved_port}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
        self.loop.call(self._refresh)
        log.info("PLC modbus %s on %s:%d (PLC block at %d, station block at %d, triggers %s)", self.config.role,
                 self.config.host, self.config.resolved_port, self.config.plc_base, self.config.station_base,
                 "on" if self.handshake.fire else "ignored (free run)")

    def deliver(self, message: OutboundMessage) -> Pending | None:
        if message.kind == "verdict":
            self.loop.call(self._on_verdict, message.payload)
            return PENDING
        self.loop.call(self._on_message, message.kind, message.payload)
        return None

    def shutdown(self) -> None:
        if self.io is not None:
            try:
                self.loop.run(self.io.stop(), STOP_TIMEOUT_S)
            except (OSError, RuntimeError, TimeoutError) as exc:
                log.warning("modbus %s did not stop cleanly: %s", self.config.role, exc)
        if not self.loop.stop(STOP_TIMEOUT_S):
            log.warning("modbus loop thread did not end within %.1f s", STOP_TIMEOUT_S)

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        stats["handshake"] = self.handshake.summary()
        return stats

    # ------------------------------------------------------------------ the daemon side (loop thread)

    def _daemon_status(self) -> dict[str, Any]:
        handler = self.context.handlers.get("status")
        if handler is None:
            return {}
        try:
            return handler({})
        except Exception as exc:  # noqa: BLE001 - a status that cannot be read must not stop the start
            log.warning("PLC output: daemon status unavailable (%s); assuming free run", exc)
            return {}

    def _fire(self, part_id: int) -> str | None:
        """The PLC's trigger as the daemon's ``trigger`` command; None, or why it was refused."""
        try:
            self.context.handlers["trigger"]({"part_id": part_id})
        except Exception as exc:  # noqa: BLE001 - any refusal becomes an error result for that part
            log.warning("PLC trigger for part %d refused: %s", part_id, exc)
            return f"{type(exc).__name__}: {exc}"
        return None

    def _on_verdict(self, verdict: dict[str, Any]) -> None:
        result = result_from_verdict(verdict)
        self.handshake.add_result(result)
        self.handshake.beat()
        if result.result != OK:
            self._pulse_reject()
        self._changed()

    def _on_message(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "heartbeat":
            self.camera_up = payload.get("camera") == "up"
            self.paused = payload.get("state") == "paused"
            self.handshake.beat()
        elif kind == "status":
            self.camera_up = payload.get("camera") == "up"
        elif kind == "event" and payload.get("event") == "stopped":
            self.running = False
        self._refresh()

    def _pulse_reject(self) -> None:
        if self.config.reject_coil is None:
            return
        self.reject = True
        if self._reject_timer is not None:
            self._reject_timer.cancel()
        self._reject_timer = asyncio.get_running_loop().call_later(self.config.reject_pulse_ms / 1000.0,
                                                                   self._end_reject)

    def _end_reject(self) -> None:
        self.reject = False
        self._reject_timer = None
        self._changed()

    # ------------------------------------------------------------------ for the roles (loop thread)

    def set_connected(self, connected: bool, error: str | None = None) -> None:
        if connected != self.connected:
            log.log(logging.INFO if connected else logging.WARNING, "PLC modbus %s: %s", self.config.role,
                    "connected" if connected else f"connection lost ({error})")
        self.connected = connected
        if error:
            self.last_error = error
        self._refresh()

    def on_plc_words(self, words: list[int], baseline: bool = False) -> None:
        """The PLC block as just written (server) or read (client)."""
        self.handshake.update_inputs(self.map.decode_plc(words), baseline)
        self._changed()

    def station_words(self) -> list[int]:
        """The station block as the PLC must see it now."""
        if self._image_version != self.handshake.version:
            self._image = self.map.encode_station(self.handshake.station_values())
            self._image_version = self.handshake.version
        return self._image

    def _refresh(self) -> None:
        link_ok = self.config.role == "server" or self.connected
        self.handshake.set_ready(self.camera_up and not self.paused and self.running and link_ok)
        self._changed()

    def _changed(self) -> None:
        if self.io is not None:
            self.io.changed()
