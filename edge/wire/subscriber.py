"""A verdict subscriber for commissioning and monitoring: ``edge-inspect subscribe ENDPOINT``.

Whoever wires the PLC/MES bridge needs to see, from any machine on the line network, that
verdicts arrive, how fast, and whether any are lost, and the tool must tell the truth about it:
it says once when its connection is up and it is waiting, reports ``seq`` gaps as they happen on
stderr and in a final summary, says so when it joined a run mid-stream (its first verdict is not
the run's first) and how many of that run's verdicts it never saw, and counts the daemon's
restart markers. It exits 0 once ``--count`` verdicts arrived, or (``--until-stopped``) when the
daemon announces its ``stopped`` event, and 1 when it gave up waiting, so it also serves as a
scripted check. ``--save DIR`` keeps each verdict's JSON and the images sent with it.
"""

from __future__ import annotations

import dataclasses
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
from edge.wire.messages import EVENT_TOPIC_PREFIX
from edge.wire.verdict import TOPIC_PREFIX, ReceivedVerdict, VerdictError, parse_verdict

log = logging.getLogger(__name__)

POLL_SLICE_S = 0.2
RCVHWM = 10000


@dataclass
class SequenceTracker:
    """Counts verdicts and notices lost ones from consecutive ``seq`` values."""

    received: int = 0
    gaps: int = 0
    missing: int = 0
    restarts: int = 0
    invalid: int = 0
    missed_before_join: int = 0
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
        restart = bool(message.get("restart"))
        if restart:  # the first verdict of a daemon run, whether or not we saw the run before it
            self.restarts += 1
        previous = self.last_seq.get(station)
        self.last_seq[station] = seq
        if previous is None:
            return None if restart or seq == 1 else self._joined(station, seq, message)
        if seq == previous + 1 and not restart:
            return None
        if restart:  # a new daemon run: numbers it skipped were never used, not lost
            return f"restart: {station} seq {previous} -> {seq} (daemon restarted, run {message.get('run_id')})"
        if seq > previous + 1:
            lost = seq - previous - 1
            self.gaps += 1
            self.missing += lost
            return f"gap: {station} seq {previous} -> {seq} ({lost} verdict(s) lost)"
        self.restarts += 1
        return f"restart: {station} seq {previous} -> {seq} (publisher restarted?)"

    def _joined(self, station: str, seq: int, message: dict[str, Any]) -> str:
        """The first verdict seen is not its run's first: say so, and how many of the run came before it."""
        counters = message.get("counters")
        before = counters.get("verdicts") if isinstance(counters, dict) else None
        if isinstance(before, int) and before >= 1:
            self.missed_before_join += before - 1
            return (f"joined mid-stream: {station} at seq {seq}; missed the {before - 1} verdict(s) this run "
                    "published before this subscriber was connected")
        return f"joined mid-stream: {station} at seq {seq} (not its run's first verdict)"

    def summary(self) -> str:
        return (
            f"received={self.received} gaps={self.gaps} missing={self.missing} "
            f"OK={self.by_verdict.get('OK', 0)} NG={self.by_verdict.get('NG', 0)} "
            f"errors={self.errors} restarts={self.restarts} invalid={self.invalid} "
            f"missed_before_join={self.missed_before_join}"
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


class Session:
    """What the subscriber does with each message it receives (apart from the socket, so it can be fed directly)."""

    def __init__(self, *, as_json: bool = False, station: str | None = None, save_dir: Path | None = None,
                 until_stopped: bool = False, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.as_json = as_json
        self.station = station
        self.save_dir = save_dir
        self.until_stopped = until_stopped
        self.out = out
        self.err = err
        self.tracker = SequenceTracker()
        self.stopped = False  # the daemon's stopped event arrived (with until_stopped)

    def handle(self, parts: list[bytes]) -> None:
        """One multipart message: a verdict is printed (and saved), a stopped event ends an until-stopped run."""
        if parts and parts[0].startswith(EVENT_TOPIC_PREFIX.encode()):
            self._event(parts)
            return
        try:
            verdict = parse_verdict(parts)
        except VerdictError as exc:
            self.tracker.invalid += 1
            print(f"invalid message: {exc}", file=self.err)
            return
        # A prefix subscription to verdict.st1 also matches verdict.st10: keep exact matches only.
        if self.station is not None and verdict.message["station"] != self.station:
            return
        warning = self.tracker.add(verdict.message)
        if warning:
            print(warning, file=self.err)
        if self.as_json:
            print(json.dumps(verdict.message), file=self.out, flush=True)
        else:
            print(format_line(verdict), file=self.out, flush=True)
        if self.save_dir is not None:
            self._save(verdict)

    def _event(self, parts: list[bytes]) -> None:
        try:
            message = json.loads(parts[1]) if len(parts) == 2 else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("event"), str):
            self.tracker.invalid += 1
            print(f"invalid message: an event topic with {len(parts)} frame(s) and no event name", file=self.err)
            return
        if self.station is not None and message.get("station") != self.station:
            return
        if message["event"] == "stopped":
            found = message.get("detail")
            detail: dict[str, Any] = found if isinstance(found, dict) else {}
            print(f"stopped: {message.get('station')} last_seq={detail.get('last_seq')} "
                  f"failure={detail.get('failure')}", file=self.err)
            self.stopped = True

    def _save(self, verdict: ReceivedVerdict) -> None:
        """``STATION-SEQ.json`` and each image the daemon sent with it: ``-map.png``, ``-image.jpg``."""
        assert self.save_dir is not None
        m = verdict.message
        stem = f"{m['station']}-{int(m['seq']):010d}"
        try:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            (self.save_dir / f"{stem}.json").write_text(json.dumps(m, indent=1), encoding="utf-8")
            for item in dataclasses.fields(verdict):
                value = getattr(verdict, item.name)
                if isinstance(value, bytes | bytearray | memoryview) and value:
                    name, _, kind = item.name.rpartition("_")  # map_png -> map.png, image_jpeg -> image.jpg
                    suffix = {"png": ".png", "jpeg": ".jpg"}.get(kind, f".{kind}")
                    (self.save_dir / f"{stem}-{name or kind}{suffix}").write_bytes(bytes(value))
        except OSError as exc:
            print(f"cannot save verdict {m['seq']} in {self.save_dir}: {exc.strerror or exc}", file=self.err)


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
    until_stopped: bool = False,
    save_dir: Path | None = None,
) -> int:
    """Receive verdicts until ``count`` arrived (0), ``stopped`` (``until_stopped``, 0), ``timeout_s`` passed (1).

    With ``server_key`` (the daemon's public NAME.key) and ``client_key`` (this client's
    NAME.key_secret) it connects with CURVE; a key the daemon does not allow receives nothing.
    """
    if (server_key is None) != (client_key is None):
        print("error: give both --server-key and --client-key, or neither", file=err)
        return 2
    stop = stop or threading.Event()
    session = Session(as_json=as_json, station=station, save_dir=save_dir, until_stopped=until_stopped,
                      out=out, err=err)
    tracker = session.tracker
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVHWM, RCVHWM)
    socket.setsockopt_string(zmq.SUBSCRIBE, TOPIC_PREFIX + station if station else TOPIC_PREFIX)
    if until_stopped:
        socket.setsockopt_string(zmq.SUBSCRIBE, EVENT_TOPIC_PREFIX + station if station else EVENT_TOPIC_PREFIX)
    monitor = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
    try:
        if server_key is not None and client_key is not None:
            # Imported here: edge.control.curve brings zmq.auth, which a plain subscriber never needs.
            from edge.control.curve import make_client

            make_client(socket, server_key, client_key)
        socket.connect(endpoint)
    except (KeyFileError, zmq.ZMQError) as exc:
        text = str(exc) if isinstance(exc, KeyFileError) else f"cannot connect to {endpoint}: {exc.strerror}"
        print(f"error: {text}", file=err)
        _close(socket, monitor, context)
        return 2
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    poller.register(monitor, zmq.POLLIN)
    last_activity = time.monotonic()
    exit_code = 0
    connected = False
    try:
        while count is None or tracker.received < count:
            if stop.is_set():
                exit_code = 0 if count is None and not until_stopped else 1
                break
            ready = dict(poller.poll(int(POLL_SLICE_S * 1000)))
            if monitor in ready:
                connected = _connection_event(monitor, endpoint, connected, err)
            if socket not in ready:
                if timeout_s is not None and time.monotonic() - last_activity >= timeout_s:
                    print(f"timeout: no verdict for {timeout_s:g} s", file=err)
                    exit_code = 1
                    break
                continue
            last_activity = time.monotonic()
            session.handle(socket.recv_multipart())
            if session.stopped:
                break
    finally:
        _close(socket, monitor, context)
    print(f"summary: {tracker.summary()}", file=err)
    return exit_code


def _connection_event(monitor: zmq.Socket, endpoint: str, connected: bool, err: TextIO) -> bool:
    """Read one monitor event; print the 'connected' line on the first handshake; whether connected now."""
    from zmq.utils.monitor import recv_monitor_message

    event = recv_monitor_message(monitor)["event"]
    if event == zmq.EVENT_HANDSHAKE_SUCCEEDED and not connected:
        print(f"connected to {endpoint}, waiting for verdicts", file=err, flush=True)
        return True
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        print(f"{endpoint} refused this client's key (not in the daemon's allowed_clients)", file=err, flush=True)
    return connected


def _close(socket: zmq.Socket, monitor: zmq.Socket, context: zmq.Context) -> None:
    socket.disable_monitor()
    monitor.close(linger=0)
    socket.close()
    context.term()
