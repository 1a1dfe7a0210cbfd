"""The Modbus register map: one table that the server, the client, ``edge-inspect plc-map`` and the docs share.

A PLC programmer imports the map, so it is data, not code spread over a server: each field has a
name, a direction, an offset in its block, a width and a meaning, and the addresses follow from
the two configurable base addresses. Everything is a holding register (function codes 3, 6, 16)
except the reject coil (1, 5), one 16-bit register per flag so any PLC can read the block in one
request; 32-bit values take two registers in the configured word order. Addresses are 0-based
(PDU); ``modicon`` gives the 4xxxx / 0xxxx reference many PLC tools use (address + 40001 / 1).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Direction = Literal["plc_to_station", "station_to_plc"]
U16 = 0xFFFF
U32 = 0xFFFFFFFF


class MapSettings(Protocol):
    """The settings the map depends on (what ``outputs.plc.modbus`` holds)."""

    @property
    def plc_base(self) -> int: ...

    @property
    def station_base(self) -> int: ...

    @property
    def word_order(self) -> str: ...

    @property
    def part_id_bits(self) -> int: ...

    @property
    def reject_coil(self) -> int | None: ...


@dataclass(frozen=True)
class MapField:
    """One named value in a block: ``words`` registers from ``offset``."""

    name: str
    offset: int
    words: int
    meaning: str


# PLC -> station: the PLC writes these; the station only reads them.
PLC_FIELDS = (
    MapField("part_id", 0, 2, "Part number for the next trigger; write it before (or with) trigger. Echoed in "
             "part_id_echo with that part's result."),
    MapField("trigger", 2, 1, "Set non-zero to request one inspection (software-trigger mode) once trigger_ack is 0; "
             "drop it to 0 when trigger_ack is 1. Ignored in free run."),
    MapField("ack", 3, 1, "Set non-zero after reading a result (results_valid 1); drop it to 0 when results_valid "
             "is 0. The next result is presented only while ack is 0."),
    MapField("clear_overrun", 4, 1, "A 0 -> non-zero change clears overrun (overrun_count keeps counting)."),
)
# station -> PLC: the station writes these; read-only for the PLC in the server role.
STATION_FIELDS = (
    MapField("ready", 0, 1, "1 while the station can inspect: bundle passed its self-test, camera up, not paused "
             "and (client role) the PLC connection up."),
    MapField("busy", 1, 1, "1 while a trigger is being inspected (triggered, no verdict yet)."),
    MapField("trigger_ack", 2, 1, "1 when a trigger was taken (its part_id latched); back to 0 after the PLC drops "
             "trigger."),
    MapField("results_valid", 3, 1, "1 while the result fields below hold a result not yet acknowledged."),
    MapField("result", 4, 1, "1 OK, 2 NG, 3 error (the part could not be inspected: never OK); 0 when none."),
    MapField("overrun", 5, 1, "1 after a result was dropped because the buffer was full, until clear_overrun."),
    MapField("buffer_count", 6, 1, "Results waiting behind the one presented."),
    MapField("heartbeat", 7, 1, "+1 (wrapping at 65535) for every message the daemon publishes (verdicts and "
             "heartbeats at least every publish.heartbeat_s): stops moving when the daemon does."),
    MapField("part_id_echo", 8, 2, "The part_id of the trigger this result answers (0 in free run)."),
    MapField("seq", 10, 2, "The verdict's seq (0 for a trigger the daemon refused)."),
    MapField("score_milli", 12, 2, "Raw anomaly score x 1000, rounded, saturating at 2^32-1 (0 when not inspected)."),
    MapField("normalized_milli", 14, 1, "Normalised score 0..1000 (500 at the threshold; 0 when not inspected)."),
    MapField("regions", 15, 1, "Number of NG regions (saturating at 65535)."),
    MapField("ok_count", 16, 2, "OK results since start."),
    MapField("ng_count", 18, 2, "NG results since start."),
    MapField("error_count", 20, 2, "Error results since start."),
    MapField("overrun_count", 22, 2, "Results dropped by a full buffer since start."),
    MapField("trigger_count", 24, 2, "Triggers taken since start."),
)
PLC_BLOCK_SIZE = max(f.offset + f.words for f in PLC_FIELDS)
STATION_BLOCK_SIZE = max(f.offset + f.words for f in STATION_FIELDS)
WIDE_32 = {"seq", "score_milli", "ok_count", "ng_count", "error_count", "overrun_count", "trigger_count"}
PART_ID_FIELDS = {"part_id", "part_id_echo"}


class RegisterMap:
    """Addresses, encoding and decoding of both blocks for one configuration."""

    def __init__(self, plc_base: int = 0, station_base: int = 100, word_order: str = "big", part_id_bits: int = 32,
                 reject_coil: int | None = 0) -> None:
        self.plc_base = plc_base
        self.station_base = station_base
        self.word_order = word_order
        self.part_id_bits = part_id_bits
        self.reject_coil = reject_coil
        self.plc_size = PLC_BLOCK_SIZE
        self.station_size = STATION_BLOCK_SIZE
        self._plc = {f.name: f for f in PLC_FIELDS}
        self._station = {f.name: f for f in STATION_FIELDS}

    @classmethod
    def from_config(cls, config: MapSettings) -> RegisterMap:
        return cls(config.plc_base, config.station_base, config.word_order, config.part_id_bits, config.reject_coil)

    # ------------------------------------------------------------------ types

    def width(self, name: str) -> int:
        """Bits of the value of field ``name`` (16 or 32)."""
        if name in PART_ID_FIELDS:
            return self.part_id_bits
        return 32 if name in WIDE_32 else 16

    def _words(self, value: int, bits: int, words: int) -> list[int]:
        value = int(value) & (U32 if bits == 32 else U16)
        if bits == 16:
            return [value] + [0] * (words - 1)
        high, low = value >> 16, value & U16
        return [high, low] if self.word_order == "big" else [low, high]

    def _value(self, words: list[int], bits: int) -> int:
        if bits == 16:
            return words[0] & U16
        high, low = (words[0], words[1]) if self.word_order == "big" else (words[1], words[0])
        return ((high & U16) << 16) | (low & U16)

    # ------------------------------------------------------------------ blocks

    def encode_station(self, values: dict[str, int]) -> list[int]:
        """The station block's registers for ``values`` (missing fields are 0; values saturate at their width)."""
        block = [0] * self.station_size
        for f in STATION_FIELDS:
            bits = self.width(f.name)
            value = max(0, int(values.get(f.name, 0)))
            if f.name not in ("heartbeat",):  # the heartbeat wraps; everything else saturates
                value = min(value, U32 if bits == 32 else U16)
            block[f.offset:f.offset + f.words] = self._words(value, bits, f.words)
        return block

    def decode_station(self, block: list[int]) -> dict[str, int]:
        """Field values from a station block as a PLC reads it (for tests and the bench)."""
        return {f.name: self._value(block[f.offset:f.offset + f.words], self.width(f.name)) for f in STATION_FIELDS}

    def decode_plc(self, block: list[int]) -> dict[str, int]:
        """Field values from the PLC block's registers."""
        return {f.name: self._value(block[f.offset:f.offset + f.words], self.width(f.name)) for f in PLC_FIELDS}

    def encode_plc(self, values: dict[str, int]) -> list[int]:
        """The PLC block's registers for ``values`` (what a PLC writes; for tests and the bench)."""
        block = [0] * self.plc_size
        for f in PLC_FIELDS:
            block[f.offset:f.offset + f.words] = self._words(int(values.get(f.name, 0)), self.width(f.name), f.words)
        return block

    def address(self, name: str) -> int:
        """The 0-based holding-register address of field ``name``."""
        if name in self._plc:
            return self.plc_base + self._plc[name].offset
        return self.station_base + self._station[name].offset

    # ------------------------------------------------------------------ the printable map

    def rows(self) -> list[dict[str, Any]]:
        """One row per field (and the reject coil), in address order within each block."""
        rows = []
        for direction, base, fields in (("plc_to_station", self.plc_base, PLC_FIELDS),
                                        ("station_to_plc", self.station_base, STATION_FIELDS)):
            for f in fields:
                bits = self.width(f.name)
                words = 1 if bits == 16 else 2
                order = "" if words == 1 else f" ({'high' if self.word_order == 'big' else 'low'} word first)"
                reserved = f" (register {base + f.offset + 1} reserved)" if words < f.words else ""
                rows.append({"name": f.name, "direction": direction, "table": "holding_register",
                             "address": base + f.offset, "modicon": 40001 + base + f.offset, "registers": words,
                             "type": f"uint{bits}", "meaning": f.meaning + reserved + order})
        if self.reject_coil is not None:
            rows.append({"name": "reject", "direction": "station_to_plc", "table": "coil", "address": self.reject_coil,
                         "modicon": 1 + self.reject_coil, "registers": 1, "type": "bool",
                         "meaning": "Pulsed on for every NG or error verdict (outputs.plc.modbus.reject_pulse_ms)."})
        return rows

    def to_csv(self) -> str:
        rows = self.rows()
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()

    def to_json(self) -> str:
        return json.dumps({"word_order": self.word_order, "part_id_bits": self.part_id_bits,
                           "addressing": "0-based PDU addresses; modicon = 40001 + address (coils: 1 + address)",
                           "fields": self.rows()}, indent=2)

    def to_table(self) -> str:
        """A fixed-width table for a terminal."""
        lines = [f"{'address':>7} {'modicon':>7}  {'name':<16} {'type':<7} {'dir':<6} meaning"]
        for row in self.rows():
            arrow = "PLC>" if row["direction"] == "plc_to_station" else ">PLC"
            table = "coil " if row["table"] == "coil" else ""
            lines.append(f"{row['address']:>7} {row['modicon']:>7}  {table + row['name']:<16} {row['type']:<7} "
                         f"{arrow:<6} {row['meaning']}")
        return "\n".join(lines) + "\n"
