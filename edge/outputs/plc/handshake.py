"""The trigger / results-valid / acknowledge handshake and its results buffer, without any I/O.

This is the convention PLC programmers know from vision sensors, written once and shared by the
Modbus server and client roles (they only move words in and out): the PLC raises ``trigger`` with a
``part_id``; the station takes it (``trigger_ack``), inspects, and presents the result with the part
id echoed and ``results_valid`` set; the PLC reads it and raises ``ack``; the station clears
``results_valid``; the PLC drops ``ack``, and only then is the next result presented. Both sides are
level-based, so a restart of either end (a PLC that re-writes its outputs every scan, a station
that re-writes its image after a reconnect) resumes the handshake instead of inventing an edge.

Results that arrive while one is presented wait in a bounded buffer. When it is full the oldest
*waiting* result is dropped, counted and ``overrun`` is set until the PLC clears it; the presented
result is never replaced, so a PLC can never acknowledge one part with another part's result.
Every verdict handed in is settled exactly once through ``settle``: acknowledged (None) or
dropped (``"overrun"``); what is still held at shutdown is the owner's to count.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

OK, NG, ERROR = 1, 2, 3


@dataclass(frozen=True)
class PlcResult:
    """One result as the PLC sees it; ``settles`` is False for a refused trigger (no verdict behind it)."""

    result: int
    part_id: int = 0
    seq: int = 0
    score_milli: int = 0
    normalized_milli: int = 0
    regions: int = 0
    settles: bool = True


def _milli(value: Any) -> int:
    if value is None or not math.isfinite(float(value)):
        return 0
    return max(0, round(float(value) * 1000))


def result_from_verdict(verdict: dict[str, Any]) -> PlcResult:
    """The PLC's view of a verdict payload: an error is never OK (result 3)."""
    code = ERROR if verdict.get("error") else (OK if verdict.get("verdict") == "OK" else NG)
    return PlcResult(result=code, part_id=int(verdict.get("part_id") or 0), seq=int(verdict["seq"]),
                     score_milli=_milli(verdict.get("score")),
                     normalized_milli=min(1000, _milli(verdict.get("normalized_score"))),
                     regions=len(verdict.get("regions") or ()))


class Handshake:
    """The station's side of the handshake; call it from one thread (the output's event loop).

    ``fire(part_id)`` asks the daemon for one frame and returns None, or why it refused (the part
    then gets an error result, so the PLC is never left waiting); ``fire`` None means free run:
    triggers are ignored. ``settle(reason)`` is called once per verdict-backed result.
    """

    def __init__(self, buffer_size: int, fire: Callable[[int], str | None] | None,
                 settle: Callable[[str | None], None]) -> None:
        self.buffer_size = buffer_size
        self.fire = fire
        self.settle = settle
        self.presented: PlcResult | None = None
        self.waiting: deque[PlcResult] = deque()
        self.inputs = {"part_id": 0, "trigger": 0, "ack": 0, "clear_overrun": 0}
        self.trigger_ack = False
        self.outstanding = 0  # triggers taken whose verdict has not come back
        self.overrun = False
        self.ready = False
        self.heartbeat = 0
        self.counts = {"ok_count": 0, "ng_count": 0, "error_count": 0, "overrun_count": 0, "trigger_count": 0}
        self.acknowledged = 0
        self.refused_triggers = 0
        self.last_refusal: str | None = None
        self.version = 0  # +1 on every change of the station's image

    # ------------------------------------------------------------------ from the PLC

    def update_inputs(self, values: dict[str, int], baseline: bool = False) -> None:
        """The PLC's words as just read or written. ``baseline``: the first read after a (re)connect.

        A ``clear_overrun`` already high at a baseline is not an edge (it was raised before).
        """
        previous_clear = self.inputs["clear_overrun"]
        self.inputs = {name: int(values.get(name, 0)) for name in self.inputs}
        if self.fire is not None:
            triggered = self.inputs["trigger"] != 0
            if triggered and not self.trigger_ack:
                self._take_trigger(self.inputs["part_id"])
            elif not triggered and self.trigger_ack:
                self.trigger_ack = False
                self._changed()
        if self.inputs["ack"] != 0:
            if self.presented is not None:
                presented, self.presented = self.presented, None
                self.acknowledged += 1
                self._changed()
                if presented.settles:
                    self.settle(None)
        else:
            self._present_next()
        if self.inputs["clear_overrun"] != 0 and previous_clear == 0 and not baseline and self.overrun:
            self.overrun = False
            self._changed()

    def _take_trigger(self, part_id: int) -> None:
        assert self.fire is not None
        self.trigger_ack = True
        self.counts["trigger_count"] += 1
        self._changed()
        refusal = self.fire(part_id)
        if refusal is None:
            self.outstanding += 1
        else:
            self.refused_triggers += 1
            self.last_refusal = refusal
            self.add_result(PlcResult(ERROR, part_id=part_id, settles=False))

    # ------------------------------------------------------------------ from the daemon

    def add_result(self, result: PlcResult) -> None:
        """A verdict (or a refused trigger's error) to present, or to queue behind the one presented."""
        if result.settles and self.outstanding:
            self.outstanding -= 1
        key = {OK: "ok_count", NG: "ng_count"}.get(result.result, "error_count")
        self.counts[key] += 1
        self._changed()
        if self.presented is None and not self.waiting and self.inputs["ack"] == 0:
            self.presented = result
            return
        if len(self.waiting) >= self.buffer_size:
            dropped = self.waiting.popleft() if self.waiting else result
            self.counts["overrun_count"] += 1
            self.overrun = True
            if dropped.settles:
                self.settle("overrun")
            if dropped is result:
                return
        self.waiting.append(result)

    def set_ready(self, ready: bool) -> None:
        if ready != self.ready:
            self.ready = ready
            self._changed()

    def beat(self) -> None:
        """The daemon published something: move the heartbeat counter."""
        self.heartbeat = (self.heartbeat + 1) & 0xFFFF
        self._changed()

    # ------------------------------------------------------------------ the image

    def _present_next(self) -> None:
        if self.presented is None and self.waiting:
            self.presented = self.waiting.popleft()
            self._changed()

    def _changed(self) -> None:
        self.version += 1

    def held(self) -> int:
        """Verdict-backed results presented or waiting (what a shutdown leaves undelivered)."""
        items = list(self.waiting) + ([self.presented] if self.presented is not None else [])
        return sum(r.settles for r in items)

    def station_values(self) -> dict[str, int]:
        """Every station-to-PLC field by name (see :mod:`edge.outputs.plc.registermap`)."""
        r = self.presented
        values = {"ready": int(self.ready), "busy": int(self.outstanding > 0), "trigger_ack": int(self.trigger_ack),
                  "results_valid": int(r is not None), "overrun": int(self.overrun),
                  "buffer_count": len(self.waiting), "heartbeat": self.heartbeat, **self.counts}
        if r is not None:
            values.update(result=r.result, part_id_echo=r.part_id, seq=r.seq, score_milli=r.score_milli,
                          normalized_milli=r.normalized_milli, regions=r.regions)
        return values

    def summary(self) -> dict[str, Any]:
        """The handshake's own counts, carried in the output's stats (heartbeats, ``stopped``)."""
        return {"acknowledged": self.acknowledged, "waiting": len(self.waiting),
                "presented_seq": self.presented.seq if self.presented is not None else None,
                "overrun": self.overrun, "refused_triggers": self.refused_triggers,
                "last_refusal": self.last_refusal, **self.counts}
