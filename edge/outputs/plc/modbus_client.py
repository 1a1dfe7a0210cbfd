"""The Modbus client role: the station writes its results into the PLC and polls the PLC's words.

Many PLCs only act as Modbus servers, so the station goes to them: every ``poll_ms`` it reads the
PLC-to-station block (trigger, ack, part_id, clear_overrun), and it writes the whole station
block in one request (function 16, so the PLC never sees half a result) whenever the image
changed, at once, not at the next poll. A PLC that is absent, refuses, times out or restarts is
reconnected with a doubling delay; meanwhile ``connected`` is false (heartbeats, ``status``),
results wait in the handshake's buffer, and after the reconnect the first read is a baseline and
the full image is written again, so the handshake resumes where it stood.
"""

from __future__ import annotations

import asyncio
import logging

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from edge.outputs.plc.station import StationSide

log = logging.getLogger(__name__)


class PlcRefused(Exception):
    """The PLC answered a request with a Modbus exception."""


class ModbusClientIO:
    """Keeps a connection to the PLC and moves words both ways."""

    def __init__(self, output: StationSide) -> None:
        self.output = output
        self.config = output.config
        self.map = output.map
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.attempts = 0

    async def start(self) -> None:
        """Start connecting; a PLC that is not there yet is not a start-up failure."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def changed(self) -> None:
        self.wake.set()

    async def _run(self) -> None:
        config = self.config
        delay = config.reconnect_delay_s
        while True:
            client = AsyncModbusTcpClient(config.host, port=config.resolved_port, timeout=config.timeout_s,
                                          retries=0, reconnect_delay=0)
            try:
                if not await client.connect():
                    raise ConnectionError(f"cannot connect to {config.host}:{config.resolved_port}")
                self.attempts = 0
                delay = config.reconnect_delay_s
                self.output.set_connected(True)
                await self._session(client)
            except (TimeoutError, ModbusException, PlcRefused, ConnectionError, OSError) as exc:
                self.attempts += 1
                self.output.set_connected(False, f"{type(exc).__name__}: {exc}")
            finally:
                client.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, config.reconnect_max_delay_s)

    async def _session(self, client: AsyncModbusTcpClient) -> None:
        config, rmap = self.config, self.map
        unit = config.unit_id
        poll_s = config.poll_ms / 1000.0
        written: list[int] | None = None
        written_coil: bool | None = None
        baseline = True
        while True:
            reply = await client.read_holding_registers(rmap.plc_base, count=rmap.plc_size, device_id=unit)
            if reply.isError():
                raise PlcRefused(f"read of registers {rmap.plc_base}..{rmap.plc_base + rmap.plc_size - 1}: {reply}")
            self.output.on_plc_words(list(reply.registers), baseline)
            baseline = False
            self.wake.clear()
            written, written_coil = await self._flush(client, written, written_coil)
            try:
                await asyncio.wait_for(self.wake.wait(), poll_s)
            except TimeoutError:
                continue
            written, written_coil = await self._flush(client, written, written_coil)

    async def _flush(self, client: AsyncModbusTcpClient, written: list[int] | None,
                     written_coil: bool | None) -> tuple[list[int], bool | None]:
        """Write the station block (and the reject coil) if they differ from what the PLC holds."""
        config, rmap = self.config, self.map
        image = list(self.output.station_words())
        if image != written:
            reply = await client.write_registers(rmap.station_base, image, device_id=config.unit_id)
            if reply.isError():
                raise PlcRefused(f"write of registers {rmap.station_base}..: {reply}")
            written = image
        coil = self.output.reject
        if rmap.reject_coil is not None and coil != written_coil:
            reply = await client.write_coil(rmap.reject_coil, coil, device_id=config.unit_id)
            if reply.isError():
                raise PlcRefused(f"write of coil {rmap.reject_coil}: {reply}")
            written_coil = coil
        return written, written_coil
