"""The PLC side of the handshake, for the PLC bench and the tests: a small PLC program and two drivers.

A test of the hand-off is only worth something against a real Modbus peer doing what a PLC does,
so :class:`PlcProgram` is the ladder logic of a PLC that feeds parts to a vision station (raise
trigger with a part id, drop it on trigger_ack; read a result when results_valid, ack it, drop the
ack when results_valid falls) and records what it saw and when, and the drivers run it against the
station over a real socket: :class:`ClientDriver` polls a station in the ``server`` role with a
pymodbus client; :class:`PlcServer` is a pymodbus server standing in for a PLC that the station (in
the ``client`` role) writes into, and can be restarted mid-run. Like a PLC, the program writes its
whole output image every scan, so a restarted PLC re-asserts its trigger and ack.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edge.outputs.plc.loop import LoopThread
from edge.outputs.plc.registermap import RegisterMap


@dataclass(frozen=True)
class SeenResult:
    """One result as the PLC read it, with when (epoch seconds, host clock)."""

    part_id: int
    seq: int
    result: int
    t_seen: float
    t_trigger: float | None
    values: dict[str, int]


class PlcProgram:
    """Feeds ``parts`` to the station, at most ``in_flight`` without a result, and reads every result."""

    def __init__(self, parts: Iterable[int], in_flight: int = 1) -> None:
        self.to_trigger: deque[int] = deque(parts)
        self.total = len(self.to_trigger)
        self.in_flight = in_flight
        self.out = {"part_id": 0, "trigger": 0, "ack": 0, "clear_overrun": 0}
        self.t_trigger: dict[int, float] = {}
        self.results: list[SeenResult] = []
        self.acknowledging = True
        self.last: dict[str, int] = {}
        self.scans = 0
        self._lock = threading.Lock()

    def scan(self, station: dict[str, int], now: float | None = None) -> dict[str, int]:
        """One PLC cycle on the station's words; the PLC's words to write back."""
        now = time.time() if now is None else now
        with self._lock:
            self.scans += 1
            self.last = station
            out = self.out
            if out["ack"]:
                if not station["results_valid"]:
                    out["ack"] = 0
            elif station["results_valid"] and self.acknowledging:
                part = station["part_id_echo"]
                self.results.append(SeenResult(part, station["seq"], station["result"], now,
                                               self.t_trigger.get(part), dict(station)))
                out["ack"] = 1
            if out["trigger"]:
                if station["trigger_ack"]:
                    out["trigger"] = 0
            elif (self.to_trigger and station["ready"] and not station["trigger_ack"]
                  and len(self.t_trigger) - len(self.results) < self.in_flight):
                part = self.to_trigger.popleft()
                out["part_id"], out["trigger"] = part, 1
                self.t_trigger[part] = now
            return dict(out)

    def feed(self, parts: Iterable[int], in_flight: int | None = None) -> None:
        """More parts to trigger (and, optionally, a new limit of triggers without a result)."""
        with self._lock:
            new = list(parts)
            self.to_trigger.extend(new)
            self.total += len(new)
            if in_flight is not None:
                self.in_flight = in_flight

    def set_acknowledging(self, acknowledging: bool) -> None:
        """A PLC that stops (or resumes) reading results: results_valid is then left standing."""
        with self._lock:
            self.acknowledging = acknowledging

    def clear_overrun(self, high: bool) -> None:
        with self._lock:
            self.out["clear_overrun"] = int(high)

    def done(self) -> bool:
        """Every part triggered and answered."""
        with self._lock:
            return not self.to_trigger and len(self.results) >= self.total

    def snapshot(self) -> tuple[list[SeenResult], dict[str, int]]:
        with self._lock:
            return list(self.results), dict(self.last)


class ClientDriver:
    """Runs a :class:`PlcProgram` as a Modbus client polling a station in the server role."""

    def __init__(self, program: PlcProgram, rmap: RegisterMap, host: str, port: int, scan_s: float = 0.0) -> None:
        from pymodbus.client import ModbusTcpClient

        self.program = program
        self.map = rmap
        self.client = ModbusTcpClient(host, port=port, timeout=2, retries=1)
        self.scan_s = scan_s
        self.stop = threading.Event()
        self.error: str | None = None
        self._thread = threading.Thread(target=self._main, name="plc-client", daemon=True)

    def read_station(self) -> dict[str, int]:
        reply = self.client.read_holding_registers(self.map.station_base, count=self.map.station_size)
        if reply.isError():
            raise RuntimeError(f"station refused a read: {reply}")
        return self.map.decode_station(list(reply.registers))

    def start(self) -> ClientDriver:
        self._thread.start()
        return self

    def _main(self) -> None:
        written: list[int] | None = None
        try:
            while not self.stop.is_set():
                if not self.client.connected and not self.client.connect():
                    self.stop.wait(0.05)
                    continue
                out = self.map.encode_plc(self.program.scan(self.read_station()))
                if out != written:
                    reply = self.client.write_registers(self.map.plc_base, out)
                    if reply.isError():
                        raise RuntimeError(f"station refused a write: {reply}")
                    written = out
                if self.scan_s:
                    self.stop.wait(self.scan_s)
        except Exception as exc:  # noqa: BLE001 - reported to the test or bench that runs the driver
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.client.close()

    def close(self) -> None:
        self.stop.set()
        self._thread.join(10)


class PlcServer:
    """A pymodbus server standing in for a PLC: the station (client role) writes into it; restartable.

    Its program scans every ``scan_s`` on the server's loop, reading the station block the station
    wrote and writing its own block, which the station polls. :meth:`restart` closes the server and
    opens a new one on the same port with zeroed registers, as a PLC whose comms restarted.
    """

    def __init__(self, program: PlcProgram, rmap: RegisterMap, port: int, scan_s: float = 0.001) -> None:
        self.program = program
        self.map = rmap
        self.port = port
        self.scan_s = scan_s
        self.loop = LoopThread("plc-server")
        self.server: Any = None
        self.station = [0] * rmap.station_size
        self.plc = [0] * rmap.plc_size
        self.coil_writes: list[tuple[float, bool]] = []
        self.station_writes = 0
        self.restarts = 0
        self._scanner: asyncio.Task[None] | None = None

    async def _open(self) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        rmap = self.map
        holding = [SimData(rmap.plc_base, count=rmap.plc_size, values=0, datatype=DataType.REGISTERS),
                   SimData(rmap.station_base, count=rmap.station_size, values=0, datatype=DataType.REGISTERS)]
        coils = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
        device = SimDevice(id=0, simdata=(coils, [SimData(0, values=False, datatype=DataType.BITS)], holding,
                                          [SimData(0, values=0, datatype=DataType.REGISTERS)]), action=self._action)
        self.server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
        await self.server.serve_forever(background=True)
        if self._scanner is None:
            self._scanner = asyncio.get_running_loop().create_task(self._scan())

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: list[Any] | None) -> None:
        rmap = self.map
        if function_code in (5, 15) and set_values is not None:
            self.coil_writes.append((time.time(), bool(set_values[0])))
            return
        if function_code not in (3, 6, 16):
            return
        if set_values is not None:
            for i, value in enumerate(set_values):
                offset = address + i - rmap.station_base
                if 0 <= offset < rmap.station_size:
                    self.station[offset] = int(value)
            self.station_writes += 1
            self._run_program()
            return
        for i in range(count):
            offset = address + i - rmap.plc_base
            if 0 <= offset < rmap.plc_size:
                registers[address + i - start_address] = self.plc[offset]

    def _run_program(self) -> None:
        self.plc = self.map.encode_plc(self.program.scan(self.map.decode_station(self.station)))

    async def _scan(self) -> None:
        while True:
            self._run_program()
            await asyncio.sleep(self.scan_s)

    async def _close(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    def start(self) -> PlcServer:
        self.loop.start()
        self.loop.run(self._open(), 30)
        return self

    def restart(self, down_s: float = 0.5) -> None:
        """Close the server (connections drop), stay down ``down_s``, come back with the memory retained."""
        self.loop.run(self._close(), 30)
        time.sleep(down_s)  # the PLC is down for this long: the outage being simulated, not a synchronisation
        self.loop.run(self._open(), 30)
        self.restarts += 1

    def close(self) -> None:
        try:
            self.loop.run(self._close(), 30)
        finally:
            self.loop.stop(5)
