"""``edge-inspect fleet``: every station on the plant's broker in one live table.

A plant engineer with fifty stations wants to see at once which one stopped, which one rejects
too much and which one lost verdicts, without a dashboard project. This reads every station's
messages from the broker (:mod:`.reader`), de-duplicates verdicts on ``(station, run_id, seq)``
(an outbox replays at least once), and keeps per station: parts, NG, yield, error verdicts, last
seen, latency p95 (the verdict's own capture-to-publish ``latency_ms.total``), broker delay p95
(publish to arrival here), missing seq (gaps, except the jump to a run's first verdict, which is
numbers a crash left unused), duplicates and replayed messages. ``--json`` prints the same as one
JSON object per refresh, for scripts.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import click

from edge.ops.latency import percentiles
from edge.outputs.broker.reader import (
    BrokerMessage,
    KafkaReader,
    MqttReader,
    ReaderError,
)

WINDOW = 1000  # latencies kept per station for the p95
MAX_SEQS = 200_000  # verdict keys kept per station for de-duplication and gaps (oldest forgotten)
EXIT_STARTUP = 2


@dataclass
class Station:
    """What the table shows for one station."""

    parts: int = 0
    ng: int = 0
    errors: int = 0
    duplicates: int = 0
    replayed: int = 0
    last_seen: float = 0.0
    online: bool | None = None
    camera: str | None = None
    latency: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    delay: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    seqs: dict[int, bool] = field(default_factory=dict)  # seq -> the verdict opened its run (restart)
    keys: deque[tuple[str, int]] = field(default_factory=deque)
    key_set: set[tuple[str, int]] = field(default_factory=set)

    def missing(self) -> int:
        ordered = sorted(self.seqs)
        return sum(b - a - 1 for a, b in pairwise(ordered)
                   if b > a + 1 and not self.seqs[b])


class Fleet:
    """The per-station state, fed from a reader's thread and read by the printing thread."""

    def __init__(self) -> None:
        self.stations: dict[str, Station] = {}
        self._lock = threading.Lock()

    def add(self, message: BrokerMessage) -> None:
        with self._lock:
            station = self.stations.setdefault(message.station, Station())
            station.last_seen = max(station.last_seen, message.t)
            payload = message.payload
            if message.kind == "connection":
                station.online = bool(payload.get("online"))
            elif message.kind in ("status", "heartbeat") and isinstance(payload.get("camera"), str):
                station.camera = payload["camera"]
            elif message.kind == "verdict":
                self._verdict(station, message)

    @staticmethod
    def _verdict(station: Station, message: BrokerMessage) -> None:
        payload = message.payload
        key = (str(payload.get("run_id", "")), int(payload["seq"]))
        if key in station.key_set:
            station.duplicates += 1
            return
        station.key_set.add(key)
        station.keys.append(key)
        if len(station.keys) > MAX_SEQS:
            old = station.keys.popleft()
            station.key_set.discard(old)
            station.seqs.pop(old[1], None)
        station.seqs[key[1]] = bool(payload.get("restart"))
        station.parts += 1
        station.ng += payload.get("verdict") == "NG"
        station.errors += payload.get("error") is not None
        station.replayed += bool((payload.get("delivery") or {}).get("replay"))
        total = (payload.get("latency_ms") or {}).get("total")
        if total is not None:
            station.latency.append(float(total))
        if payload.get("t_publish") is not None:
            station.delay.append(max(0.0, (message.t - float(payload["t_publish"])) * 1000.0))

    def snapshot(self, now: float | None = None) -> dict[str, dict[str, Any]]:
        """Per station: the table's figures, as plain values."""
        now = time.time() if now is None else now
        with self._lock:
            rows = {}
            for name, st in sorted(self.stations.items()):
                rows[name] = {
                    "online": st.online, "camera": st.camera, "parts": st.parts, "ng": st.ng,
                    "yield_pct": round(100.0 * (st.parts - st.ng) / st.parts, 2) if st.parts else None,
                    "errors": st.errors, "last_seen_s": round(now - st.last_seen, 1) if st.last_seen else None,
                    "latency_p95_ms": percentiles(st.latency)["p95"] if st.latency else None,
                    "delay_p95_ms": percentiles(st.delay)["p95"] if st.delay else None,
                    "missing_seq": st.missing(), "duplicates": st.duplicates, "replayed": st.replayed,
                }
        return rows


COLUMNS = (("station", "station", 12), ("online", "online", 6), ("camera", "camera", 6), ("parts", "parts", 7),
           ("ng", "NG", 6), ("yield_pct", "yield%", 7), ("errors", "errors", 6), ("last_seen_s", "seen s", 7),
           ("latency_p95_ms", "p95 ms", 7), ("delay_p95_ms", "delay95", 7), ("missing_seq", "missing", 7),
           ("duplicates", "dup", 5), ("replayed", "replay", 6))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["  ".join(title.rjust(width) if i else title.ljust(width) for i, (_, title, width) in enumerate(COLUMNS))]
    for name, row in rows.items():
        cells = [name.ljust(COLUMNS[0][2])]
        cells += [_cell(row[key]).rjust(width) for key, _, width in COLUMNS[1:]]
        lines.append("  ".join(cells))
    if not rows:
        lines.append("(no station seen yet)")
    return "\n".join(lines)


def run_fleet(mqtt_url: str | None, kafka_bootstrap: str | None, prefix: str, interval: float,
              duration: float | None, as_json: bool, username: str | None = None, password_file: Path | None = None,
              ca_file: Path | None = None, from_beginning: bool = True) -> int:
    """``edge-inspect fleet`` (options in :mod:`edge.cli`): read, refresh the table until stopped; the exit code."""
    if (mqtt_url is None) == (kafka_bootstrap is None):
        click.echo("edge-inspect fleet: error: give one of --mqtt URL or --kafka HOST:PORT", err=True)
        return EXIT_STARTUP
    view = Fleet()
    try:
        if mqtt_url is not None:
            password = password_file.read_text(encoding="utf-8").splitlines()[0] if password_file else None
            reader: MqttReader | KafkaReader = MqttReader(mqtt_url, prefix, view.add, username=username,
                                                          password=password, ca_file=str(ca_file) if ca_file else None)
        else:
            reader = KafkaReader(str(kafka_bootstrap), prefix, view.add, from_beginning=from_beginning)
        reader.start()
    except (ReaderError, OSError, IndexError) as exc:
        click.echo(f"edge-inspect fleet: error: {exc}", err=True)
        return EXIT_STARTUP
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    deadline = time.monotonic() + duration if duration is not None else None
    tty = sys.stdout.isatty() and not as_json
    try:
        while True:
            wait = interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
            finished = stop.wait(wait) or (deadline is not None and time.monotonic() >= deadline)
            rows = view.snapshot()
            if as_json:
                click.echo(json.dumps({"t": round(time.time(), 3), "stations": rows}))
            else:
                click.echo(("\x1b[H\x1b[2J" if tty and not finished else "") + format_table(rows) + "\n")
            if finished:
                break
    finally:
        reader.close()
    return 0
