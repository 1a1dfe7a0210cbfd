"""The Modbus server role: the station serves its registers and the PLC polls and writes them.

The datastore is pymodbus's ``SimDevice`` (the API pymodbus keeps for v4), used only as transport:
its ``action`` hook runs on the output's loop for every request, before the reply is built, so the
handshake's image stays the one source of truth. A read of the station block is answered from the
image as it is at that moment; a write of the PLC block is applied to the handshake before the PLC
gets its reply, so a trigger is taken (and an ack applied) within the request that carried it.
The station block and the reject coil are read-only for the PLC; the gap between the blocks is
not mapped (a read across it is an illegal-address exception, as on a real device).
"""

from __future__ import annotations

import logging

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge.outputs.plc.station import StationSide

log = logging.getLogger(__name__)

COIL_CODES = (1, 5, 15)
HOLDING_CODES = (3, 6, 16, 22, 23)


class ModbusServerIO:
    """A pymodbus TCP server whose every request goes through the handshake."""

    def __init__(self, output: StationSide) -> None:
        self.output = output
        config = output.config
        self.map = output.map
        self.address = (config.host, config.resolved_port)
        self.server: ModbusTcpServer | None = None
        self.connections = 0
        self._plc_words = [0] * self.map.plc_size

    def _device(self) -> SimDevice:
        rmap = self.map
        holding = [SimData(rmap.plc_base, count=rmap.plc_size, values=0, datatype=DataType.REGISTERS),
                   SimData(rmap.station_base, count=rmap.station_size, values=0, datatype=DataType.REGISTERS,
                           readonly=True)]
        coil = rmap.reject_coil if rmap.reject_coil is not None else 0
        coils = [SimData(coil, values=False, datatype=DataType.BITS, readonly=True)]
        inputs_bits = [SimData(0, values=False, datatype=DataType.BITS)]
        input_regs = [SimData(0, values=0, datatype=DataType.REGISTERS)]
        return SimDevice(id=0, simdata=(coils, inputs_bits, holding, input_regs), action=self._action)

    async def start(self) -> None:
        self.server = ModbusTcpServer(self._device(), address=self.address, trace_connect=self._connect)
        await self.server.serve_forever(background=True)  # RuntimeError when it cannot listen

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    def changed(self) -> None:
        """Nothing to push: every read is answered from the image."""

    def _connect(self, connected: bool) -> None:
        self.connections = max(0, self.connections + (1 if connected else -1))
        self.output.set_connected(self.connections > 0, None if connected or self.connections else
                                  "the PLC closed its connection")

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        rmap = self.map
        if function_code in COIL_CODES:
            if set_values is None and rmap.reject_coil is not None:
                index = rmap.reject_coil // 16 - start_address
                if 0 <= index < len(registers):
                    registers[index] = (1 << (rmap.reject_coil % 16)) if self.output.reject else 0
            return None
        if function_code not in HOLDING_CODES:
            return None
        if set_values is not None:
            for i, value in enumerate(set_values):
                offset = address + i - rmap.plc_base
                if 0 <= offset < rmap.plc_size:
                    self._plc_words[offset] = int(value)
            self.output.on_plc_words(list(self._plc_words))
            return None
        image = self.output.station_words()
        for i in range(count):
            offset = address + i - rmap.station_base
            if 0 <= offset < rmap.station_size:
                registers[address + i - start_address] = image[offset]
        return None
