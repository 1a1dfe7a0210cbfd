"""What a station's page shows, computed from the messages the station publishes.

The page must answer at a glance: what the camera sees, the last decision and where the defect
is, how many parts went through and how many were rejected, and whether the station is alive.
:class:`StationState` keeps exactly that for one station (the latest part with its images, a
short history, counts since the view started and per hour, latency percentiles, camera status,
the bundle and when it was loaded) and :meth:`StationState.freshness` tells "no parts"
(heartbeats, no verdicts: ``idle``) from "station dead" (nothing at all for 1.5 heartbeat
periods: ``stale``), so the two look different within two periods. :class:`Hub` routes every
received message to its station. Everything here is plain Python on one thread (the server's
event loop); the clocks are injectable so the tests drive time themselves.

A page update is one binary message, built once per state version and shared by every client::

    u32 n  header: UTF-8 JSON {"type": "station", "state": <snapshot>}
    u32 n  the latest part's frame JPEG (n = 0 when there is none)
    u32 n  the latest part's anomaly map PNG (n = 0 when there is none)

(u32 big-endian lengths). Older parts' images are fetched by URL (``/img/<station>/<part>/...``).
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from edge.ops.latency import percentiles
from edge.wire.schema import EVENT, Heartbeat, Status
from edge.wire.verdict import TOPIC_PREFIX, VerdictError, parse_verdict

log = logging.getLogger(__name__)

HISTORY = 24
LATENCY_WINDOW = 200
HOURS_KEPT = 24
STALE_PERIODS = 1.5  # silent this many heartbeat periods: stale (the ticker adds < 0.1 s, so < 2 periods)
Freshness = Literal["waiting", "live", "idle", "stale", "stopped"]
CameraState = Literal["unknown", "up", "down", "reconnecting", "gave_up"]


@dataclass
class Part:
    """One verdict as the page shows it: its payload and, when sent, its frame and map."""

    part: int  # numbered by the view (a daemon without a state directory restarts its seq at 1)
    message: dict[str, Any]
    frame_jpeg: bytes | None
    map_png: bytes | None

    def summary(self) -> dict[str, Any]:
        """The JSON the page gets for this part (no image bytes)."""
        m = self.message
        return {
            "part": self.part, "seq": m["seq"], "verdict": m["verdict"], "error": m.get("error"),
            "score": m.get("score"), "normalized_score": m.get("normalized_score"), "threshold": m.get("threshold"),
            "regions": m.get("regions", []), "image_width": m.get("image_width"),
            "image_height": m.get("image_height"), "t_publish": m["t_publish"], "t_capture": m["t_capture"],
            "source": m.get("source"), "bundle_id": m.get("bundle_id"),
            "latency_ms": m.get("latency_ms", {}).get("total"),
            "has_frame": self.frame_jpeg is not None, "has_map": self.map_png is not None,
        }


@dataclass
class Tally:
    """OK, NG, errors (among the NG) and frames dropped by the daemon."""

    ok: int = 0
    ng: int = 0
    errors: int = 0
    drops: int = 0

    def as_dict(self) -> dict[str, Any]:
        parts = self.ok + self.ng
        return {"ok": self.ok, "ng": self.ng, "errors": self.errors, "drops": self.drops, "parts": parts,
                "yield": round(self.ok / parts, 4) if parts else None}


@dataclass
class Camera:
    """The camera as the last status message (or heartbeat) described it."""

    state: CameraState = "unknown"
    reason: str | None = None
    attempt: int = 0
    next_retry_s: float | None = None
    since: float | None = None


@dataclass
class Bundle:
    """The bundle deciding now and when it was loaded (from the started and reload events)."""

    id: str | None = None
    loaded_at: float | None = None  # epoch; None: loaded before the view started listening
    how: str | None = None  # "started" or "reload"
    previous: str | None = None


@dataclass
class StationState:
    """Everything one station's page shows; ``version`` changes whenever any of it does."""

    name: str
    history_size: int = HISTORY
    heartbeat_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    version: int = 0
    latest: Part | None = None
    last_ng: Part | None = None
    history: deque[Part] = field(default_factory=deque)
    total: Tally = field(default_factory=Tally)
    hours: dict[int, Tally] = field(default_factory=dict)
    missed: int = 0
    camera: Camera = field(default_factory=Camera)
    bundle: Bundle = field(default_factory=Bundle)
    run_id: str | None = None
    paused: bool = False
    counters: dict[str, Any] = field(default_factory=dict)
    last_event: dict[str, Any] | None = None
    stopped: bool = False
    failure: str | None = None
    _latency: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    _last_message: float | None = None
    _last_verdict: float | None = None
    _period: deque[float] = field(default_factory=lambda: deque(maxlen=8))
    _dropped_seen: int = 0
    _last_seq: int | None = None
    _next_part: int = 1
    _packed: tuple[int, bytes] | None = None
    _shown_freshness: str = "waiting"

    # ----------------------------------------------------------------- messages in

    def on_verdict(self, message: dict[str, Any], map_png: bytes | None, frame_jpeg: bytes | None) -> None:
        part = Part(self._next_part, message, frame_jpeg, map_png)
        self._next_part += 1
        self._seen(message.get("run_id"))
        self._last_verdict = self._last_message
        seq = int(message["seq"])
        if self._last_seq is not None and seq > self._last_seq + 1 and not message.get("restart"):
            self.missed += seq - self._last_seq - 1
        self._last_seq = seq
        hour = self._hour()
        for tally in (self.total, hour):
            if message["verdict"] == "OK":
                tally.ok += 1
            else:
                tally.ng += 1
            tally.errors += bool(message.get("error"))
        self._count_drops(message.get("counters") or {}, hour)
        if self.bundle.id != message.get("bundle_id"):
            self.bundle = Bundle(id=message.get("bundle_id"))  # first seen, or changed before we saw an event
        if self.camera.state == "unknown":
            self.camera = Camera("up", since=self.wall())  # it delivered this frame
        latency = message.get("latency_ms") or {}
        self._latency.append((float(latency.get("total", 0.0)), float(latency.get("inference", 0.0))))
        self.latest = part
        if message["verdict"] == "NG":
            self.last_ng = part
        self.history.append(part)
        while len(self.history) > self.history_size:
            self.history.popleft()
        self._changed()

    def on_heartbeat(self, message: dict[str, Any]) -> None:
        now = self.clock()
        if self._last_message is not None:
            self._period.append(now - self._last_message)  # sent after heartbeat_s with nothing else
        self._seen(message["run_id"])
        self.paused = message["state"] == "paused"
        self._count_drops(message["counters"], self._hour())
        if message["camera"] == "up" and self.camera.state != "up":
            self.camera = Camera("up", since=self.wall())
        elif message["camera"] == "down" and self.camera.state in ("unknown", "up"):
            self.camera = Camera("down", since=self.wall())
        if self.bundle.id != message["bundle_id"]:
            self.bundle = Bundle(id=message["bundle_id"])
        self._changed()

    def on_status(self, message: dict[str, Any]) -> None:
        self._seen(None)
        camera = message["camera"]
        state: CameraState = "reconnecting" if camera == "down" and message["attempt"] > 0 else camera
        since = self.camera.since if self.camera.state == state else message["t"]
        reason = message.get("reason")
        if message.get("subject", "camera") != "camera":  # an error streak or an output's link: not the camera's why
            reason = self.camera.reason if self.camera.state == state else None
        self.camera = Camera(state, reason, message["attempt"], message.get("next_retry_s"), since)
        self._changed()

    def on_event(self, message: dict[str, Any]) -> None:
        self._seen(message["run_id"])
        name, detail, t = message["event"], message["detail"], message["t"]
        if name in ("started", "reload"):
            self.bundle = Bundle(detail.get("bundle_id"), t, name, detail.get("previous_bundle_id"))
        if name == "started":
            self.camera = Camera("up", since=t)
        if name == "stopped":
            self.stopped, self.failure = True, detail.get("failure")
            self.counters = detail.get("counters") or self.counters
        self.last_event = {"event": name, "t": t, "reason": detail.get("reason"), "bundle_id": detail.get("bundle_id")}
        self._changed()

    def _seen(self, run_id: str | None) -> None:
        self._last_message = self.clock()
        self.stopped = False
        if run_id is not None and run_id != self.run_id:
            if self.run_id is not None:
                self._dropped_seen = 0  # a new run counts its drops from 0
            self.run_id = run_id

    def _count_drops(self, counters: dict[str, Any], hour: Tally) -> None:
        dropped = int(counters.get("dropped", 0))
        if dropped > self._dropped_seen:
            hour.drops += dropped - self._dropped_seen
            self.total.drops += dropped - self._dropped_seen
        self._dropped_seen = dropped
        self.counters = counters

    def _hour(self) -> Tally:
        """This local clock hour's tally (the oldest beyond HOURS_KEPT are forgotten)."""
        now = self.wall()
        local = time.localtime(now)
        start = int(now) - local.tm_min * 60 - local.tm_sec
        if start not in self.hours:
            self.hours[start] = Tally()
            for old in sorted(self.hours)[:-HOURS_KEPT]:
                del self.hours[old]
        return self.hours[start]

    def _changed(self) -> None:
        self.version += 1

    # ----------------------------------------------------------------- what the page gets

    def heartbeat_period(self) -> float:
        """Seconds between heartbeats: the longest recently observed, else the configured one."""
        return max(self._period) if self._period else self.heartbeat_s

    def freshness(self) -> Freshness:
        """waiting (nothing yet), live (parts), idle (heartbeats only), stale (silent), stopped (clean stop)."""
        if self._last_message is None:
            return "waiting"
        if self.stopped:
            return "stopped"
        now, limit = self.clock(), STALE_PERIODS * self.heartbeat_period()
        if now - self._last_message > limit:
            return "stale"
        if self._last_verdict is not None and now - self._last_verdict <= limit:
            return "live"
        return "idle"

    def tick(self) -> bool:
        """Re-evaluate freshness as time passes; True (and a new version) when it changed."""
        shown = self.freshness()
        if shown == self._shown_freshness:
            return False
        self._shown_freshness = shown
        self._changed()
        return True

    def part(self, number: int) -> Part | None:
        """A part still held (in the history, or the last NG) by its view number."""
        for part in (*self.history, self.last_ng, self.latest):
            if part is not None and part.part == number:
                return part
        return None

    def snapshot(self) -> dict[str, Any]:
        """The page's JSON: everything but the image bytes."""
        self._shown_freshness = self.freshness()
        age = None if self._last_message is None else round(self.clock() - self._last_message, 2)
        totals, inference = [t for t, _ in self._latency], [i for _, i in self._latency]
        return {
            "station": self.name, "version": self.version, "freshness": self._shown_freshness, "age_s": age,
            "heartbeat_period_s": round(self.heartbeat_period(), 3), "paused": self.paused, "run_id": self.run_id,
            "stopped_failure": self.failure if self.stopped else None,
            "camera": vars(self.camera), "bundle": vars(self.bundle), "counters": self.counters,
            "total": {**self.total.as_dict(), "missed": self.missed},
            "hours": [{"start": start, **tally.as_dict()} for start, tally in sorted(self.hours.items())[-6:]],
            "latency_ms": {"total": percentiles(totals), "inference": percentiles(inference), "n": len(totals)},
            "latest": self.latest.summary() if self.latest else None,
            "last_ng": self.last_ng.summary() if self.last_ng else None,
            "history": [p.summary() for p in self.history], "last_event": self.last_event,
        }

    def packed(self) -> bytes:
        """This version's page update (see the module docstring), built once and shared by all clients."""
        if self._packed is None or self._packed[0] != self.version:
            header = json.dumps({"type": "station", "state": self.snapshot()}, separators=(",", ":")).encode()
            frame = (self.latest.frame_jpeg if self.latest else None) or b""
            amap = (self.latest.map_png if self.latest else None) or b""
            body = b"".join(struct.pack(">I", len(chunk)) + chunk for chunk in (header, frame, amap))
            self._packed = (self.version, body)
        return self._packed[1]


