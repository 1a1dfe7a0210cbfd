"""A verdict subscriber for commissioning and monitoring: ``edge-inspect subscribe ENDPOINT``.

Whoever wires the PLC/MES bridge needs to see, from any machine on the line network, that
verdicts arrive, how fast, and whether any are lost. This prints one line per verdict (or the raw
JSON), reports ``seq`` gaps as they happen on stderr and in a final summary, and exits 0 once
``--count`` verdicts arrived or 1 when it gave up waiting, so it also serves as a scripted check.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import zmq

from edge.control.keys import KeyFileError
from edge.wire.verdict import TOPIC_PREFIX, ReceivedVerdict, VerdictError, parse_verdict

log = logging.getLogger(__name__)

POLL_SLICE_S = 0.2


@dataclass
class SequenceTracker:
    """Counts verdicts and notices lost ones from consecutive ``seq`` values."""

    received: int = 0
    gaps: int = 0
    missing: int = 0
    restarts: int = 0
    invalid: int = 0
    by_verdict: dict[str, int] = field(default_factory=lambda: {"OK": 0, "NG": 0})
    errors: int = 0
    last_seq: dict[str, int] = field(default_factory=dict)

    def add(self, message: dict[str, Any]) -> str | None:
        """Record one verdict; return a warning line if its ``seq`` is not the expected one."""
        self.received += 1
        self.by_verdict[message["verdict"]] = self.by_verdict.get(message["verdict"], 0) + 1
        if message.get("error"):
            self.errors += 1
        station, seq = str(message["station"]), int(message["seq"])
        previous = self.last_seq.get(station)
        self.last_seq[station] = seq
        if previous is None or seq == previous + 1:
            return None
        if message.get("restart"):  # a new daemon run: numbers it skipped were never used, not lost
            self.restarts += 1
            return f"restart: {station} seq {previous} -> {seq} (daemon restarted, run {message.get('run_id')})"
        if seq > previous + 1:
            lost = seq - previous - 1
            self.gaps += 1
            self.missing += lost
            return f"gap: {station} seq {previous} -> {seq} ({lost} verdict(s) lost)"
        self.restarts += 1
        return f"restart: {station} seq {previous} -> {seq} (publisher restarted?)"

    def summary(self) -> str:
        return (
            f"received={self.received} gaps={self.gaps} missing={self.missing} "
            f"OK={self.by_verdict.get('OK', 0)} NG={self.by_verdict.get('NG', 0)} "
            f"errors={self.errors} restarts={self.restarts} invalid={self.invalid}"
        )


def format_line(verdict: ReceivedVerdict) -> str:
    """One human-readable line for a verdict."""
    m = verdict.message

    def num(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}"

    line = (
        f"seq={m['seq']} {m['verdict']} score={num(m['score'])} thr={num(m['threshold'])} "
        f"regions={len(m['regions'])} latency={m['latency_ms'].get('total', 0.0):.1f}ms source={m['source']}"
    )
    if m.get("error"):
        line += f" error={m['error']}"
    return line


def subscribe(
    endpoint: str,
    count: int | None = None,
    timeout_s: float | None = None,
    as_json: bool = False,
    station: str | None = None,
    stop: threading.Event | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    server_key: str | Path | None = None,
    client_key: str | Path | None = None,
) -> int:
    """Receive verdicts until ``count`` arrived (0), ``timeout_s`` passed with none (1), or ``stop``.

    With ``server_key`` (the daemon's public NAME.key) and ``client_key`` (this client's
    NAME.key_secret) it connects with CURVE; a key the daemon does not allow receives nothing.
    """
    if (server_key is None) != (client_key is None):
        print("error: give both --server-key and --client-key, or neither", file=err)
        return 2
    stop = stop or threading.Event()
    topic = TOPIC_PREFIX + station if station else TOPIC_PREFIX
    tracker = SequenceTracker()
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVHWM, 10000)
    socket.setsockopt_string(zmq.SUBSCRIBE, topic)
    try:
        if server_key is not None and client_key is not None:
            # Imported here: edge.control.curve brings zmq.auth, which a plain subscriber never needs.
            from edge.control.curve import make_client

            make_client(socket, server_key, client_key)
        socket.connect(endpoint)
    except KeyFileError as exc:
        print(f"error: {exc}", file=err)
        socket.close()
        context.term()
        return 2
    except zmq.ZMQError as exc:
        print(f"error: cannot connect to {endpoint}: {exc.strerror}", file=err)
        socket.close()
        context.term()
        return 2
    last_activity = time.monotonic()
    exit_code = 0
    try:
        while count is None or tracker.received < count:
            if stop.is_set():
                exit_code = 0 if count is None else 1
                break
            if not socket.poll(int(POLL_SLICE_S * 1000), zmq.POLLIN):
                if timeout_s is not None and time.monotonic() - last_activity >= timeout_s:
                    print(f"timeout: no verdict for {timeout_s:g} s", file=err)
                    exit_code = 1
                    break
                continue
            last_activity = time.monotonic()
            parts = socket.recv_multipart()
            try:
                verdict = parse_verdict(parts)
            except VerdictError as exc:
                tracker.invalid += 1
                print(f"invalid message: {exc}", file=err)
                continue
            # A prefix subscription to verdict.st1 also matches verdict.st10: keep exact matches only.
            if station is not None and verdict.message["station"] != station:
                continue
            warning = tracker.add(verdict.message)
            if warning:
                print(warning, file=err)
            if as_json:
                print(json.dumps(verdict.message), file=out, flush=True)
            else:
                print(format_line(verdict), file=out, flush=True)
    finally:
        socket.close()
        context.term()
    print(f"summary: {tracker.summary()}", file=err)
    return exit_code