class Hub:
    """All stations the view hears from, by name; routes each received message to its station."""

    def __init__(self, history: int = HISTORY, heartbeat_s: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.stations: dict[str, StationState] = {}
        self.history, self.heartbeat_s, self.clock, self.wall = history, heartbeat_s, clock, wall
        self.received = 0
        self.invalid = 0

    def station(self, name: str) -> StationState:
        if name not in self.stations:
            self.stations[name] = StationState(name, self.history, self.heartbeat_s, self.clock, self.wall)
            log.info("station %s: first message", name)
        return self.stations[name]

    def handle(self, parts: list[bytes]) -> str | None:
        """Apply one multipart message; the station it changed, or None (invalid or not for the view)."""
        self.received += 1
        try:
            kind = parts[0].split(b".", 1)[0].decode("ascii")
            if kind + "." == TOPIC_PREFIX:
                verdict = parse_verdict(parts)
                state = self.station(verdict.message["station"])
                state.on_verdict(verdict.message, verdict.map_png, verdict.image_jpeg)
                return state.name
            if len(parts) != 2 or kind not in ("heartbeat", "status", "event"):
                raise VerdictError(f"unexpected message on topic {parts[0][:40]!r} ({len(parts)} frames)")
            payload = json.loads(parts[1])
            if kind == "heartbeat":
                Heartbeat.model_validate(payload)
                self.station(payload["station"]).on_heartbeat(payload)
            elif kind == "status":
                Status.model_validate(payload)
                self.station(payload["station"]).on_status(payload)
            else:
                EVENT.validate_python(payload)
                self.station(payload["station"]).on_event(payload)
            return str(payload["station"])
        except (VerdictError, ValidationError, ValueError, KeyError, IndexError, UnicodeDecodeError) as exc:
            self.invalid += 1
            if self.invalid <= 10 or self.invalid % 1000 == 0:
                log.warning("ignored an unreadable message (%d so far): %s", self.invalid, exc)
            return None

    def tick(self) -> list[str]:
        """Stations whose freshness changed since the last tick (time passing, no message needed)."""
        return [name for name, state in self.stations.items() if state.tick()]
